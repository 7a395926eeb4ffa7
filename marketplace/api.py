"""API v1 for the marketplace: datasets, publishing, purchases."""

from __future__ import annotations

import json
import math
from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fields as plain_fields
from config import openapi
from config.exceptions import Forbidden, ValidationFailed
from marketplace import selectors, services
from marketplace.models import Column, Dataset

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


class DatasetListCreateApi(APIView):
    parser_classes = [MultiPartParser]

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsAuthenticated()]

    @openapi.api_operation(
        tag="datasets",
        summary="List datasets",
        description="Published datasets for everyone, plus the caller's own drafts and suspended datasets; "
        "newest first, 20 a page. Credentials are optional, but when sent they must be valid.",
        parameters=[
            OpenApiParameter(
                "search",
                {"type": "string", "maxLength": 200, "pattern": openapi.NO_NUL},
                description="Words in the title, description or column names.",
            ),
            OpenApiParameter("mode", OpenApiTypes.STR, enum=["dp", "he"]),
            OpenApiParameter("mine", OpenApiTypes.BOOL, description="Only the caller's own datasets."),
            openapi.PAGE_PARAMETER,
        ],
        operation_id="v1_datasets_list",
        responses={200: openapi.paginated(DatasetOutputSerializer, "PaginatedDatasetList")},
        errors=[400, 401, 404],
        auth=[{}, {"bearerAuth": []}],
    )
    def get(self, request):
        # A plain dict, not the QueryDict: DRF reads an empty form value as "not given", and ?mode= is a 400.
        params = DatasetListParams(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        cleaned = params.validated_data
        qs = selectors.dataset_list(
            user=request.user,
            search=cleaned.get("search") or "",
            mode=cleaned.get("mode") or "",
            mine=bool(cleaned.get("mine")),
        )
        paginator = openapi.Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(
            DatasetOutputSerializer(page, many=True, context={"user": request.user}).data
        )

    @openapi.api_operation(
        tag="datasets",
        summary="Upload a DP dataset",
        description="Owners only. The file (CSV with a header row, or Parquet) is checked against the declared "
        "columns before anything is stored, then encrypted at rest; the dataset starts as a draft. The "
        "`metadata` part is a JSON object (Content-Type application/json, or a plain text part).",
        request={
            "multipart/form-data": OpenApiRequest(
                inline_serializer(
                    "DatasetUpload",
                    {
                        "file": serializers.FileField(help_text="CSV (UTF-8, header row) or Parquet"),
                        "metadata": DatasetMetadataSerializer(),
                    },
                ),
                encoding={"metadata": {"contentType": "application/json"}},
            )
        },
        responses={201: DatasetCreatedSerializer},
        errors=[400, 401, 403, 409, 413, 415],
    )
    def post(self, request):
        if not request.user.is_owner:
            # Before the body is read: a buyer's upload is refused whatever it holds.
            raise Forbidden("Only accounts with the owner role can list datasets.", code="not_an_owner")
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

    @openapi.api_operation(
        tag="datasets",
        summary="Read a dataset",
        description="A published dataset, or one of the caller's own. Credentials are optional, but when sent "
        "they must be valid.",
        responses={200: DatasetOutputSerializer},
        errors=[401, 404],
        auth=[{}, {"bearerAuth": []}],
    )
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        return Response(DatasetOutputSerializer(dataset, context={"user": request.user}).data)


class DatasetPublishApi(APIView):
    @openapi.api_operation(
        tag="datasets",
        summary="Publish a dataset",
        description="The owner puts a draft (or a suspended dataset) on sale. A 409 when it cannot be: an HE "
        "bundle that is not ready yet, for one.",
        request=None,
        responses={200: DatasetOutputSerializer},
        errors=[401, 403, 404, 409],
    )
    def post(self, request, dataset_id: int):
        dataset = services.dataset_publish(owner=request.user, dataset_id=dataset_id)
        return Response(DatasetOutputSerializer(dataset, context={"user": request.user}).data)


class DatasetSuspendApi(APIView):
    """The owner takes a published dataset off sale; POST .../publish/ puts it back."""

    @openapi.api_operation(
        tag="datasets",
        summary="Suspend a dataset",
        description="The owner takes a published dataset off sale: no new purchases or jobs; POST "
        ".../publish/ puts it back. A draft is a 409.",
        request=None,
        responses={200: DatasetOutputSerializer},
        errors=[401, 403, 404, 409],
    )
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
        dataset = openapi.IntegerField(min_value=1)
        epsilon = openapi.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))

    @openapi.api_operation(
        tag="purchases",
        summary="List the caller's purchases",
        description="Newest first, 20 a page.",
        parameters=[openapi.PAGE_PARAMETER],
        operation_id="v1_purchases_list",
        responses={200: openapi.paginated(PurchaseOutputSerializer, "PaginatedPurchaseList")},
        errors=[401, 404],
    )
    def get(self, request):
        paginator = openapi.Pagination()
        page = paginator.paginate_queryset(selectors.purchase_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(PurchaseOutputSerializer(page, many=True).data)

    @openapi.api_operation(
        tag="purchases",
        summary="Buy privacy budget",
        description="Buyers only: buy `epsilon` of a published dataset's budget, paid from the caller's credits "
        "(price per epsilon times epsilon). A 409 when the dataset is not on sale, is the caller's own, has "
        "too little budget left, or the credits do not cover the price.",
        request={"application/json": InputSerializer},
        responses={201: PurchaseOutputSerializer},
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        purchase = services.purchase_create(
            buyer=request.user, dataset_id=data.validated_data["dataset"], epsilon=data.validated_data["epsilon"]
        )
        return Response(PurchaseOutputSerializer(purchase).data, status=status.HTTP_201_CREATED)


class PurchaseDetailApi(APIView):
    @openapi.api_operation(
        tag="purchases",
        summary="Read a purchase",
        responses={200: PurchaseOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, purchase_id: int):
        purchase = selectors.purchase_get(user=request.user, purchase_id=purchase_id)
        return Response(PurchaseOutputSerializer(purchase).data)
