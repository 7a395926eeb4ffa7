"""API v1 for jobs: estimate, submit, list, read, cancel, download; and budget ledgers.

The query language is documented here as the ``Query`` schema component: one shape per aggregate,
each listing what a DP dataset (compute/engines/dp.py ``parse_query``) and an HE dataset
(cloakroom_client/protocol/he_plan.py ``plan``) read. Whether a query fits the purchased dataset
(its column names, kinds and categories) is checked by the services, which name the field; the
shape itself is checked here first (:func:`query_form_errors`), so that the document and the server
agree on what is a query at all.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import CREDIT_QUANTUM
from accounts.throttling import JobSubmitThrottle
from compute import receipts, selectors, services
from compute.engines import dp
from compute.models import Job
from config import fields as plain_fields
from config import openapi
from config.exceptions import NotFound, ValidationFailed
from marketplace import selectors as market
from marketplace.models import DELTA_QUANTUM, EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase

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
        "and categories named must be the purchased dataset's declared ones.",
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
    for key in ("filters", "group_by", "columns"):
        value = query.get(key)
        if key in query and not (isinstance(value, list) or (value is None and key != "columns")):
            errors[f"query.{key}"] = ["Must be a list."]
    for key in ("column", "category", "target"):
        value = query.get(key)
        if key in query and not (isinstance(value, str) or (value is None and key == "column")):
            errors[f"query.{key}"] = ["Must be a string."]
    flt = query.get("filter")
    if "filter" in query and flt is not None:
        if not isinstance(flt, dict):
            errors["query.filter"] = ["Must be an object."]
        else:
            for key in ("column", "category"):
                if key in flt and not isinstance(flt[key], str):
                    errors[f"query.filter.{key}"] = ["Must be a string."]
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
    return errors


class BudgetNumberField(serializers.CharField):
    """Epsilon or delta: decimal text, or a JSON number (read from its shortest spelling, so that no
    float sneaks into the ledger). The service reads the text exactly and checks its range."""

    # What the service reads: ASCII decimal notation with an optional sign and exponent, between the
    # white space Python strips (str.strip).
    _SPACE = r"[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    PATTERN = rf"^{_SPACE}*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?{_SPACE}*$"

    def __init__(self, *, places: int, below_one: bool = False, **kwargs):
        self.places, self.below_one = places, below_one
        kwargs.setdefault("max_length", 40)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        # JSON numbers become their text (repr keeps a float's shortest round-trip spelling).
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            data = repr(data) if isinstance(data, float) else str(data)
        elif not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)

    def openapi_schema(self, auto_schema, direction) -> dict:
        step = float(Decimal(1).scaleb(-self.places))
        number: dict[str, Any] = {"type": "number", "multipleOf": step}
        if self.below_one:
            number.update(minimum=0, maximum=1, exclusiveMaximum=True)
            limits = f"in [0, 1), at most {self.places} decimal places"
        else:
            number.update(minimum=step)
            limits = f"greater than 0, at most {self.places} decimal places"
        text = {"type": "string", "pattern": self.PATTERN, "maxLength": self.max_length}
        return {"anyOf": [text, number], "description": f"Decimal text (`0.5`, `1e-5`) or a JSON number; {limits}."}


type("BudgetNumberFieldExtension", (openapi._Extension,), {"target_class": BudgetNumberField})

# ---------------------------------------------------------------------------------------------
# Results and receipts

_NUMBERS = {"type": "object", "additionalProperties": {"type": "number"}}
_INTERVAL = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
openapi.register_component(
    "ResultGroup",
    {
        "type": "object",
        "required": ["key", "value", "ci95"],
        "properties": {
            "key": {
                "type": "object",
                "nullable": True,
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
                "description": "The group's value of each group_by column (HE: the category or statistic); null "
                "without group_by.",
            },
            "value": {
                "anyOf": [
                    {"type": "number"},
                    {"type": "array", "items": {"type": "number"}, "description": "quantile: one per quantile"},
                    {
                        "type": "array",
                        "description": "histogram: one per bin",
                        "items": {
                            "type": "object",
                            "required": ["bin", "count", "ci95"],
                            "properties": {
                                "bin": {
                                    "anyOf": [
                                        {"type": "string"},
                                        {"type": "boolean"},
                                        {**_INTERVAL, "description": "[low, high) of a numeric bin"},
                                    ]
                                },
                                "count": {"type": "number"},
                                "ci95": _INTERVAL,
                            },
                        },
                    },
                ]
            },
            "ci95": {**_INTERVAL, "nullable": True, "description": "95% interval; null for quantiles and histograms."},
            "raw": {**_NUMBERS, "description": "The noisy measurements behind a post-processed value."},
        },
    },
)
openapi.register_component(
    "JobResult",
    {
        "type": "object",
        "required": ["aggregate", "groups"],
        "properties": {
            "aggregate": {"type": "string"},
            "groups": {"type": "array", "items": openapi.ref("ResultGroup")},
            "regression": {
                "type": "object",
                "description": "HE regression: X^T X, X^T y (intercept first) and the coefficients when X^T X "
                "could be inverted.",
                "required": ["columns", "target", "xtx", "xty", "coefficients"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "target": {"type": "string"},
                    "xtx": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                    "xty": {"type": "array", "items": {"type": "number"}},
                    "coefficients": {**_NUMBERS, "nullable": True},
                },
            },
            "measurements": {**_NUMBERS, "description": "HE: the key holder's noisy components as released."},
        },
    },
)
openapi.register_component(
    "Receipt",
    {
        "type": "object",
        "description": "What was released and what it cost: the mechanism, the epsilon and delta charged (0 for "
        "a free repeat), the noise and the neighbouring relation the epsilon refers to.",
        "required": ["job", "mode", "epsilon_charged", "delta_charged", "dataset"],
        "properties": {
            "job": {"type": "integer"},
            "mode": {"type": "string", "enum": ["dp", "he"]},
            "mechanism": {"type": "string", "nullable": True},
            "epsilon_charged": {"type": "string"},
            "delta_charged": {"type": "string"},
            "noise_scale": {"type": "number", "nullable": True},
            "interval": {"type": "string", "nullable": True},
            "dataset": {"type": "integer"},
            "dataset_version": {"type": "integer", "nullable": True},
            "released_at": {"type": "string", "format": "date-time", "nullable": True},
            "neighbouring": {"type": "string", "nullable": True},
            "granularity": {**_NUMBERS, "nullable": True, "description": "Each noisy measurement's grid step."},
            "epsilon_replace_one": {"type": "number", "description": "DP with a public row count."},
            "ckks": {"type": "object", "nullable": True, "description": "HE: the CKKS parameters and error bound."},
        },
    },
)


class JobOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    status = openapi.ChoiceOutput(choices=Job.Status.choices)
    kind = openapi.ChoiceOutput(choices=Job.Kind.choices)
    dataset = plain_fields.IntegerField(source="dataset_id")
    purchase = plain_fields.IntegerField(source="purchase_id")
    query = openapi.JsonSchemaField(component="Query", source="spec", help_text="The query in canonical form.")
    epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    error = serializers.CharField(help_text="Why the job failed; empty otherwise.")
    reused = openapi.MethodField(
        schema={"type": "boolean", "description": "Whether an earlier job answers this submission."}
    )
    result = openapi.MethodField(component="JobResult", allow_null=True, help_text="Null until released.")
    receipt = openapi.MethodField(component="Receipt", allow_null=True, help_text="Null until released.")
    progress = openapi.MethodField(
        schema={
            "type": "object",
            "nullable": True,
            "required": ["done", "total"],
            "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}},
            "description": "HE jobs: ciphertext chunks aggregated so far, of all; null otherwise.",
        }
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    computed_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_reused(self, obj) -> bool:
        return bool(self.context.get("reused"))

    def get_progress(self, obj) -> dict | None:
        """HE jobs: ciphertext chunks aggregated so far, of all."""
        if not obj.progress_total:
            return None
        return {"done": obj.progress_done, "total": obj.progress_total}

    def get_result(self, obj) -> dict | None:
        if obj.status != Job.Status.RELEASED:
            return None
        r = obj.result or {}
        out = {"aggregate": r.get("aggregate"), "groups": r.get("groups")}
        if "regression" in r:
            out["regression"] = r["regression"]
        if "measurements" in r:
            # HE: the key holder's noisy components as released, each on its grid (receipt.granularity).
            out["measurements"] = r["measurements"]
        return out

    def get_receipt(self, obj) -> dict | None:
        return receipts.receipt(obj)


@extend_schema_serializer(component_name="JobInput")
class JobInputSerializer(serializers.Serializer):
    purchase = openapi.IntegerField(min_value=1)
    kind = openapi.ChoiceField(
        choices=["query"], default="query", help_text="query: a DP query, or an HE aggregate on an HE dataset"
    )
    query = openapi.JsonSchemaField(component="Query")
    epsilon = BudgetNumberField(places=6)
    delta = BudgetNumberField(places=12, below_one=True, required=False, default="0")

    def validate_query(self, query):
        errors = query_form_errors(query)
        if errors:
            name, reasons = next(iter(errors.items()))
            raise ValidationFailed(f"{name}: {reasons[0]}", code="invalid_query", fields=errors)
        return query


_IDEMPOTENCY_KEY = [
    OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 255},
        OpenApiParameter.HEADER,
        description="A retried POST with the same key returns the first job (1 to 255 characters).",
    )
]


class JobListCreateApi(APIView):
    def get_throttles(self):
        # Submissions are also limited per buyer (accounts.throttling.JobSubmitThrottle).
        throttles = super().get_throttles()
        if self.request.method == "POST":
            throttles.append(JobSubmitThrottle())
        return throttles

    @openapi.api_operation(
        tag="jobs",
        summary="List the caller's jobs",
        description="Newest first, 20 a page.",
        operation_id="v1_jobs_list",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=list(Job.Status.values)), openapi.PAGE_PARAMETER],
        responses={200: openapi.paginated(JobOutputSerializer, "PaginatedJobList")},
        errors=[400, 401, 404],
    )
    def get(self, request):
        paginator = openapi.Pagination()
        qs = selectors.job_list(user=request.user)
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in Job.Status.values:
                raise ValidationFailed(
                    f"status: must be one of {', '.join(Job.Status.values)}.", fields={"status": ["Unknown status."]}
                )
            qs = qs.filter(status=wanted)
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)

    @openapi.api_operation(
        tag="jobs",
        summary="Submit a job",
        description="Reserve `epsilon` (and `delta`) of a purchase and queue the query; 202 with the job. The "
        "query is checked against the purchased dataset's declared columns (a 400 naming the field). A "
        "repeat of a released query costs nothing and returns that job (`reused`). A 409 when the purchase "
        "has too little budget left or the dataset is not available.",
        request={"application/json": JobInputSerializer},
        responses={202: JobOutputSerializer},
        parameters=_IDEMPOTENCY_KEY,
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request):
        data = JobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise ValidationFailed(
                "Idempotency-Key must be 1 to 255 characters.", fields={"Idempotency-Key": ["1 to 255 characters."]}
            )
        job, created = services.job_submit(
            buyer=request.user,
            purchase_id=v["purchase"],
            kind=v["kind"],
            query=v["query"],
            epsilon=v["epsilon"],
            delta=v.get("delta") or "0",
            idempotency_key=key,
        )
        return Response(JobOutputSerializer(job, context={"reused": not created}).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="EstimateInput")
class EstimateInputSerializer(JobInputSerializer):
    epsilon = BudgetNumberField(places=6, required=False, help_text="Give epsilon, or ci95_halfwidth.")
    ci95_halfwidth = openapi.FloatField(
        required=False, help_text="Ask for the epsilon that reaches this accuracy instead (greater than 0)."
    )
    rows = openapi.IntegerField(
        required=False, min_value=1, help_text="How many rows the answer covers, if you know or guess it."
    )


@extend_schema_serializer(component_name="Estimate")
class EstimateOutputSerializer(serializers.Serializer):
    epsilon = serializers.CharField(help_text="The epsilon asked for, or the one that reaches ci95_halfwidth.")
    delta = serializers.CharField()
    price = serializers.CharField(help_text="What that epsilon costs when bought on this dataset.")
    noise_scale = serializers.FloatField()
    ci95_halfwidth = serializers.FloatField(allow_null=True, help_text="Null when it depends on a private count.")
    exact = serializers.BooleanField(help_text="Whether the interval is exact rather than approximate.")
    mechanism = serializers.CharField()
    note = serializers.CharField()
    rows_assumed = serializers.IntegerField(allow_null=True)
    epsilon_remaining = serializers.CharField(help_text="Left on the purchase.")
    affordable = serializers.BooleanField(help_text="Whether the purchase has that much epsilon left.")


class JobEstimateApi(APIView):
    """What a job would cost and how accurate it would be, computed from the declared bounds and
    the mechanism alone. Spends nothing."""

    @openapi.api_operation(
        tag="jobs",
        summary="Estimate a job's accuracy and cost",
        description="From the declared bounds and the mechanism alone; spends nothing and reads no data. Give "
        "`epsilon` to learn the noise and the 95% half-width, or `ci95_halfwidth` to learn the epsilon that "
        "reaches it.",
        request={"application/json": EstimateInputSerializer},
        responses={200: EstimateOutputSerializer},
        errors=[400, 401, 403, 404, 413, 415],
    )
    def post(self, request):
        data = EstimateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        est = services.job_estimate(
            user=request.user,
            purchase_id=v["purchase"],
            query=v["query"],
            epsilon=v.get("epsilon"),
            delta=v.get("delta") or "0",
            ci95_halfwidth=v.get("ci95_halfwidth"),
            rows=v.get("rows"),
        )
        return Response(
            {
                "epsilon": f"{est.epsilon:f}",
                "delta": f"{est.delta:f}",
                "price": f"{est.price}",
                "noise_scale": est.noise_scale,
                "ci95_halfwidth": est.ci95_halfwidth,
                "exact": est.exact,
                "mechanism": est.mechanism,
                "note": est.note,
                "rows_assumed": est.rows_assumed,
                "epsilon_remaining": f"{est.epsilon_remaining:f}",
                "affordable": est.affordable,
            }
        )


class JobDetailApi(APIView):
    @openapi.api_operation(
        tag="jobs",
        summary="Read a job",
        description="Its status, and once released its result and receipt.",
        responses={200: JobOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, job_id: int):
        return Response(JobOutputSerializer(selectors.job_get(user=request.user, job_id=job_id)).data)


class JobCancelApi(APIView):
    @openapi.api_operation(
        tag="jobs",
        summary="Cancel a job",
        description="A queued or running job is cancelled and its reservation refunded; a finished one is a 409.",
        request=None,
        responses={200: JobOutputSerializer},
        errors=[401, 403, 404, 409],
    )
    def post(self, request, job_id: int):
        return Response(JobOutputSerializer(services.job_cancel(buyer=request.user, job_id=job_id)).data)


_DOWNLOAD = inline_serializer(
    "JobDownload",
    {
        "job": serializers.IntegerField(),
        "result": openapi.JsonSchemaField(component="StoredResult"),
        "receipt": openapi.JsonSchemaField(component="Receipt"),
    },
)
openapi.register_component(
    "StoredResult",
    {
        "type": "object",
        "description": "The release as stored: the JobResult fields, the mechanism, epsilon, delta, noise, "
        "interval note, granularity and dataset version.",
        "required": ["aggregate", "groups"],
        "properties": {
            "aggregate": {"type": "string"},
            "groups": {"type": "array", "items": openapi.ref("ResultGroup")},
        },
    },
)


class JobDownloadApi(APIView):
    def perform_content_negotiation(self, request, force=False):
        # The format is ?format=, whatever the Accept header says; errors are JSON.
        return super().perform_content_negotiation(request, force=True)

    @openapi.api_operation(
        tag="jobs",
        summary="Download a released result",
        description="As JSON (the release as stored, with its receipt) or as CSV (one row per group, bin or "
        "quantile, with its interval). A job that is not released is a 404 (`not_released`).",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Default json."),
            OpenApiParameter(
                "Content-Disposition",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                required=True,
                description='attachment; filename="cloakroom-job-{id}.{format}"',
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(_DOWNLOAD, description="format=json"),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="format=csv"),
        },
        errors=[400, 401, 404],
    )
    def get(self, request, job_id: int):
        job = selectors.job_get(user=request.user, job_id=job_id)
        if job.status != Job.Status.RELEASED:
            raise NotFound(f"The job is {job.status}; only released results can be downloaded.", code="not_released")
        fmt = request.query_params.get("format", "json")
        if fmt == "csv":
            response = HttpResponse(receipts.result_csv(job), content_type="text/csv; charset=utf-8")
        elif fmt == "json":
            response = HttpResponse(receipts.result_json(job), content_type="application/json")
        else:
            raise ValidationFailed("format: choose json or csv.", fields={"format": ["Choose json or csv."]})
        response["Content-Disposition"] = f'attachment; filename="cloakroom-job-{job.pk}.{fmt}"'
        return response


def _eps(value) -> str:
    return f"{Decimal(value or 0).quantize(EPSILON_QUANTUM):f}"


def _delta(value) -> str:
    return f"{Decimal(value or 0).quantize(DELTA_QUANTUM):f}"


@extend_schema_serializer(component_name="PurchaseLedger")
class LedgerOutputSerializer(serializers.Serializer):
    purchase = serializers.IntegerField()
    epsilon = serializers.CharField(help_text="Bought.")
    epsilon_reserved = serializers.CharField(help_text="Reserved by jobs, in all.")
    epsilon_committed = serializers.CharField(help_text="Spent by released jobs.")
    epsilon_refunded = serializers.CharField(help_text="Given back by failed and cancelled jobs.")
    epsilon_held = serializers.CharField(help_text="Reserved by jobs still open.")
    epsilon_remaining = serializers.CharField()
    delta = serializers.CharField()
    delta_committed = serializers.CharField()
    entries = serializers.ListField(
        child=inline_serializer(
            "LedgerEntry",
            {
                "id": serializers.IntegerField(),
                "kind": openapi.ChoiceOutput(choices=LedgerEntry.Kind.choices),
                "job": serializers.IntegerField(allow_null=True),
                "epsilon": serializers.CharField(),
                "delta": serializers.CharField(),
                "created_at": serializers.DateTimeField(),
            },
        ),
        help_text="Oldest first.",
    )


class PurchaseLedgerApi(APIView):
    @openapi.api_operation(
        tag="purchases",
        summary="A purchase's budget ledger",
        description="Every reservation, commit and refund of the purchase's budget, and their totals.",
        responses={200: LedgerOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, purchase_id: int):
        purchase = market.purchase_get(user=request.user, purchase_id=purchase_id)
        entries = purchase.ledger_entries.order_by("created_at", "id")
        budget = market.purchase_budget(purchase)
        s = budget.totals
        return Response(
            {
                "purchase": purchase.pk,
                "epsilon": _eps(purchase.epsilon),
                "epsilon_reserved": _eps(s.epsilon[LedgerEntry.Kind.RESERVE]),
                "epsilon_committed": _eps(budget.spent),
                "epsilon_refunded": _eps(s.epsilon[LedgerEntry.Kind.REFUND]),
                "epsilon_held": _eps(budget.held),
                "epsilon_remaining": _eps(budget.remaining),
                "delta": _delta(purchase.delta),
                "delta_committed": _delta(s.delta[LedgerEntry.Kind.COMMIT]),
                "entries": [
                    {
                        "id": e.pk,
                        "kind": e.kind,
                        "job": e.job_id,
                        "epsilon": _eps(e.epsilon),
                        "delta": _delta(e.delta),
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
            }
        )


@extend_schema_serializer(component_name="DatasetBudget")
class BudgetOutputSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    epsilon_cap = serializers.CharField()
    epsilon_sold = serializers.CharField()
    epsilon_spent = serializers.CharField()
    epsilon_unsold = serializers.CharField()
    by_buyer = serializers.ListField(
        child=inline_serializer(
            "DatasetBudgetBuyer",
            {
                "buyer": serializers.CharField(),
                "epsilon_bought": serializers.CharField(),
                "epsilon_spent": serializers.CharField(),
                "credits_paid": serializers.CharField(),
                "jobs_released": serializers.IntegerField(),
            },
        )
    )


class DatasetBudgetApi(APIView):
    """For the dataset's owner: epsilon sold, spent and left, by buyer. Never a released value."""

    @openapi.api_operation(
        tag="datasets",
        summary="A dataset's budget, by buyer",
        description="For the dataset's owner: epsilon sold, spent and left, in all and by buyer. Never a "
        "released value. Any other dataset is a 404.",
        responses={200: BudgetOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, dataset_id: int):
        try:
            dataset = Dataset.objects.get(pk=dataset_id, owner=request.user)
        except (Dataset.DoesNotExist, ValueError, TypeError):
            raise NotFound("No such dataset.") from None
        spent = market.ledger_totals(LedgerEntry.objects.filter(dataset=dataset)).epsilon_spent
        buyers = (
            Purchase.objects.filter(dataset=dataset)
            .values("buyer__username")
            .annotate(
                epsilon_bought=Sum("epsilon"),
                credits_paid=Sum("price"),
                purchases=Count("id", distinct=True),
            )
            .order_by("buyer__username")
        )
        spent_by = {
            row["purchase__buyer__username"]: row["e"]
            for row in LedgerEntry.objects.filter(dataset=dataset, kind=LedgerEntry.Kind.COMMIT)
            .values("purchase__buyer__username")
            .annotate(e=Sum("epsilon"))
        }
        jobs_by = {
            row["buyer__username"]: row["n"]
            for row in Job.objects.filter(dataset=dataset)
            .values("buyer__username")
            .annotate(n=Count("id", filter=Q(status=Job.Status.RELEASED)))
        }
        return Response(
            {
                "dataset": dataset.pk,
                "epsilon_cap": _eps(dataset.epsilon_cap),
                "epsilon_sold": _eps(dataset.epsilon_sold),
                "epsilon_spent": _eps(spent),
                "epsilon_unsold": _eps(dataset.epsilon_cap - dataset.epsilon_sold),
                "by_buyer": [
                    {
                        "buyer": row["buyer__username"],
                        "epsilon_bought": _eps(row["epsilon_bought"]),
                        "epsilon_spent": _eps(spent_by.get(row["buyer__username"])),
                        "credits_paid": f"{Decimal(row['credits_paid']).quantize(CREDIT_QUANTUM)}",
                        "jobs_released": jobs_by.get(row["buyer__username"], 0),
                    }
                    for row in buyers
                ],
            }
        )
