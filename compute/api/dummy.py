"""API v1 for trying a query on a dataset's fake table (compute/dummy.py): free, immediate, marked fake.

Open to anyone who may see the dataset, signed in or not, with or without a purchase; limited per
user (or address) by :class:`accounts.throttling.DummyQueryThrottle`.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.throttling import DummyQueryThrottle
from compute import dummy
from compute.api.files import FileApi
from compute.api.serializers import BudgetNumberField, JobInputSerializer
from compute.engines.dummy import NOTE
from config import openapi

_AUTH = [{}, {"bearerAuth": []}]


@extend_schema_serializer(component_name="DummyQueryInput")
class DummyQueryInputSerializer(JobInputSerializer):
    """A job's body without the purchase: nothing is bought or spent."""

    purchase = None
    model = None
    kind = openapi.ChoiceField(
        choices=["query"], default="query", help_text="Only queries are answered on fake data (no training)."
    )
    query = openapi.JsonSchemaField(component="Query", help_text="The query, as a job's.")
    epsilon = BudgetNumberField(
        places=6, required=False, help_text="The epsilon whose noise the fake answer carries (default 1); not spent."
    )


@extend_schema_serializer(component_name="DummyAnswer")
class DummyAnswerSerializer(serializers.Serializer):
    dummy = serializers.BooleanField(help_text="Always true: this answer was computed on fake data.")
    note = serializers.CharField(help_text=f"Always “{NOTE}”.")
    dataset = serializers.IntegerField()
    dataset_version = serializers.IntegerField(help_text="The version whose declared schema made the fake table.")
    mode = serializers.CharField(help_text="dp or he")
    rows = serializers.IntegerField(help_text="Fake rows in the table.")
    rows_basis = serializers.CharField(help_text="Why that many: the public row count, or a fixed number.")
    query = openapi.JsonSchemaField(component="Query", help_text="The query in canonical form, as a job stores it.")
    epsilon = serializers.CharField(help_text="The epsilon the noise is calibrated to.")
    delta = serializers.CharField()
    epsilon_charged = serializers.CharField(help_text='Always "0": nothing is spent.')
    result = openapi.JsonSchemaField(component="JobResult", help_text="Shaped as a released job's result.")
    mechanism = serializers.CharField()
    noise_scale = serializers.FloatField()
    interval_note = serializers.CharField()


class DummyQueryApi(APIView):
    permission_classes = [AllowAny]

    def get_throttles(self):
        return [*super().get_throttles(), DummyQueryThrottle()]

    @openapi.api_operation(
        tag="datasets",
        summary="Try a query on fake data",
        description="Answer a query at once on the dataset's dummy table: fake rows generated from the declared "
        "schema alone (numbers uniform within their bounds, declared categories, fair booleans), the same for "
        "every caller at one dataset version. The query is the jobs API's and is checked the same way (a 400 "
        "naming the field); the answer is computed by the same engine with the same noise at `epsilon` "
        "(default 1), but needs no purchase, spends nothing and writes no ledger row or job. It says "
        '`"dummy": true` and nothing about the real data. Credentials are optional.',
        request={"application/json": DummyQueryInputSerializer},
        responses={200: DummyAnswerSerializer},
        errors=[400, 401, 403, 404, 413, 415],
        auth=_AUTH,
    )
    def post(self, request, dataset_id: int):
        data = DummyQueryInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        answer = dummy.dummy_query(
            user=request.user, dataset_id=dataset_id, query=v["query"], epsilon=v.get("epsilon"), delta=v.get("delta")
        )
        return Response(answer)


class DummyTableApi(FileApi):
    permission_classes = [AllowAny]

    def get_throttles(self):
        return [*super().get_throttles(), DummyQueryThrottle()]

    @openapi.api_operation(
        tag="datasets",
        summary="Download the fake table",
        description="The dummy table that `POST /api/v1/datasets/{id}/dummy-query/` answers from, as CSV (a "
        "header row of the declared columns). Fake data generated from the declared schema; it says nothing "
        "about the real data. Credentials are optional.",
        parameters=[
            openapi.attachment_header("cloakroom-dataset-{id}-fake.csv"),
        ],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The fake rows.")},
        errors=[401, 404],
        auth=_AUTH,
    )
    def get(self, request, dataset_id: int):
        dataset, text = dummy.dummy_csv(user=request.user, dataset_id=dataset_id)
        response = HttpResponse(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="cloakroom-dataset-{dataset.pk}-fake.csv"'
        response["X-Cloakroom-Dummy"] = NOTE
        return response
