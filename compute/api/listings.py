"""API v1 for encrypted inference (docs/MODELS.md, "Encrypted inference"): publish a DP-trained model,
list and read the catalogue, submit encrypted rows, follow a prediction, download its encrypted scores.
Each view parses, calls one service or selector, and serializes."""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiRequest, OpenApiResponse, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cloakroom_client.protocol import inference
from compute.api.files import FileApi
from compute.inference import selectors, services
from compute.models import ModelListing, Prediction
from config import fields as plain_fields
from config import openapi
from config.exceptions import ServiceError, ValidationFailed

DP_NOTE = (
    "Trained with differential privacy: exact scores let a client recover a linear model from a few "
    "queries, so only DP-trained models are served, and what a client can learn is a DP release already."
)


@extend_schema_serializer(component_name="ModelListingInput")
class ListingInputSerializer(serializers.Serializer):
    job = openapi.IntegerField(min_value=1, help_text="A released train job of yours (linear models only).")
    title = openapi.CharField(max_length=200, help_text="What the catalogue shows.")
    price_per_prediction = openapi.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0"), help_text="Credits per row scored."
    )


@extend_schema_serializer(component_name="ModelListing")
class ListingOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    title = serializers.CharField()
    type = serializers.CharField(source="model.type", help_text="logistic_regression or linear_regression.")
    features = serializers.ListField(child=serializers.CharField(), source="model.features")
    label = serializers.CharField(source="model.label")
    classes = serializers.ListField(
        child=serializers.JSONField(), source="model.classes", allow_null=True, help_text="Null for a regression."
    )
    columns = serializers.ListField(
        child=serializers.CharField(), source="model.columns", help_text="The encoded columns, in the order to encrypt."
    )
    encoding = serializers.ListField(
        child=serializers.JSONField(), source="model.encoding", help_text="Each feature's declared encoding."
    )
    scores = openapi.MethodField(
        schema={"type": "array", "items": {"type": "string"}, "description": "The scores returned, in order."}
    )
    price_per_prediction = plain_fields.DecimalField(max_digits=14, decimal_places=2)
    owner = serializers.CharField(source="owner.username", help_text="Who trained and published the model.")
    dp = openapi.MethodField(schema={"type": "boolean", "description": "Always true: only DP-trained models."})
    privacy = openapi.MethodField(schema={"type": "string"})
    epsilon = plain_fields.DecimalField(source="job.epsilon", max_digits=12, decimal_places=6)
    delta = plain_fields.DecimalField(source="job.delta", max_digits=16, decimal_places=12)
    created_at = serializers.DateTimeField()

    def get_scores(self, obj: ModelListing) -> list[str]:
        return inference.score_names(obj.model)

    def get_dp(self, obj: ModelListing) -> bool:
        return True

    def get_privacy(self, obj: ModelListing) -> str:
        return DP_NOTE


@extend_schema_serializer(component_name="Prediction")
class PredictionOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    model = plain_fields.IntegerField(source="listing_id")
    rows = plain_fields.IntegerField()
    price = plain_fields.DecimalField(max_digits=18, decimal_places=2, help_text="Credits charged.")
    status = openapi.ChoiceOutput(choices=Prediction.Status.choices)
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ListingListCreateApi(APIView):
    @openapi.api_operation(
        tag="models",
        summary="List published models",
        description="Every model published for encrypted inference, newest first, 20 a page.",
        operation_id="v1_models_list",
        parameters=[openapi.PAGE_PARAMETER],
        responses={200: openapi.paginated(ListingOutputSerializer, "PaginatedModelListingList")},
        errors=[400, 401, 404],
    )
    def get(self, request):
        paginator = openapi.Pagination()
        page = paginator.paginate_queryset(selectors.listing_list(), request, view=self)
        return paginator.get_paginated_response(ListingOutputSerializer(page, many=True).data)

    @openapi.api_operation(
        tag="models",
        summary="Publish a model for encrypted inference",
        description="The buyer of a released train job (logistic or linear regression) lists its model at a "
        "price per prediction. Another account's job is a 404; a job not released (`not_released`), published "
        "already (`already_published`), that trained no model (`not_a_model`) or whose model cannot be served "
        "under encryption (`not_servable`, naive Bayes and the models other than linear ones) a 409.",
        request={"application/json": ListingInputSerializer},
        responses={201: ListingOutputSerializer},
        errors=[400, 401, 404, 409, 413, 415],
    )
    def post(self, request):
        data = ListingInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        listing = services.listing_publish(
            user=request.user, job_id=v["job"], title=v["title"], price_per_prediction=v["price_per_prediction"]
        )
        return Response(ListingOutputSerializer(listing).data, status=status.HTTP_201_CREATED)


