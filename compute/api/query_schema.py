"""The query language as OpenAPI schema components (one shape per aggregate), and the shape checks the
schema makes that the engines would not (:func:`query_form_errors`).

Each shape lists what a DP dataset (compute/engines/dp ``parse_query``) and an HE dataset
(cloakroom_client/protocol/he_plan ``plan``) read. Whether a query fits the purchased dataset (its
column names, kinds and categories) is checked by the job kind, which names the field.
"""

from __future__ import annotations

from typing import Any

from compute.engines import dp
from config import openapi

# ---------------------------------------------------------------------------------------------
# The query language

_DP = "DP datasets"
_HE = "HE datasets"
_EMPTY = {
    "type": "array",
    "maxItems": 0,
    "nullable": True,
    "description": "Not used by this aggregate: leave it out (or send null or []).",
}
_FILTERS = {
    "type": "array",
    "items": openapi.register_component(
        "DpFilter",
        {
            "description": f"{_DP}: keep the rows matching this condition. Numeric columns take `range` (inclusive "
            "low and/or high), categorical and boolean columns `eq` or `in` with declared values.",
            "oneOf": [
                openapi.register_component(
                    "DpRangeFilter",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["column", "op"],
                        "properties": {
                            "column": {"type": "string", "description": "A numeric column."},
                            "op": {"type": "string", "enum": ["range"]},
                            "low": {"type": "number", "nullable": True},
                            "high": {"type": "number", "nullable": True},
                        },
                    },
                ),
                openapi.register_component(
                    "DpEqFilter",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["column", "op", "value"],
                        "properties": {
                            "column": {"type": "string", "description": "A categorical or boolean column."},
                            "op": {"type": "string", "enum": ["eq"]},
                            "value": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
                        },
                    },
                ),
                openapi.register_component(
                    "DpInFilter",
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["column", "op", "values"],
                        "properties": {
                            "column": {"type": "string", "description": "A categorical or boolean column."},
                            "op": {"type": "string", "enum": ["in"]},
                            "values": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
                            },
                        },
                    },
                ),
            ],
        },
    ),
    "nullable": True,
    "description": f"{_DP}: conditions, all of which a row must meet.",
}
_GROUP_BY = {
    "type": "array",
    "items": {"type": "string"},
    "uniqueItems": True,
    "nullable": True,
    "description": f"{_DP}: categorical or boolean columns; one answer per combination of their declared values "
    f"(at most {dp.MAX_GROUPS}).",
}
_HE_FILTER = openapi.register_component(
    "HeFilter",
    {
        "type": "object",
        "nullable": True,
        "additionalProperties": False,
        "required": ["column"],
        "properties": {
            "column": {"type": "string"},
            "category": {"type": "string"},
        },
        "description": f'{_HE}: only the rows where an indicator or boolean column is 1: {{"column": "sex=F"}}, or '
        '{"column": "sex", "category": "F"}.',
    },
)
_COLUMN = {"type": "string", "description": "A numeric column (on HE datasets also a boolean or indicator column)."}


def _query(name: str, aggregates: list[str], description: str, properties: dict, required: list[str]) -> dict:
    return openapi.register_component(
        name,
        {
            "type": "object",
            "description": description,
            "additionalProperties": False,
            "required": ["aggregate", *required],
            "properties": {"aggregate": {"type": "string", "enum": aggregates}, **properties},
        },
    )


