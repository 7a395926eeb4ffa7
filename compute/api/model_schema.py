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
        "required": ["type", "features", "label"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": ["logistic_regression", "linear_regression", "naive_bayes"]},
            "features": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "Declared columns; categorical ones are one-hot encoded from their declared categories.",
            },
            "label": {
                "type": "string",
                "description": "A declared column: categorical (two or more categories) or boolean for "
                "classifiers, numeric for linear_regression.",
            },
            "params": {
                "type": "object",
                "nullable": True,
                "description": "logistic_regression: C (> 0, default 1) and alpha (>= 0); linear_regression: alpha "
                "(>= 0); naive_bayes: var_floor (>= 0, default 0.001). alpha defaults to a ridge chosen from "
                "the noise alone.",
                "properties": {
                    "C": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                    "alpha": {"type": "number", "minimum": 0, "nullable": True},
                    "var_floor": {"type": "number", "minimum": 0},
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
            "label": {"type": "string"},
            "classes": {"type": "array", "items": _CLASS, "nullable": True, "description": "Null for regression."},
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
