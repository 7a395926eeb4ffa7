"""Serializers of the jobs API: the budget numbers, the job as a client reads it, and a job request."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from compute import receipts
from compute.api import model_schema  # noqa: F401 (registers the training components)
from compute.api.query_schema import query_form_errors
from compute.models import Job
from config import fields as plain_fields
from config import openapi
from config.exceptions import ValidationFailed


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


type("BudgetNumberFieldExtension", (openapi.FieldSchemaExtension,), {"target_class": BudgetNumberField})

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
_CUMULATIVE = {
    "type": "object",
    "required": ["epsilon", "delta", "composition", "share_used"],
    "properties": {
        "epsilon": {"type": "number"},
        "delta": {"type": "number"},
        "composition": {
            "type": "string",
            "description": "The bound that gives it: basic composition, zCDP, or the purchases' guarantees added up.",
        },
        "share_used": {"type": "number", "description": "Of the cap, 0 to 1."},
    },
}

openapi.register_component(
    "PateResult",
    {
        "type": "object",
        "description": "A PATE job's labels (docs/PATE.md): one per row of the buyer's table, in order, null where "
        "the teachers' noisy vote was not confident enough to answer.",
        "required": ["labels", "answered", "asked", "epsilon", "delta"],
        "properties": {
            "labels": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "boolean"}], "nullable": True},
            },
            "answered": {"type": "integer"},
            "asked": {"type": "integer"},
            "epsilon": {"type": "number", "description": "The rho charged to every member, as epsilon at delta."},
            "delta": {"type": "number"},
            "student": {
                "allOf": [openapi.ref("Model")],
                "nullable": True,
                "description": "Only with spec.student: a logistic regression trained on the answered labels "
                "(post-processing, no charge), in a train job's model format; null when it could not be fitted.",
            },
            "student_error": {"type": "string", "description": "Why no student could be fitted (spec.student only)."},
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
            "rho_charged": {
                "type": "string",
                "description": "The release's zero-concentrated DP cost (0 for a free repeat).",
            },
            "purchase_after": {
                **_CUMULATIVE,
                "description": "The guarantee of everything released on the purchase, this answer included.",
            },
            "dataset_after": {
                **_CUMULATIVE,
                "description": "The guarantee of everything released on the dataset, to all its buyers, this answer "
                "included.",
            },
            "ckks": {"type": "object", "nullable": True, "description": "HE: the CKKS parameters and error bound."},
            "training": {
                "type": "object",
                "description": "train jobs: each noisy part (its statistics, mechanism, epsilon, delta, rho, "
                "sensitivity and grid), how the budget was split, and the declared bounds used.",
                "required": ["parts", "split", "bounds"],
                "properties": {
                    "parts": {"type": "array", "items": {"type": "object"}},
                    "split": {"type": "string"},
                    "bounds": {"type": "array", "items": {"type": "object"}},
                    "scaling": {"type": "string"},
                    "evaluation": {"type": "string"},
                },
            },
        },
    },
)


class JobOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    status = openapi.ChoiceOutput(choices=Job.Status.choices)
    kind = openapi.ChoiceOutput(choices=Job.Kind.choices)
    dataset = plain_fields.IntegerField(source="dataset_id")
    purchase = plain_fields.IntegerField(
        source="purchase_id", allow_null=True, help_text="Null for a PATE job, which is paid per label."
    )
    ensemble = plain_fields.IntegerField(
        source="ensemble_id", allow_null=True, help_text="PATE jobs: the ensemble; null otherwise."
    )
    query = openapi.MethodField(
        schema={
            "allOf": [openapi.ref("Query")],
            "nullable": True,
            "description": "The query in canonical form; null for a train job (see model).",
        }
    )
    epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    error = serializers.CharField(help_text="Why the job failed; empty otherwise.")
    reused = openapi.MethodField(
        schema={"type": "boolean", "description": "Whether an earlier job answers this submission."}
    )
    model = openapi.MethodField(
        schema={"allOf": [openapi.ref("ModelRequest")], "nullable": True, "description": "train jobs: the request."}
    )
    pate = openapi.MethodField(
        schema={
            "type": "object",
            "nullable": True,
            "description": "PATE jobs: the spec as run (defaults filled in), the member datasets and the rows asked "
            "about; null otherwise.",
        }
    )
    result = openapi.MethodField(
        schema={
            "anyOf": [openapi.ref("JobResult"), openapi.ref("ModelResult"), openapi.ref("PateResult")],
            "nullable": True,
            "description": "Null until released; a train job's is a ModelResult, a PATE job's a PateResult.",
        }
    )
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

    def get_query(self, obj) -> dict | None:
        return None if obj.kind in (Job.Kind.TRAIN, Job.Kind.PATE) else obj.spec

    def get_pate(self, obj) -> dict | None:
        if obj.kind != Job.Kind.PATE:
            return None
        spec = obj.spec or {}
        return {**spec.get("pate", {}), "members": spec.get("members", []), "rows": spec.get("rows")}

    def get_model(self, obj) -> dict | None:
        return obj.spec if obj.kind == Job.Kind.TRAIN else None

    def get_result(self, obj) -> dict | None:
        if obj.status != Job.Status.RELEASED:
            return None
        r = obj.result or {}
        if obj.kind == Job.Kind.TRAIN:
            return {"model": r.get("model")}
        if obj.kind == Job.Kind.PATE:
            # The student (docs/PATE.md) only when one was asked for, so a plain job's result stays as it was.
            extra = [k for k in ("student", "student_error") if k in r]
            return {k: r.get(k) for k in ("labels", "answered", "asked", "epsilon", "delta", *extra)}
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
        choices=["query", "train"],
        default="query",
        help_text="query: a DP query, or an HE aggregate on an HE dataset; train: a DP model on a DP dataset "
        "(docs/MODELS.md)",
    )
    query = openapi.JsonSchemaField(component="Query", required=False, help_text="Required for kind query.")
    model = openapi.JsonSchemaField(component="ModelRequest", required=False, help_text="Required for kind train.")
    epsilon = BudgetNumberField(places=6)
    delta = BudgetNumberField(places=12, below_one=True, required=False, default="0")

    def validate(self, attrs):
        """A query job takes ``query`` and a train job ``model``: the other is refused, not ignored."""
        wanted, other = ("model", "query") if attrs.get("kind", "query") == "train" else ("query", "model")
        if other in attrs:
            raise ValidationFailed(
                f"{other}: a {attrs.get('kind', 'query')} job takes {wanted}, not {other}.",
                fields={other: [f"Not read by this kind; send {wanted}."]},
            )
        if wanted not in attrs:
            raise ValidationFailed(f"{wanted}: This field is required.", fields={wanted: ["This field is required."]})
        return attrs

    @property
    def body(self) -> Any:
        """What the kind validates: the query, or the model request."""
        v = self.validated_data
        return v["model"] if v.get("kind") == "train" else v["query"]

    def validate_query(self, query):
        errors = query_form_errors(query)
        if errors:
            name, reasons = next(iter(errors.items()))
            raise ValidationFailed(f"{name}: {reasons[0]}", code="invalid_query", fields=errors)
        return query