_QUERY_SHAPES = {
    "count": _query(
        "CountQuery",
        ["count"],
        f"Count rows. {_DP}: no column (filters select the rows counted). {_HE}: `column` is an indicator or "
        "boolean column, or a categorical source column (one count per category), with an optional `category`.",
        {
            "column": {"type": "string", "nullable": True},
            "category": {"type": "string", "description": f"{_HE}: one category of a categorical column."},
            "filter": _HE_FILTER,
            "filters": _FILTERS,
            "group_by": _GROUP_BY,
            "quantiles": _EMPTY,
            "bins": _EMPTY,
        },
        [],
    ),
    "sum": _query(
        "NumericQuery",
        ["sum", "mean", "variance"],
        f"The sum, mean or variance of a column, clipped to its declared bounds. {_DP} take `filters` and "
        f"`group_by`; {_HE} take `filter`.",
        {
            "column": _COLUMN,
            "filter": _HE_FILTER,
            "filters": _FILTERS,
            "group_by": _GROUP_BY,
            "quantiles": _EMPTY,
            "bins": _EMPTY,
        },
        ["column"],
    ),
    "std": _query(
        "StdQuery",
        ["std"],
        f"{_DP}: the standard deviation of a numeric column.",
        {"column": _COLUMN, "filters": _FILTERS, "group_by": _GROUP_BY, "quantiles": _EMPTY, "bins": _EMPTY},
        ["column"],
    ),
    "quantile": _query(
        "QuantileQuery",
        ["quantile"],
        f"{_DP}: quantiles of a numeric column (the exponential mechanism; no delta).",
        {
            "column": _COLUMN,
            "quantiles": {
                "type": "array",
                "minItems": 1,
                "maxItems": dp.MAX_QUANTILES,
                "items": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "filters": _FILTERS,
            "group_by": _GROUP_BY,
            "bins": _EMPTY,
        },
        ["column", "quantiles"],
    ),
    "histogram": _query(
        "HistogramQuery",
        ["histogram"],
        f"{_DP}: counts per bin. A numeric column takes `bins`: a number of equal-width bins over its declared "
        "bounds, or at least two strictly increasing edges; a categorical or boolean column is binned by its "
        "declared values and takes none.",
        {
            "column": {"type": "string"},
            "bins": {
                "nullable": True,
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": dp.MAX_BINS},
                    {"type": "array", "maxItems": 0},
                    {"type": "array", "minItems": 2, "maxItems": dp.MAX_BINS + 1, "items": {"type": "number"}},
                ],
            },
            "filters": _FILTERS,
            "group_by": _GROUP_BY,
            "quantiles": _EMPTY,
        },
        ["column"],
    ),
    "dot": _query(
        "DotQuery",
        ["dot"],
        f"{_HE}: the dot product of a column with public weights, one per row (weights past the last row are ignored).",
        {
            "column": _COLUMN,
            "weights": openapi.register_component(
                "HeWeights",
                {
                    "anyOf": [
                        {"type": "array", "minItems": 1, "items": {"type": "number"}, "description": "Dense."},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["indexes", "values"],
                            "description": "Sparse: rows (from 0, no repeats) and their weights.",
                            "properties": {
                                "indexes": {
                                    "type": "array",
                                    "minItems": 1,
                                    "uniqueItems": True,
                                    "items": {"type": "integer", "minimum": 0},
                                },
                                "values": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                            },
                        },
                    ],
                    "description": "Finite numbers, at least one non-zero.",
                },
            ),
        },
        ["column", "weights"],
    ),
    "regression": _query(
        "RegressionQuery",
        ["regression"],
        f"{_HE}: the statistics of a least-squares regression of `target` on `columns` (X^T X and X^T y), and "
        "its coefficients.",
        {
            "columns": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "uniqueItems": True,
                "items": {"type": "string"},
            },
            "target": {"type": "string"},
            "filter": _HE_FILTER,
        },
        ["columns", "target"],
    ),
}
openapi.register_component(
    "Query",
    {
        "description": "A query: one shape per `aggregate`. DP datasets take count, sum, mean, variance, std, "
        "quantile and histogram; HE datasets count, sum, mean, variance, dot and regression. The columns, kinds "
        "and categories named must be the purchased dataset's declared ones. docs/QUERIES.md shows an example of "
        "each aggregate and filter.",
        "oneOf": list(_QUERY_SHAPES.values()),
        "discriminator": {
            "propertyName": "aggregate",
            "mapping": {
                **{a: _QUERY_SHAPES["sum"]["$ref"] for a in ("sum", "mean", "variance")},
                **{a: shape["$ref"] for a, shape in _QUERY_SHAPES.items() if a != "sum"},
            },
        },
    },
)

_FILTER_KEYS = {
    "range": {"column", "op", "low", "high"},
    "eq": {"column", "op", "value"},
    "in": {"column", "op", "values"},
}


def _top_level_errors(query: dict[str, Any], errors: dict[str, list[str]]) -> None:
    for key in ("filters", "group_by", "columns"):
        value = query.get(key)
        if key in query and not (isinstance(value, list) or (value is None and key != "columns")):
            errors[f"query.{key}"] = ["Must be a list."]
    for key in ("column", "category", "target"):
        value = query.get(key)
        if key in query and not (isinstance(value, str) or (value is None and key == "column")):
            errors[f"query.{key}"] = ["Must be a string."]


def _he_filter_errors(query: dict[str, Any], errors: dict[str, list[str]]) -> None:
    flt = query.get("filter")
    if "filter" not in query or flt is None:
        return
    if not isinstance(flt, dict):
        errors["query.filter"] = ["Must be an object."]
        return
    for key in ("column", "category"):
        if key in flt and not isinstance(flt[key], str):
            errors[f"query.filter.{key}"] = ["Must be a string."]


def _dp_filter_errors(query: dict[str, Any], errors: dict[str, list[str]]) -> None:
    items = query.get("filters") if isinstance(query.get("filters"), list) else []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if "column" in item and not isinstance(item["column"], str):
            errors[f"query.filters.{i}.column"] = ["Must be a string."]
        allowed = _FILTER_KEYS.get(item.get("op")) if isinstance(item.get("op"), str) else None
        extra = sorted(set(item) - allowed) if allowed else []
        if extra:
            errors[f"query.filters.{i}.{extra[0]}"] = [f"Not a field of an '{item['op']}' filter."]


def query_form_errors(query: Any) -> dict[str, list[str]]:
    """What in a query's shape the ``Query`` schema refuses and the engines would read all the same.

    The DP engine reads any false value as "no filters" or "no groups", and ignores keys a filter of
    its kind does not use; the HE planner compares a column name that is not text with the declared
    ones (a list there was a server error). Everything else about a query is checked, field by field,
    by the engine of the dataset's mode.
    """
    if not isinstance(query, dict):
        return {}
    errors: dict[str, list[str]] = {}
    _top_level_errors(query, errors)
    _he_filter_errors(query, errors)
    _dp_filter_errors(query, errors)
    return errors
