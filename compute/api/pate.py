"""API v1 for PATE jobs: a buyer's unlabelled table and spec, submitted to an ensemble (docs/PATE.md).
The job is then an ordinary job: read, cancel and download it under /api/v1/jobs/."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiRequest, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.throttling import JobSubmitThrottle
from compute import pate_services
from compute.api.serializers import JobOutputSerializer
from config import openapi
from config.exceptions import ValidationFailed

_IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    OpenApiParameter.HEADER,
    description="A retried POST with the same key returns the first job (1 to 255 characters).",
)
openapi.register_component(
    "PateSpec",
    {
        "type": "object",
        "additionalProperties": False,
        "description": "Omitted fields get defaults: 250 teachers, threshold 0.8 of them, sigma1 150, sigma2 40, every "
        "row asked up to 1,000, logistic-regression teachers, no student. With `epsilon`, the sigmas (or max_queries, when both "
        "sigmas are given) are fitted so that the reservation is at most epsilon at the members' delta.",
        "properties": {
            "teachers": {"type": "integer", "minimum": 1, "maximum": 2000},
            "threshold": {"type": "number", "minimum": 0},
            "sigma1": {"type": "number", "minimum": 1, "maximum": 1000000},
            "sigma2": {"type": "number", "minimum": 1, "maximum": 1000000},
            "max_queries": {"type": "integer", "minimum": 1, "maximum": 100000},
            "teacher_model": {"type": "string", "enum": ["logistic_regression", "random_forest"]},
            "epsilon": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
            "student": {
                "type": "boolean",
                "description": "Also release `student`: a logistic regression trained on the answered labels "
                "(post-processing, no further charge), a model file at /api/v1/jobs/{id}/model/.",
            },
        },
    },
)


class EnsembleJobsApi(APIView):
    parser_classes = [MultiPartParser]

    def get_throttles(self):
        return [*super().get_throttles(), JobSubmitThrottle()]

    @openapi.api_operation(
        tag="ensembles",
        summary="Label rows with an ensemble (a PATE job)",
        description="Buyers only. `file`: the unlabelled rows (CSV with a header row, or Parquet) with the "
        "ensemble's feature columns, checked against their declared kinds, bounds and categories like any upload "
        "(a 400 naming the problem under `file`), stored encrypted and deleted once the job is done. `spec`: a "
        "JSON object (PateSpec). Reserves the spec's data-independent rho on every member dataset (a 409 "
        "`dataset_budget_exhausted` naming the first that cannot take it, with its id in `dataset`) and holds "
        "`price_per_label` x `max_queries` credits (a 409 `insufficient_credits`); 202 with the job (kind `pate`). "
        "Once released, only the answered labels are paid for.",
        request={
            "multipart/form-data": OpenApiRequest(
                inline_serializer(
                    "PateJobUpload",
                    {
                        "file": serializers.FileField(help_text="CSV (UTF-8, header row) or Parquet"),
                        "spec": openapi.JsonSchemaField(component="PateSpec", required=False),
                    },
                ),
                encoding={"spec": {"contentType": "application/json"}},
            )
        },
        responses={202: JobOutputSerializer},
        parameters=[_IDEMPOTENCY_KEY],
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request, ensemble_id: int):
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise ValidationFailed(
                "Idempotency-Key must be 1 to 255 characters.", fields={"Idempotency-Key": ["1 to 255 characters."]}
            )
        job, created = pate_services.pate_submit(
            buyer=request.user,
            ensemble_id=ensemble_id,
            upload=request.FILES.get("file"),
            spec=request.data.get("spec"),
            idempotency_key=key,
        )
        return Response(JobOutputSerializer(job, context={"reused": not created}).data, status=status.HTTP_202_ACCEPTED)
