"""API v1 for the marketplace: datasets, publishing, purchases."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fields as plain_fields
from config.exceptions import ValidationFailed
from marketplace import selectors, services
from marketplace.models import Column, Dataset

MAX_COLUMNS = 500
MAX_CATEGORIES = 1000


class ColumnInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=Column.Kind.choices)
    lower = plain_fields.FloatField(required=False, allow_null=True)
    upper = plain_fields.FloatField(required=False, allow_null=True)
    categories = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, allow_null=True, max_length=MAX_CATEGORIES
    )
    is_label = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        kind = attrs["kind"]
        errors: dict[str, list[str]] = {}
        if kind == Column.Kind.NUMERIC:
            for side in ("lower", "upper"):
                value = attrs.get(side)
                if value is None:
                    errors[side] = ["A numeric column needs declared bounds; they are never read off the data."]
                elif not math.isfinite(value):
                    errors[side] = ["Must be a finite number."]
            if not errors and attrs["lower"] >= attrs["upper"]:
                errors["upper"] = ["Must be greater than lower."]
            if attrs.get("categories"):
                errors["categories"] = ["Only categorical columns have categories."]
        else:
            for side in ("lower", "upper"):
                if attrs.get(side) is not None:
                    errors[side] = [f"Only numeric columns have bounds; this column is {kind}."]
            attrs["lower"] = attrs["upper"] = None
        if kind == Column.Kind.CATEGORICAL:
            cats = [c.strip() for c in (attrs.get("categories") or [])]
            if not cats:
                errors["categories"] = ["A categorical column needs its list of categories declared."]
            elif len(set(cats)) != len(cats):
                errors["categories"] = ["Categories must be unique."]
            elif any(not c for c in cats):
                errors["categories"] = ["Categories may not be blank."]
            attrs["categories"] = cats
        elif kind == Column.Kind.BOOLEAN:
            if attrs.get("categories"):
                errors["categories"] = ["Boolean columns have no categories."]
            attrs["categories"] = []
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class DatasetMetadataSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)
    mode = serializers.ChoiceField(choices=Dataset.Mode.choices, default=Dataset.Mode.DP)
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))
    delta_cap = plain_fields.DecimalField(
        max_digits=16, decimal_places=12, min_value=Decimal("0"), max_value=Decimal("0.1"), default=Decimal("0")
    )
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))
    row_count_public = serializers.BooleanField(default=False)
    clip_to_bounds = serializers.BooleanField(
        default=False, help_text="Clip out-of-bounds values instead of rejecting the file."
    )
    columns = ColumnInputSerializer(many=True, allow_empty=False, max_length=MAX_COLUMNS)

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
    try:
        parsed = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed")))
    except RecursionError:
        raise ValidationFailed(
            "metadata is nested too deeply to read.", code="invalid_json", fields={"metadata": ["Nested too deeply."]}
        ) from None
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(
            f"metadata is not valid JSON: {exc}", code="invalid_json", fields={"metadata": [f"Not valid JSON: {exc}"]}
        ) from None
    if not isinstance(parsed, dict):
        raise ValidationFailed("metadata must be a JSON object.", fields={"metadata": ["Must be a JSON object."]})
    serializer = DatasetMetadataSerializer(data=parsed)
    if not serializer.is_valid():
        raise serializers.ValidationError({"metadata": serializer.errors})
    return serializer.validated_data


class ColumnOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    lower = plain_fields.FloatField(allow_null=True)
    upper = plain_fields.FloatField(allow_null=True)
    categories = serializers.ListField(child=serializers.CharField())
    is_label = serializers.BooleanField()


class DatasetOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    slug = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    mode = serializers.CharField()
    status = serializers.CharField()
    owner = serializers.CharField(source="owner.username")
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    epsilon_sold = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    epsilon_available = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta_cap = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2)
    row_count_public = serializers.BooleanField()
    row_count = serializers.SerializerMethodField()
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


class DatasetFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="noop", max_length=200)
    mode = django_filters.ChoiceFilter(choices=Dataset.Mode.choices, method="noop")
    mine = django_filters.BooleanFilter(method="noop")

    def noop(self, queryset, name, value):  # filtering happens in the selector
        return queryset


class DatasetListCreateApi(APIView):
    parser_classes = [MultiPartParser]

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsAuthenticated()]

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="words in the title, description or column names"),
            OpenApiParameter("mode", str, enum=["dp", "he"]),
            OpenApiParameter("mine", bool, description="only the caller's own datasets"),
            OpenApiParameter("page", int),
        ],
        responses=DatasetOutputSerializer(many=True),
        auth=[{}, {"bearerAuth": []}],
    )
    def get(self, request):
        params = DatasetFilter(request.query_params, queryset=Dataset.objects.none())
        if not params.is_valid():
            raise serializers.ValidationError(params.errors)
        cleaned = params.form.cleaned_data
        qs = selectors.dataset_list(
            user=request.user,
            search=cleaned.get("search") or "",
            mode=cleaned.get("mode") or "",
            mine=bool(cleaned.get("mine")),
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            DatasetOutputSerializer(page, many=True, context={"user": request.user}).data
        )

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "DatasetUpload",
                {
                    "file": serializers.FileField(help_text="CSV (UTF-8, header row) or Parquet"),
                    "metadata": serializers.CharField(
                        help_text="JSON: title, description, mode, epsilon_cap, delta_cap, price_per_epsilon, row_count_public, clip_to_bounds, columns"
                    ),
                },
            )
        },
        responses={201: DatasetOutputSerializer},
    )
    def post(self, request):
        metadata = parse_metadata(request.data.get("metadata"))
        upload = request.FILES.get("file")
        dataset = services.dataset_create(
            owner=request.user,
            data=services.DatasetInput(**metadata),
            upload=upload,
        )
        body = DatasetOutputSerializer(dataset, context={"user": request.user}).data
        body["ingest"] = dataset.ingest_report
        return Response(body, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=DatasetOutputSerializer, auth=[{}, {"bearerAuth": []}])
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        return Response(DatasetOutputSerializer(dataset, context={"user": request.user}).data)


class DatasetPublishApi(APIView):
    @extend_schema(request=None, responses=DatasetOutputSerializer)
    def post(self, request, dataset_id: int):
        dataset = services.dataset_publish(owner=request.user, dataset_id=dataset_id)
        return Response(DatasetOutputSerializer(dataset, context={"user": request.user}).data)


class DatasetSuspendApi(APIView):
    """The owner takes a published dataset off sale; POST .../publish/ puts it back."""

    @extend_schema(request=None, responses=DatasetOutputSerializer)
    def post(self, request, dataset_id: int):
        dataset = services.dataset_suspend(owner=request.user, dataset_id=dataset_id)
        return Response(DatasetOutputSerializer(dataset, context={"user": request.user}).data)


class PurchaseOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    dataset = plain_fields.IntegerField(source="dataset_id")
    dataset_title = serializers.CharField(source="dataset.title")
    epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    price = plain_fields.DecimalField(max_digits=18, decimal_places=2)
    epsilon_spent = serializers.SerializerMethodField()
    epsilon_remaining = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def _budget(self, obj) -> selectors.PurchaseBudget:
        # Both fields come from one ledger query per purchase.
        if getattr(obj, "_ledger_budget", None) is None:
            obj._ledger_budget = selectors.purchase_budget(obj)
        return obj._ledger_budget

    def get_epsilon_spent(self, obj) -> str:
        return f"{self._budget(obj).spent:.6f}"

    def get_epsilon_remaining(self, obj) -> str:
        return f"{self._budget(obj).remaining:.6f}"


class PurchaseListCreateApi(APIView):
    @extend_schema_serializer(component_name="PurchaseInput")
    class InputSerializer(serializers.Serializer):
        dataset = plain_fields.IntegerField(min_value=1)
        epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))

    @extend_schema(responses=PurchaseOutputSerializer(many=True))
    def get(self, request):
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(selectors.purchase_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(PurchaseOutputSerializer(page, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: PurchaseOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        purchase = services.purchase_create(
            buyer=request.user, dataset_id=data.validated_data["dataset"], epsilon=data.validated_data["epsilon"]
        )
        return Response(PurchaseOutputSerializer(purchase).data, status=status.HTTP_201_CREATED)


class PurchaseDetailApi(APIView):
    @extend_schema(responses=PurchaseOutputSerializer)
    def get(self, request, purchase_id: int):
        purchase = selectors.purchase_get(user=request.user, purchase_id=purchase_id)
        return Response(PurchaseOutputSerializer(purchase).data)
