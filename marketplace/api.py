"""API v1 for the marketplace: datasets, publishing, purchases. The shapes are in marketplace/serializers.py."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config import openapi
from config.exceptions import Forbidden
from marketplace import selectors, services
from marketplace.serializers import (
    DatasetCreatedSerializer,
    DatasetListParams,
    DatasetMetadataSerializer,
    DatasetOutputSerializer,
    PurchaseOutputSerializer,
    parse_metadata,
)


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
        "`metadata` part is a JSON object (Content-Type application/json, or a plain text part). A file that "
        "does not match a declared column is a 400 whose `fields` list every problem under `file` and each "
        "under the column's own field as well: `metadata.columns.2.upper` (a value above the third column's "
        "upper bound), `.lower`, `.categories`, `.kind` (a value not of the declared kind), `.name` (the "
        "column is not in the file, or is there twice), or `metadata.columns.2` (missing cells).",
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
        description="The owner puts a draft (or a dataset they suspended) on sale. A 409 when it cannot be: "
        "`already_published` when it is on sale already (nothing changes), `dataset_suspended` when an "
        "administrator suspended it, `bundle_not_ready` for an HE bundle that is not complete and checked.",
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
