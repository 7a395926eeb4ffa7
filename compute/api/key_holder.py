"""API v1 for the key holder of HE datasets: the jobs waiting for a key, their encrypted aggregates, release.

- ``GET /api/v1/he/jobs/awaiting/``: the caller's jobs (on datasets they own) waiting for the key, oldest first,
  each with its plan: the aggregates to decrypt and, per component, the noise to add.
- ``GET /api/v1/he/jobs/{id}/``: one job's plan (409 ``job_not_awaiting_key`` unless it waits for the key).
- ``GET /api/v1/he/jobs/{id}/aggregates/{name}/``: one encrypted aggregate (a serialized CKKS vector).
- ``POST /api/v1/he/jobs/{id}/release/``: ``{"values": {component: noisy value}}`` releases the job.

Only the dataset's owner may call these; any other job is a 404. The server never sees a secret key
or an un-noised value here: it serves ciphertexts and receives noisy numbers.
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import selectors
from compute.api.files import FileApi
from compute.api.serializers import JobOutputSerializer
from compute.kinds.he_query import key_holder
from compute.models import Job
from config import openapi

openapi.register_component(
    "HeKeyPlan",
    {
        "type": "object",
        "description": "What the key holder needs to release a job: the encrypted aggregates to decrypt (each "
        "summed over its first `length` slots) and, per component, `offset + sum(coefficient * aggregate)` and "
        "the noise to add on its grid. The key holder plans the query again from its own manifest and "
        "releases only a plan identical to its own.",
        "required": [
            "job",
            "dataset",
            "bundle_id",
            "query",
            "epsilon",
            "delta",
            "aggregates",
            "components",
            "created_at",
        ],
        "properties": {
            "job": {"type": "integer"},
            "dataset": {"type": "integer"},
            "bundle_id": {"type": "string"},
            "query": openapi.ref("Query"),
            "epsilon": {"type": "string", "format": "decimal"},
            "delta": {"type": "string", "format": "decimal"},
            "aggregates": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "length", "url"],
                    "properties": {
                        "name": {"type": "string"},
                        "length": {"type": "integer"},
                        "url": {"type": "string", "description": "Where to download its ciphertext."},
                    },
                },
            },
            "components": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "terms", "offset", "budget", "mechanism", "epsilon", "delta", "sensitivity"],
                    "properties": {
                        "name": {"type": "string"},
                        "terms": {
                            "type": "array",
                            "description": "[aggregate name, coefficient] pairs.",
                            "items": {
                                "type": "array",
                                "minItems": 2,
                                "maxItems": 2,
                                "items": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                            },
                        },
                        "offset": {"type": "number"},
                        "budget": {"type": "string", "description": "Components sharing one epsilon share a name."},
                        "mechanism": {"type": "string"},
                        "epsilon": {"type": "number"},
                        "delta": {"type": "number"},
                        "sensitivity": {"type": "number"},
                        "granularity": {"type": "number"},
                        "steps": {"type": "integer"},
                        "scale": {"type": "number"},
                    },
                },
            },
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
)

HeKeyPlanSerializer = openapi.component_serializer("HeKeyPlan")
_OWNER_ONLY = "Only the dataset's owner may call this; any other job is a 404."


def _aggregate_url(job: Job, name: str) -> str:
    return reverse("api-he-job-aggregate", kwargs={"job_id": job.pk, "name": name})


class AwaitingJobsApi(APIView):
    @openapi.api_operation(
        tag="he",
        summary="HE jobs waiting for the caller's key",
        description="Jobs on the caller's HE datasets whose aggregates are computed and wait for the key holder, "
        "oldest first, each with its plan; 20 a page.",
        parameters=[openapi.PAGE_PARAMETER],
        responses={200: openapi.paginated(HeKeyPlanSerializer, "PaginatedHeKeyPlanList")},
        errors=[401, 404],
    )
    def get(self, request):
        paginator = openapi.Pagination()
        jobs = selectors.he_jobs_awaiting_key(owner=request.user)
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(
            [key_holder.release_spec(job, aggregate_url=_aggregate_url) for job in page]
        )


class HeJobPlanApi(APIView):
    @openapi.api_operation(
        tag="he",
        summary="An HE job's plan for the key holder",
        description=f"A 409 `job_not_awaiting_key` unless the job waits for the key. {_OWNER_ONLY}",
        responses={200: HeKeyPlanSerializer},
        errors=[401, 404, 409],
    )
    def get(self, request, job_id: int):
        job = selectors.he_job_get(owner=request.user, job_id=job_id)
        return Response(key_holder.release_spec(job, aggregate_url=_aggregate_url))


class HeJobAggregateApi(FileApi):
    @openapi.api_operation(
        tag="he",
        summary="Download an encrypted aggregate",
        description="One aggregate of the job's plan: a serialized CKKS vector, for the key holder to decrypt. "
        f"A 409 unless the job waits for the key. {_OWNER_ONLY}",
        parameters=[openapi.attachment_header("job-{id}-{name}.ct")],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The ciphertext.")
        },
        errors=[401, 404, 409],
    )
    def get(self, request, job_id: int, name: str):
        job = selectors.he_job_get(owner=request.user, job_id=job_id)
        path = key_holder.aggregate_file(job=job, name=name)
        response = StreamingHttpResponse(key_holder.iter_file(path), content_type="application/octet-stream")
        response["Content-Length"] = str(path.stat().st_size)
        response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-{name}.ct"'
        return response


class HeJobReleaseApi(APIView):
    @openapi.api_operation(
        tag="he",
        summary="Release an HE job",
        description="The key holder's noisy value of every component of the plan, each on its grid; the job is "
        f"released and its budget committed. A 409 unless the job waits for the key. {_OWNER_ONLY}",
        request={
            "application/json": inline_serializer(
                "HeRelease",
                {
                    "values": serializers.DictField(
                        child=serializers.FloatField(), help_text="Every component's noisy value, by name."
                    )
                },
            )
        },
        responses={200: JobOutputSerializer},
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request, job_id: int):
        job = selectors.he_job_get(owner=request.user, job_id=job_id)
        body = request.data if isinstance(request.data, dict) else {}
        job = key_holder.he_release(job=job, values=body.get("values"))
        return Response(JobOutputSerializer(job).data)
