"""API v1 for jobs: estimate, submit, list, read, cancel, download; and budget ledgers."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import CREDIT_QUANTUM
from accounts.throttling import JobSubmitThrottle
from compute import receipts, selectors, services
from compute.models import Job
from config import fields as plain_fields
from config.exceptions import NotFound, ValidationFailed
from marketplace import selectors as market
from marketplace.models import DELTA_QUANTUM, EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase


class JobOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    status = serializers.CharField()
    kind = serializers.CharField()
    dataset = plain_fields.IntegerField(source="dataset_id")
    purchase = plain_fields.IntegerField(source="purchase_id")
    query = serializers.JSONField(source="spec")
    epsilon = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    error = serializers.CharField()
    reused = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    receipt = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
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

    def get_result(self, obj) -> dict | None:
        if obj.status != Job.Status.RELEASED:
            return None
        r = obj.result or {}
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
    purchase = plain_fields.IntegerField(min_value=1)
    kind = serializers.ChoiceField(
        choices=["query"], default="query", help_text="query: a DP query, or an HE aggregate on an HE dataset"
    )
    query = serializers.JSONField()
    epsilon = serializers.CharField(max_length=40, required=False)
    delta = serializers.CharField(max_length=40, required=False, default="0")

    def to_internal_value(self, data):
        # Accept JSON numbers as well as decimal strings for epsilon and delta, without floats
        # sneaking into the ledger: they are turned into Decimal from their text.
        if isinstance(data, dict):
            data = {**data}
            for name in ("epsilon", "delta"):
                value = data.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    data[name] = repr(value) if isinstance(value, float) else str(value)
        return super().to_internal_value(data)


class JobListCreateApi(APIView):
    def get_throttles(self):
        # Submissions are also limited per buyer (accounts.throttling.JobSubmitThrottle).
        throttles = super().get_throttles()
        if self.request.method == "POST":
            throttles.append(JobSubmitThrottle())
        return throttles

    @extend_schema(responses=JobOutputSerializer(many=True))
    def get(self, request):
        paginator = PageNumberPagination()
        qs = selectors.job_list(user=request.user)
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Job.Status.values:
                raise ValidationFailed(
                    f"status: must be one of {', '.join(Job.Status.values)}.", fields={"status": ["Unknown status."]}
                )
            qs = qs.filter(status=wanted)
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)

    @extend_schema(
        request=JobInputSerializer,
        responses={202: JobOutputSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="a retried POST with the same key returns the first job",
            )
        ],
    )
    def post(self, request):
        data = JobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if "epsilon" not in v:
            raise ValidationFailed("epsilon: This field is required.", fields={"epsilon": ["This field is required."]})
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise ValidationFailed(
                "Idempotency-Key must be 1 to 255 characters.", fields={"Idempotency-Key": ["1 to 255 characters."]}
            )
        job, created = services.job_submit(
            buyer=request.user,
            purchase_id=v["purchase"],
            kind=v["kind"],
            query=v["query"],
            epsilon=v["epsilon"],
            delta=v.get("delta") or "0",
            idempotency_key=key,
        )
        return Response(JobOutputSerializer(job, context={"reused": not created}).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="EstimateInput")
class EstimateInputSerializer(JobInputSerializer):
    ci95_halfwidth = plain_fields.FloatField(
        required=False, help_text="ask for the epsilon that reaches this accuracy instead"
    )
    rows = plain_fields.IntegerField(
        required=False, min_value=1, help_text="how many rows the answer covers, if you know or guess it"
    )


class JobEstimateApi(APIView):
    """What a job would cost and how accurate it would be, computed from the declared bounds and
    the mechanism alone. Spends nothing."""

    @extend_schema(request=EstimateInputSerializer, responses=dict)
    def post(self, request):
        data = EstimateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        est = services.job_estimate(
            user=request.user,
            purchase_id=v["purchase"],
            query=v["query"],
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
            }
        )


class JobDetailApi(APIView):
    @extend_schema(responses=JobOutputSerializer)
    def get(self, request, job_id: int):
        return Response(JobOutputSerializer(selectors.job_get(user=request.user, job_id=job_id)).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobOutputSerializer)
    def post(self, request, job_id: int):
        return Response(JobOutputSerializer(services.job_cancel(buyer=request.user, job_id=job_id)).data)


class JobDownloadApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"])], responses={(200, "text/csv"): str}
    )
    def get(self, request, job_id: int):
        job = selectors.job_get(user=request.user, job_id=job_id)
        if job.status != Job.Status.RELEASED:
            raise NotFound(f"The job is {job.status}; only released results can be downloaded.", code="not_released")
        fmt = request.query_params.get("format", "json")
        if fmt == "csv":
            response = HttpResponse(receipts.result_csv(job), content_type="text/csv; charset=utf-8")
        elif fmt == "json":
            response = HttpResponse(receipts.result_json(job), content_type="application/json")
        else:
            raise ValidationFailed("format: choose json or csv.", fields={"format": ["Choose json or csv."]})
        response["Content-Disposition"] = f'attachment; filename="cloakroom-job-{job.pk}.{fmt}"'
        return response


def _eps(value) -> str:
    return f"{Decimal(value or 0).quantize(EPSILON_QUANTUM):f}"


def _delta(value) -> str:
    return f"{Decimal(value or 0).quantize(DELTA_QUANTUM):f}"


class PurchaseLedgerApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request, purchase_id: int):
        purchase = market.purchase_get(user=request.user, purchase_id=purchase_id)
        entries = purchase.ledger_entries.order_by("created_at", "id")
        budget = market.purchase_budget(purchase)
        s = budget.totals
        return Response(
            {
                "purchase": purchase.pk,
                "epsilon": _eps(purchase.epsilon),
                "epsilon_reserved": _eps(s.epsilon[LedgerEntry.Kind.RESERVE]),
                "epsilon_committed": _eps(budget.spent),
                "epsilon_refunded": _eps(s.epsilon[LedgerEntry.Kind.REFUND]),
                "epsilon_held": _eps(budget.held),
                "epsilon_remaining": _eps(budget.remaining),
                "delta": _delta(purchase.delta),
                "delta_committed": _delta(s.delta[LedgerEntry.Kind.COMMIT]),
                "entries": [
                    {
                        "id": e.pk,
                        "kind": e.kind,
                        "job": e.job_id,
                        "epsilon": _eps(e.epsilon),
                        "delta": _delta(e.delta),
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
            }
        )


class DatasetBudgetApi(APIView):
    """For the dataset's owner: epsilon sold, spent and left, by buyer. Never a released value."""

    @extend_schema(responses=dict)
    def get(self, request, dataset_id: int):
        try:
            dataset = Dataset.objects.get(pk=dataset_id, owner=request.user)
        except (Dataset.DoesNotExist, ValueError, TypeError):
            raise NotFound("No such dataset.") from None
        spent = market.ledger_totals(LedgerEntry.objects.filter(dataset=dataset)).epsilon_spent
        buyers = (
            Purchase.objects.filter(dataset=dataset)
            .values("buyer__username")
            .annotate(
                epsilon_bought=Sum("epsilon"),
                credits_paid=Sum("price"),
                purchases=Count("id", distinct=True),
            )
            .order_by("buyer__username")
        )
        spent_by = {
            row["purchase__buyer__username"]: row["e"]
            for row in LedgerEntry.objects.filter(dataset=dataset, kind=LedgerEntry.Kind.COMMIT)
            .values("purchase__buyer__username")
            .annotate(e=Sum("epsilon"))
        }
        jobs_by = {
            row["buyer__username"]: row["n"]
            for row in Job.objects.filter(dataset=dataset)
            .values("buyer__username")
            .annotate(n=Count("id", filter=Q(status=Job.Status.RELEASED)))
        }
        return Response(
            {
                "dataset": dataset.pk,
                "epsilon_cap": _eps(dataset.epsilon_cap),
                "epsilon_sold": _eps(dataset.epsilon_sold),
                "epsilon_spent": _eps(spent),
                "epsilon_unsold": _eps(dataset.epsilon_cap - dataset.epsilon_sold),
                "by_buyer": [
                    {
                        "buyer": row["buyer__username"],
                        "epsilon_bought": _eps(row["epsilon_bought"]),
                        "epsilon_spent": _eps(spent_by.get(row["buyer__username"])),
                        "credits_paid": f"{Decimal(row['credits_paid']).quantize(CREDIT_QUANTUM)}",
                        "jobs_released": jobs_by.get(row["buyer__username"], 0),
                    }
                    for row in buyers
                ],
            }
        )