class ListingDetailApi(APIView):
    @openapi.api_operation(
        tag="models",
        summary="Read a published model",
        description="Its encoding and price; the coefficients are not shown.",
        responses={200: ListingOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, listing_id: int):
        return Response(ListingOutputSerializer(selectors.listing_get(listing_id=listing_id)).data)


# The largest body a prediction may send: the context, a full container and room for the multipart framing.
MAX_BODY_BYTES = inference.MAX_CONTEXT_BYTES + inference.container_limit(inference.MAX_CIPHERTEXTS) + 64 * 1024


def _refuse_oversized(request) -> None:
    """A 413 before the body is read (and spooled to disk) when its declared length is over the limit."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ServiceError(
            f"The request body is larger than the {MAX_BODY_BYTES}-byte limit of one prediction; send fewer rows.",
            code="payload_too_large",
            status_code=413,
            extra={"limit_bytes": MAX_BODY_BYTES},
        )


def _rows(value) -> int:
    text = value if isinstance(value, str) else ""
    if not text.strip().isdigit():
        raise ValidationFailed("rows: a whole number is required.", fields={"rows": ["A whole number is required."]})
    return int(text)


class PredictionCreateApi(APIView):
    parser_classes = [MultiPartParser]

    @openapi.api_operation(
        tag="models",
        summary="Submit encrypted rows for prediction",
        description="Multipart: `rows` (how many rows are packed), `context` (a public TenSEAL CKKS context, "
        "no secret key: poly modulus degree 8192, coefficient moduli [60, 40, 40, 60], scale 2^40) and "
        "`ciphertexts` (a cloakroom-ciphertexts/1 container of batches x columns fresh ciphertexts, each "
        "column of 4096 rows). The price (price per prediction x rows) is debited now: a 409 "
        "`insufficient_credits` when the wallet cannot pay. 202 with the prediction to poll.",
        request={
            "multipart/form-data": OpenApiRequest(
                inline_serializer(
                    "PredictionUpload",
                    {
                        "rows": serializers.IntegerField(min_value=1),
                        "context": serializers.FileField(help_text="the public context"),
                        "ciphertexts": serializers.FileField(help_text="the container of ciphertexts"),
                    },
                )
            )
        },
        responses={202: PredictionOutputSerializer},
        errors=[400, 401, 404, 409, 413, 415],
    )
    def post(self, request, listing_id: int):
        _refuse_oversized(request)
        prediction = services.prediction_submit(
            client=request.user,
            listing_id=listing_id,
            rows=_rows(request.data.get("rows")),
            context=request.FILES.get("context"),
            ciphertexts=request.FILES.get("ciphertexts"),
        )
        return Response(PredictionOutputSerializer(prediction).data, status=status.HTTP_202_ACCEPTED)


class PredictionDetailApi(APIView):
    @openapi.api_operation(
        tag="models",
        summary="Follow a prediction",
        description="Queued, running, ready (the scores can be downloaded once), delivered, failed (refunded) or "
        "expired.",
        responses={200: PredictionOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, prediction_id: int):
        return Response(
            PredictionOutputSerializer(selectors.prediction_get(user=request.user, prediction_id=prediction_id)).data
        )


class PredictionScoresApi(FileApi):
    @openapi.api_operation(
        tag="models",
        summary="Download the encrypted scores, once",
        description="A cloakroom-ciphertexts/1 container: batch by batch, one ciphertext per score, under the "
        "client's key. The server deletes them as they are sent; a 409 `not_ready` before they are ready or after.",
        parameters=[openapi.attachment_header("cloakroom-prediction-{id}.ct")],
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)},
        errors=[401, 404, 409],
    )
    def get(self, request, prediction_id: int):
        prediction = selectors.prediction_get(user=request.user, prediction_id=prediction_id)
        response = HttpResponse(
            services.prediction_deliver(prediction=prediction), content_type="application/octet-stream"
        )
        response["Content-Disposition"] = f'attachment; filename="cloakroom-prediction-{prediction.pk}.ct"'
        return response
