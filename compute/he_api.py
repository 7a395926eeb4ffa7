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
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import he_services
from compute.api import JobOutputSerializer
from compute.models import Job
from marketplace.models import Dataset


def _aggregate_url(job: Job, name: str) -> str:
    return reverse("api-he-job-aggregate", kwargs={"job_id": job.pk, "name": name})


class AwaitingJobsApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request):
        paginator = PageNumberPagination()
        jobs = (
            Job.objects.filter(
                dataset__owner=request.user, dataset__mode=Dataset.Mode.HE, status=Job.Status.AWAITING_KEY
            )
            .select_related("dataset")
            .order_by("computed_at", "id")
        )
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(
            [he_services.key_plan(job, aggregate_url=_aggregate_url) for job in page]
        )


class HeJobPlanApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request, job_id: int):
        job = he_services.owned_he_job(owner=request.user, job_id=job_id)
        return Response(he_services.key_plan(job, aggregate_url=_aggregate_url))


class HeJobAggregateApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, job_id: int, name: str):
        job = he_services.owned_he_job(owner=request.user, job_id=job_id)
        path = he_services.aggregate_file(job=job, name=name)
        response = StreamingHttpResponse(he_services.iter_file(path), content_type="application/octet-stream")
        response["Content-Length"] = str(path.stat().st_size)
        response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-{name}.ct"'
        return response


class HeJobReleaseApi(APIView):
    @extend_schema(
        request=inline_serializer("HeRelease", {"values": serializers.DictField(child=serializers.FloatField())}),
        responses=JobOutputSerializer,
    )
    def post(self, request, job_id: int):
        job = he_services.owned_he_job(owner=request.user, job_id=job_id)
        body = request.data if isinstance(request.data, dict) else {}
        job = he_services.he_release(job=job, values=body.get("values"))
        return Response(JobOutputSerializer(job).data)
