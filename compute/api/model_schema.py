"""The OpenAPI components of training jobs (docs/MODELS.md): the request's ``model``, the released
model, and the portable model file. The server checks a request against the declared schema
(compute/engines/models/spec.py) and names the field it refuses; these components say the shape."""

from __future__ import annotations

from config import openapi

_NUMBERS = {"type": "array", "items": {"type": "number"}}
_MATRIX = {"type": "array", "items": _NUMBERS}
_CLASS = {"anyOf": [{"type": "string"}, {"type": "boolean"}]}

openapi.register_component(
    "ModelRequest",
    {
        "type": "object",
        "description": "A model to train on declared columns. Bounds, categories and classes come from the "
        "declaration, never from the data.",
        "required": ["type", "features"],
        "additionalProperties": False,
        "properties": {
            "type": {
                "type": "string",
                "enum": ["logistic_regression", "linear_regression", "naive_bayes", "random_forest", "kmeans", "pca"],
            },
            "features": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "Declared columns; categorical ones are one-hot encoded from their declared categories.",
            },
            "label": {
                "type": "string",
                "nullable": True,
                "description": "A declared column: categorical (two or more categories) or boolean for "
                "classifiers, numeric for linear_regression; none for kmeans and pca.",
            },
            "params": {
                "type": "object",
                "nullable": True,
                "description": "logistic_regression: C (> 0, default 1) and alpha (>= 0); linear_regression: alpha "
                "(>= 0); naive_bayes: var_floor (>= 0, default 0.001). alpha defaults to a ridge chosen from "
                "the noise alone. kmeans: k (2 to 20, required), iterations (1 to 10, default 5), seed; pca: "
                "n_components (1 to the encoded columns, default all); random_forest: n_trees (1 to 50, default "
                "10), max_depth (1 to 8, default 4), seed. seed (default 0) draws the public initial centres or "
                "trees.",
                "properties": {
                    "C": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                    "alpha": {"type": "number", "minimum": 0, "nullable": True},
                    "var_floor": {"type": "number", "minimum": 0},
                    "k": {"type": "integer", "minimum": 2, "maximum": 20},
                    "iterations": {"type": "integer", "minimum": 1, "maximum": 10},
                    "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                    "n_components": {"type": "integer", "minimum": 1, "maximum": 120, "nullable": True},
                    "n_trees": {"type": "integer", "minimum": 1, "maximum": 50},
                    "max_depth": {"type": "integer", "minimum": 1, "maximum": 8},
                },
                "additionalProperties": False,
            },
        },
    },
)

openapi.register_component(
    "Model",
    {
        "type": "object",
        "description": "A released model's parameters, on the declared units of its features (categorical "
        "features as one 0/1 column per declared category, in the order of columns).",
        "required": ["type", "features", "label", "classes", "columns", "encoding", "params"],
        "properties": {
            "type": {"type": "string"},
            "features": {"type": "array", "items": {"type": "string"}},
            "label": {"type": "string", "nullable": True, "description": "Null for kmeans and pca."},
            "classes": {
                "type": "array",
                "items": _CLASS,
                "nullable": True,
                "description": "Null for regression, kmeans and pca.",
            },
            "columns": {"type": "array", "items": {"type": "string"}, "description": "The encoded columns."},
            "encoding": {"type": "array", "items": {"type": "object"}, "description": "Each feature's declaration."},
            "params": {"type": "object"},
            "coefficients": {
                "anyOf": [_NUMBERS, _MATRIX],
                "description": "linear_regression: one per column; logistic_regression: one row per class (one "
                "row, for the second class, when there are two).",
            },
            "intercept": {"anyOf": [{"type": "number"}, _NUMBERS]},
            "class_prior": {**_NUMBERS, "description": "naive_bayes"},
            "class_count": {**_NUMBERS, "description": "naive_bayes: the noisy class counts"},
            "theta": {**_MATRIX, "description": "naive_bayes: per class, each column's mean"},
            "var": {**_MATRIX, "description": "naive_bayes: per class, each column's variance"},
            "centres": {**_MATRIX, "description": "kmeans: one centre per cluster, in the declared units"},
            "cluster_count": {**_NUMBERS, "description": "kmeans: the last round's noisy cluster counts"},
            "components": {**_MATRIX, "description": "pca: one unit vector per component, largest variance first"},
            "mean": {**_NUMBERS, "description": "pca: the noisy mean of each column"},
            "explained_variance": {**_NUMBERS, "description": "pca: each component's noisy variance"},
            "explained_variance_ratio": {**_NUMBERS, "description": "pca: its share of the total noisy variance"},
            "trees": {
                "type": "array",
                "items": {"type": "object"},
                "description": "random_forest: each tree as nested dicts, {column, index, threshold, left, right} "
                "for an inner node (left: value <= threshold) and {counts} (noisy counts per class) for a leaf",
            },
        },
    },
)

openapi.register_component(
    "ModelResult",
    {
        "type": "object",
        "description": "A released train job's result.",
        "required": ["model"],
        "properties": {"model": openapi.ref("Model")},
    },
)

openapi.register_component(
    "ModelFile",
    {
        "type": "object",
        "description": "The portable model file: the parameters, the encoding a loader needs, and the receipt.",
        "required": ["format", "version", "job", "model", "receipt"],
        "properties": {
            "format": {"type": "string", "enum": ["cloakroom-model"]},
            "version": {"type": "integer"},
            "job": {"type": "integer"},
            "model": openapi.ref("Model"),
            "receipt": openapi.ref("Receipt"),
        },
    },
)
