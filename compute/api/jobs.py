"""API v1 for jobs: submit, list, estimate, read, cancel, download. Each view parses, calls one service
or selector, and serializes."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.throttling import JobSubmitThrottle
from compute import receipts, selectors, services
from compute.api.files import FileApi
from compute.api.serializers import BudgetNumberField, JobInputSerializer, JobOutputSerializer
from compute.models import Job
from config import openapi
from config.exceptions import NotFound, ValidationFailed

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
        description="Reserve `epsilon` (and `delta`) of a purchase and queue the query (kind `query`) or the "
        "model training (kind `train`, with `model`); 202 with the job. The query or model is checked against the purchased dataset's declared columns (a 400 naming the field). A "
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
            query=data.body,
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
    rows_assumed = serializers.IntegerField(
        allow_null=True, help_text="The rows each answer was taken to cover: yours, or from the public row count."
    )
    epsilon_remaining = serializers.CharField(
        help_text="The largest epsilon one more job (at delta 0) could ask of the purchase now. Answers compose "
        "tighter than adding epsilons up (docs/PRIVACY.md), so this is not the allotment minus what was spent."
    )
    affordable = serializers.BooleanField(help_text="Whether the purchase can take this job.")
    rho = serializers.CharField(help_text="The job's zero-concentrated DP cost, which the accountant adds up.")
    share_of_allotment = serializers.FloatField(help_text="The share of the purchase's allotment the job uses, 0 to 1.")
    share_used = serializers.FloatField(help_text="The share of the allotment used now, 0 to 1.")
    share_used_after = serializers.FloatField(help_text="The share of the allotment used after the job, 0 to 1.")
    epsilon_left_after = serializers.CharField(
        help_text="Like epsilon_remaining, after the job: the largest epsilon one more job could then ask for."
    )
    alternative = inline_serializer(
        "EstimateAlternative",
        {
            "mechanism": serializers.CharField(),
            "epsilon": serializers.CharField(),
            "delta": serializers.CharField(),
            "ci95_halfwidth": serializers.FloatField(),
            "share_of_allotment": serializers.FloatField(),
        },
        allow_null=True,
        help_text="The other grid mechanism (discrete Gaussian with delta, or discrete Laplace without) at the same "
        "zCDP cost (rho), its 95% half-width and the share of the allotment it would use; null where there is none "
        "to compare or the purchase could not take it.",
    )
    mechanism_advice = serializers.CharField(
        help_text="Which of the two gives the tighter interval for the same zCDP cost, in words; empty without an "
        "alternative."
    )
    rows_basis = serializers.CharField(help_text="Where rows_assumed came from, in words; empty when it is null.")
    accuracy_in_words = serializers.CharField(
        help_text="The 95% half-width in words, e.g. '± 0.93 (95%), for 442 rows (the public row count): ...', "
        "or why there is none. The dataset page shows the same sentence."
    )
    cost_in_words = serializers.CharField(
        help_text="What the job spends in words, e.g. 'Costs ε 0.1 = 1.50 credits (already paid with your "
        "purchase) and uses 0.28% of your allotment; after it 0.28% is used and one more job of up to ε 9.5 would "
        "fit.'"
    )


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
            query=data.body,
            kind=v["kind"],
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
                "rows_basis": est.rows_basis,
                "accuracy_in_words": est.accuracy_in_words,
                "cost_in_words": est.cost_in_words,
                "rho": f"{est.rho:f}",
                "share_of_allotment": round(est.share_of_allotment, 6),
                "share_used": round(est.share_used, 6),
                "share_used_after": round(est.share_used_after, 6),
                "epsilon_left_after": f"{est.epsilon_left_after:f}",
                "alternative": None
                if est.alternative is None
                else {
                    "mechanism": est.alternative.mechanism,
                    "epsilon": f"{est.alternative.epsilon:f}",
                    "delta": f"{est.alternative.delta:f}",
                    "ci95_halfwidth": est.alternative.ci95_halfwidth,
                    "share_of_allotment": round(est.alternative.share_of_allotment, 6),
                },
                "mechanism_advice": est.mechanism_advice,
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


_MODEL_FILE = openapi.component_serializer("ModelFile")


class JobDownloadApi(FileApi):
    @openapi.api_operation(
        tag="jobs",
        summary="Download a released result",
        description="As JSON (the release as stored, with its receipt) or as CSV (one row per group, bin or "
        "quantile, with its interval). A job that is not released is a 404 (`not_released`).",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Default json."),
            openapi.attachment_header("cloakroom-job-{id}.{format}"),
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
        if fmt == "csv" and job.kind == Job.Kind.TRAIN:
            raise ValidationFailed(
                "format: a trained model has no table; download format=json, or the model file from "
                f"/api/v1/jobs/{job.pk}/model/.",
                fields={"format": ["A trained model has no CSV; choose json."]},
            )
        if fmt == "csv":
            response = HttpResponse(receipts.result_csv(job), content_type="text/csv; charset=utf-8")
        elif fmt == "json":
            response = HttpResponse(receipts.result_json(job), content_type="application/json")
        else:
            raise ValidationFailed("format: choose json or csv.", fields={"format": ["Choose json or csv."]})
        response["Content-Disposition"] = f'attachment; filename="cloakroom-job-{job.pk}.{fmt}"'
        return response


class JobModelApi(FileApi):
    @openapi.api_operation(
        tag="jobs",
        summary="Download a released model",
        description="A released train job's model as a portable JSON file: the parameters, the encoding of the "
        "features a loader needs, and the receipt; for a PATE job submitted with `spec.student`, its student. "
        "`cloakroom_client` rebuilds a scikit-learn estimator from it (`client.model(job_id)`). A job that is "
        "not released is a 404 (`not_released`), a job that trained no model (no train job, or a PATE job "
        "without a student) a 404 (`not_a_model`).",
        parameters=[
            openapi.attachment_header("cloakroom-model-{id}.json"),
        ],
        responses={(200, "application/json"): OpenApiResponse(_MODEL_FILE, description="The model file.")},
        errors=[401, 404],
    )
    def get(self, request, job_id: int):
        job = selectors.job_get(user=request.user, job_id=job_id)
        if job.kind not in (Job.Kind.TRAIN, Job.Kind.PATE) or (
            job.kind == Job.Kind.PATE and not job.spec.get("student")
        ):
            raise NotFound("This job trained no model.", code="not_a_model")
        if job.status != Job.Status.RELEASED:
            raise NotFound(f"The job is {job.status}; only released models can be downloaded.", code="not_released")
        if receipts.released_model(job) is None:
            error = (job.result or {}).get("student_error") or "no model was released"
            raise NotFound(f"This job released no model: {error}", code="not_a_model")
        response = HttpResponse(receipts.model_file(job), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="cloakroom-model-{job.pk}.json"'
        return response
