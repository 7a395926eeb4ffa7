"""The marketplace API's request and answer shapes: dataset metadata and columns as an owner declares
them, datasets and purchases as the API answers them.

The web pages run the same input serializers (marketplace/forms.py), so the web and the API can never
disagree on what a valid dataset is.
"""

from __future__ import annotations

import math
from decimal import Decimal

from drf_spectacular.utils import extend_schema_serializer, inline_serializer
from rest_framework import serializers

from config import fields as plain_fields
from config import openapi
from config.exceptions import ValidationFailed
from marketplace import selectors
from marketplace.models import Column, Dataset
from marketplace.parsers import json_loads_strict

MAX_COLUMNS = 500
MAX_CATEGORIES = 1000


class ColumnInputSerializer(serializers.Serializer):
    name = openapi.CharField(max_length=100)
    kind = openapi.ChoiceField(choices=Column.Kind.choices)
    lower = openapi.FloatField(
        required=False, allow_null=True, help_text="Numeric columns: the declared lower bound (required)."
    )
    upper = openapi.FloatField(
        required=False, allow_null=True, help_text="Numeric columns: the declared upper bound, above lower (required)."
    )
    categories = serializers.ListField(
        child=openapi.CharField(max_length=200),
        required=False,
        allow_null=True,
        max_length=MAX_CATEGORIES,
        help_text="Categorical columns: every allowed value, unique and not blank (required).",
    )
    is_label = openapi.BooleanField(required=False, default=False)

    def validate(self, attrs):
        # Bounds first, then categories: the two touch different keys, so every problem is reported.
        errors = {**_bounds_errors(attrs), **_categories_errors(attrs)}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _bounds_errors(attrs: dict) -> dict[str, list[str]]:
    """A numeric column needs finite bounds, lower below upper; the other kinds have none (set to None)."""
    kind = attrs["kind"]
    errors: dict[str, list[str]] = {}
    if kind != Column.Kind.NUMERIC:
        for side in ("lower", "upper"):
            if attrs.get(side) is not None:
                errors[side] = [f"Only numeric columns have bounds; this column is {kind}."]
        attrs["lower"] = attrs["upper"] = None
        return errors
    for side in ("lower", "upper"):
        value = attrs.get(side)
        if value is None:
            errors[side] = ["A numeric column needs declared bounds; they are never read off the data."]
        elif not math.isfinite(value):
            errors[side] = ["Must be a finite number."]
    if not errors and attrs["lower"] >= attrs["upper"]:
        errors["upper"] = ["Must be greater than lower."]
    return errors


def _categories_errors(attrs: dict) -> dict[str, list[str]]:
    """Only a categorical column has categories: unique, not blank, stripped (a boolean's are set to [])."""
    kind = attrs["kind"]
    if kind == Column.Kind.NUMERIC:
        return {"categories": ["Only categorical columns have categories."]} if attrs.get("categories") else {}
    if kind == Column.Kind.BOOLEAN:
        problem = ["Boolean columns have no categories."] if attrs.get("categories") else None
        attrs["categories"] = []
        return {"categories": problem} if problem else {}
    if kind != Column.Kind.CATEGORICAL:
        return {}
    cats = [c.strip() for c in (attrs.get("categories") or [])]
    attrs["categories"] = cats
    if not cats:
        return {"categories": ["A categorical column needs its list of categories declared."]}
    if len(set(cats)) != len(cats):
        return {"categories": ["Categories must be unique."]}
    if any(not c for c in cats):
        return {"categories": ["Categories may not be blank."]}
    return {}


