"""API v1 for ensembles: list, create, read, add a member, let a member leave. The PATE job on an
ensemble is compute's (compute/api/pate.py). Each view parses, calls one service or selector, serializes."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fields as plain_fields
from config import openapi
from marketplace.ensembles import selectors, services
from marketplace.models import Ensemble


@extend_schema_serializer(component_name="EnsembleColumn")
class ColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    lower = serializers.FloatField(required=False, help_text="numeric columns")
    upper = serializers.FloatField(required=False, help_text="numeric columns")
    categories = serializers.ListField(child=serializers.CharField(), required=False, help_text="categorical columns")


class EnsembleMemberSerializer(serializers.Serializer):
    dataset = plain_fields.IntegerField(source="dataset_id")
    title = serializers.CharField(source="dataset.title")
    owner = serializers.CharField(source="dataset.owner.username")
    epsilon_cap = plain_fields.DecimalField(source="dataset.epsilon_cap", max_digits=12, decimal_places=6)
    delta_cap = plain_fields.DecimalField(source="dataset.delta_cap", max_digits=16, decimal_places=12)
    joined_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="Ensemble")
class EnsembleOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.username", help_text="Who created the ensemble.")
    price_per_label = plain_fields.DecimalField(
        max_digits=14, decimal_places=2, help_text="Credits per answered label, shared equally by the members' owners."
    )
    features = ColumnSerializer(many=True, help_text="The declared feature columns every member shares.")
    label = ColumnSerializer(help_text="The declared label column (categorical or boolean).")
    members = EnsembleMemberSerializer(
        many=True, source="current_members", help_text="The datasets a job submitted now runs on."
    )
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="EnsembleInput")
class EnsembleInputSerializer(serializers.Serializer):
    title = openapi.CharField(max_length=200)
    description = openapi.CharField(required=False, allow_blank=True, default="", max_length=20000)
    dataset = openapi.IntegerField(min_value=1, help_text="The caller's published DP dataset, the first member.")
    price_per_label = openapi.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))
    label = openapi.CharField(
        required=False,
        max_length=100,
        help_text="The label column; by default the one the dataset declares as its label.",
    )


@extend_schema_serializer(component_name="EnsembleMemberInput")
class MemberInputSerializer(serializers.Serializer):
    dataset = openapi.IntegerField(min_value=1, help_text="The caller's published DP dataset.")


def _fresh(ensemble_id: int) -> Ensemble:
    return selectors.ensemble_get(ensemble_id=ensemble_id)


class EnsembleListCreateApi(APIView):
    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsAuthenticated()]

    @openapi.api_operation(
        tag="ensembles",
        summary="List ensembles",
        description="Every ensemble with its current members, schema and price per label; newest first, 20 a "
        "page. Credentials are optional, but when sent they must be valid.",
        parameters=[openapi.PAGE_PARAMETER],
        operation_id="v1_ensembles_list",
        responses={200: openapi.paginated(EnsembleOutputSerializer, "PaginatedEnsembleList")},
        errors=[401, 404],
        auth=[{}, {"bearerAuth": []}],
    )
    def get(self, request):
        paginator = openapi.Pagination()
        page = paginator.paginate_queryset(selectors.ensemble_list(), request, view=self)
        return paginator.get_paginated_response(EnsembleOutputSerializer(page, many=True).data)

    @openapi.api_operation(
        tag="ensembles",
        summary="Create an ensemble",
        description="Owners only: an ensemble whose schema is `dataset`'s (a published DP dataset of the caller's "
        "with a delta cap above 0 and a categorical or boolean label column), with that dataset as its first "
        "member. A 400 names the field (`label` when the dataset has no suitable label column).",
        request={"application/json": EnsembleInputSerializer},
        responses={201: EnsembleOutputSerializer},
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request):
        data = EnsembleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        ensemble = services.ensemble_create(
            owner=request.user,
            title=v["title"],
            description=v.get("description") or "",
            dataset_id=v["dataset"],
            price_per_label=v["price_per_label"],
            label=v.get("label") or None,
        )
        return Response(EnsembleOutputSerializer(_fresh(ensemble.pk)).data, status=status.HTTP_201_CREATED)


class EnsembleDetailApi(APIView):
    permission_classes = [AllowAny]

    @openapi.api_operation(
        tag="ensembles",
        summary="Read an ensemble",
        description="Its current members, schema and price. Credentials are optional, but when sent they must be "
        "valid.",
        responses={200: EnsembleOutputSerializer},
        errors=[401, 404],
        auth=[{}, {"bearerAuth": []}],
    )
    def get(self, request, ensemble_id: int):
        return Response(EnsembleOutputSerializer(_fresh(ensemble_id)).data)


class EnsembleMembersApi(APIView):
    @openapi.api_operation(
        tag="ensembles",
        summary="Add a dataset to an ensemble",
        description="The owner of `dataset` (a published DP dataset with a delta cap above 0) adds it. Its declared "
        "columns must be the ensemble's exactly (names, kinds, bounds, categories): else a 400 "
        "`schema_mismatch` whose message and `column` name the first column that differs. A 409 when it is "
        "a member already or not published.",
        request={"application/json": MemberInputSerializer},
        responses={201: EnsembleOutputSerializer},
        errors=[400, 401, 403, 404, 409, 413, 415],
    )
    def post(self, request, ensemble_id: int):
        data = MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.ensemble_join(owner=request.user, ensemble_id=ensemble_id, dataset_id=data.validated_data["dataset"])
        return Response(EnsembleOutputSerializer(_fresh(ensemble_id)).data, status=status.HTTP_201_CREATED)


class EnsembleMemberApi(APIView):
    @openapi.api_operation(
        tag="ensembles",
        summary="Take a dataset out of an ensemble",
        description="The dataset's owner takes it out, for jobs submitted from now on; jobs submitted before keep "
        "it. A dataset that is not a current member of the caller's is a 404.",
        request=None,
        responses={204: None},
        errors=[401, 404],
    )
    def delete(self, request, ensemble_id: int, dataset_id: int):
        services.ensemble_leave(owner=request.user, ensemble_id=ensemble_id, dataset_id=dataset_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