@extend_schema_serializer(component_name="DatasetMetadata")
class DatasetMetadataSerializer(serializers.Serializer):
    title = openapi.CharField(max_length=200)
    description = openapi.CharField(required=False, allow_blank=True, default="", max_length=20000)
    mode = openapi.ChoiceField(
        choices=Dataset.Mode.choices,
        default=Dataset.Mode.DP,
        help_text="Only `dp` is accepted by an upload; HE datasets are created with POST /api/v1/datasets/he/.",
    )
    epsilon_cap = openapi.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))
    delta_cap = openapi.DecimalField(
        max_digits=16, decimal_places=12, min_value=Decimal("0"), max_value=Decimal("0.1"), default=Decimal("0")
    )
    price_per_epsilon = openapi.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))
    row_count_public = openapi.BooleanField(default=False)
    clip_to_bounds = openapi.BooleanField(
        default=False, help_text="Clip out-of-bounds values instead of rejecting the file."
    )
    columns = serializers.ListField(
        child=ColumnInputSerializer(),
        allow_empty=False,
        min_length=1,
        max_length=MAX_COLUMNS,
        help_text="Names must be unique.",
    )

    def validate_columns(self, columns):
        names = [c["name"].strip() for c in columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise serializers.ValidationError(f"Column names must be unique; repeated: {', '.join(dupes)}.")
        for column, name in zip(columns, names):
            column["name"] = name
        return columns


def parse_metadata(raw) -> dict:
    """Parse the multipart ``metadata`` part: a JSON object validated by DatasetMetadataSerializer."""
    if raw is None or raw == "":
        raise ValidationFailed(
            "Send the dataset's metadata as a JSON string in the 'metadata' part.",
            fields={"metadata": ["This field is required."]},
        )
    if hasattr(raw, "read"):
        raw = raw.read(1_000_000)
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("metadata is not UTF-8 JSON.", fields={"metadata": ["Not UTF-8 text."]}) from None
    parsed = json_loads_strict(raw, "metadata")
    if not isinstance(parsed, dict):
        raise ValidationFailed("metadata must be a JSON object.", fields={"metadata": ["Must be a JSON object."]})
    serializer = DatasetMetadataSerializer(data=parsed)
    if not serializer.is_valid():
        raise serializers.ValidationError({"metadata": serializer.errors})
    return serializer.validated_data


class ColumnOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = openapi.ChoiceOutput(choices=Column.Kind.choices)
    lower = plain_fields.FloatField(allow_null=True)
    upper = plain_fields.FloatField(allow_null=True)
    categories = serializers.ListField(child=serializers.CharField())
    is_label = serializers.BooleanField()


class DatasetOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    slug = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    mode = openapi.ChoiceOutput(choices=Dataset.Mode.choices)
    status = openapi.ChoiceOutput(choices=Dataset.Status.choices)
    owner = serializers.CharField(source="owner.username", help_text="The owner's user name.")
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    epsilon_sold = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    epsilon_available = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta_cap = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2)
    row_count_public = serializers.BooleanField()
    row_count = serializers.SerializerMethodField(help_text="Null unless public or the caller owns the dataset.")
    version = plain_fields.IntegerField()
    columns = ColumnOutputSerializer(many=True, source="columns.all")
    created_at = serializers.DateTimeField()
    published_at = serializers.DateTimeField(allow_null=True)

    def get_row_count(self, obj) -> int | None:
        # The row count is private unless the owner made it public; the owner always sees it.
        user = self.context.get("user")
        if obj.row_count_public or (user is not None and obj.owner_id == getattr(user, "pk", None)):
            return obj.row_count
        return None


@extend_schema_serializer(component_name="DatasetCreated")
class DatasetCreatedSerializer(DatasetOutputSerializer):
    ingest = inline_serializer(
        "DatasetIngestReport",
        {
            "ignored_columns": serializers.ListField(
                child=serializers.CharField(), help_text="Columns of the file that were not declared, left out."
            ),
            "clipped": serializers.DictField(
                child=serializers.IntegerField(), help_text="Values clipped to the bounds, by column."
            ),
        },
        help_text="What the upload check did to the file.",
    )


class QueryBooleanField(serializers.Field):
    """``true`` or ``false`` in a query string (any letter case); anything else is a 400."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        value = str(data).lower()
        if value not in ("true", "false"):
            self.fail("invalid")
        return value == "true"


class DatasetListParams(serializers.Serializer):
    search = openapi.CharField(required=False, allow_blank=True, max_length=200)
    mode = openapi.ChoiceField(choices=Dataset.Mode.choices, required=False)
    mine = QueryBooleanField(required=False)


class PurchaseOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    dataset = plain_fields.IntegerField(source="dataset_id")
    dataset_title = serializers.CharField(source="dataset.title")
    epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    price = plain_fields.DecimalField(max_digits=18, decimal_places=2)
    epsilon_spent = serializers.SerializerMethodField()
    epsilon_remaining = serializers.SerializerMethodField()
    share_used = serializers.SerializerMethodField()
    composition = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def _budget(self, obj) -> selectors.PurchaseBudget:
        # Both fields come from one ledger query per purchase, kept by this serializer (one per list).
        budgets = self.__dict__.setdefault("_budgets", {})
        if obj.pk not in budgets:
            budgets[obj.pk] = selectors.purchase_budget(obj)
        return budgets[obj.pk]

    def get_epsilon_spent(self, obj) -> str:
        return f"{self._budget(obj).spent:.6f}"

    def get_epsilon_remaining(self, obj) -> str:
        """The largest epsilon one more job (at delta 0) could ask for now, under the accountant."""
        return f"{self._budget(obj).remaining:.6f}"

    def get_share_used(self, obj) -> float:
        """The share of the allotment that released and open jobs use, 0 to 1."""
        return round(self._budget(obj).share_used, 6)

    def get_composition(self, obj) -> str:
        """The bound behind epsilon_spent: basic composition or zCDP."""
        return self._budget(obj).released.method
