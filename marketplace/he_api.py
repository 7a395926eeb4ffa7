"""API v1 for HE datasets: create one from a bundle manifest, upload its files, check it.

- ``POST /api/v1/datasets/he/``: metadata + manifest -> 201 draft dataset, ``bundle_status`` "uploading",
  and the files the server expects (200 with the same dataset when that bundle's upload already exists).
- ``GET /api/v1/datasets/{id}/bundle/``: which files are present and which are missing (resume from here).
- ``PUT /api/v1/datasets/{id}/bundle/files/{name}``: one file as the raw body (application/octet-stream).
- ``POST /api/v1/datasets/{id}/bundle/complete/``: check the bundle; "ready" or a 400 saying why not.

Only the owner may call any of these; for anyone else the dataset does not exist (404). The views parse
and answer; the work is in :mod:`marketplace.he`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from config import fields as plain_fields
from config.exceptions import ValidationFailed
from marketplace import he
from marketplace.he_check import MAX_MANIFEST_BYTES
from marketplace.models import Dataset

# The create request carries the manifest (a few MB for the largest bundles) and a little metadata.
MAX_CREATE_BYTES = MAX_MANIFEST_BYTES + 1024 * 1024


class HeMetadataSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))
    delta_cap = plain_fields.DecimalField(
        max_digits=16, decimal_places=12, min_value=Decimal("0"), max_value=Decimal("0.1"), default=Decimal("0")
    )
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))
    row_count_public = serializers.BooleanField(default=False)
    key_custody = serializers.ChoiceField(choices=[Dataset.KeyCustody.OWNER], default=Dataset.KeyCustody.OWNER)


class HeColumnOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    lower = plain_fields.FloatField(allow_null=True)
    upper = plain_fields.FloatField(allow_null=True)
    source = serializers.CharField()
    category = serializers.CharField(allow_null=True)


class BundleFileSerializer(serializers.Serializer):
    file = serializers.CharField()
    bytes = plain_fields.IntegerField()
    sha256 = serializers.CharField()
    present = serializers.BooleanField()


class HeDatasetOutputSerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    slug = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    mode = serializers.CharField()
    status = serializers.CharField()
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta_cap = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2)
    row_count_public = serializers.BooleanField()
    row_count = plain_fields.IntegerField()
    bundle_id = serializers.CharField()
    bundle_status = serializers.CharField()
    bundle_error = serializers.CharField()
    key_custody = serializers.CharField()
    poly_modulus_degree = plain_fields.IntegerField(source="bundle_manifest.poly_modulus_degree")
    job_classes = serializers.ListField(child=serializers.CharField(), source="bundle_manifest.job_classes")
    columns = HeColumnOutputSerializer(many=True, source="columns.all")


class HeBundleOutputSerializer(HeDatasetOutputSerializer):
    """The dataset with its bundle's state: every expected file, and which are still missing."""

    files = BundleFileSerializer(many=True)
    missing = serializers.ListField(child=serializers.CharField())
    bytes_total = plain_fields.IntegerField()
    bytes_present = plain_fields.IntegerField()


def _body(dataset: Dataset) -> dict:
    body = dict(HeDatasetOutputSerializer(dataset).data)
    body.update(he.bundle_state(dataset=dataset))
    return body


def _json_part(raw: Any, field: str) -> Any:
    """A JSON value sent as an object (JSON body) or as a string or file part (multipart)."""
    if hasattr(raw, "read"):
        raw = raw.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValidationFailed(f"{field} is too large.", fields={field: ["Too large."]})
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed(f"{field} is not UTF-8 JSON.", fields={field: ["Not UTF-8 text."]}) from None
    if isinstance(raw, str):
        try:
            return json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed")))
        except ValueError as exc:
            raise ValidationFailed(
                f"{field} is not valid JSON: {exc}", code="invalid_json", fields={field: [f"Not valid JSON: {exc}"]}
            ) from None
    return raw


class HeDatasetCreateApi(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={
            "application/json": inline_serializer(
                "HeDatasetCreate",
                {
                    "title": serializers.CharField(),
                    "description": serializers.CharField(required=False),
                    "epsilon_cap": plain_fields.DecimalField(max_digits=12, decimal_places=6),
                    "delta_cap": plain_fields.DecimalField(max_digits=16, decimal_places=12, required=False),
                    "price_per_epsilon": plain_fields.DecimalField(max_digits=14, decimal_places=2),
                    "row_count_public": serializers.BooleanField(required=False),
                    "key_custody": serializers.ChoiceField(choices=["owner"], required=False),
                    "manifest": serializers.JSONField(help_text="the bundle's manifest.json (format v1)"),
                },
            ),
            "multipart/form-data": inline_serializer(
                "HeDatasetCreateMultipart",
                {
                    "metadata": serializers.CharField(help_text="JSON: title, description, epsilon_cap, ..."),
                    "manifest": serializers.FileField(help_text="the bundle's manifest.json"),
                },
            ),
        },
        responses={201: HeBundleOutputSerializer, 200: HeBundleOutputSerializer},
    )
    def post(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_CREATE_BYTES:
            raise ValidationFailed(
                f"The request is larger than {MAX_CREATE_BYTES} bytes.", fields={"manifest": ["Too large."]}
            )
        payload = request.data
        if not hasattr(payload, "items"):
            raise ValidationFailed(
                "Send the dataset's metadata and manifest as a JSON object or as multipart parts.",
                fields={"non_field_errors": ["The body must be a JSON object."]},
            )
        if "metadata" in payload:
            metadata = _json_part(payload.get("metadata"), "metadata")
        else:
            metadata = {k: v for k, v in payload.items() if k != "manifest"}
        if not isinstance(metadata, dict):
            raise ValidationFailed("metadata must be a JSON object.", fields={"metadata": ["Must be a JSON object."]})
        raw_manifest = request.FILES.get("manifest") if "manifest" in request.FILES else payload.get("manifest")
        if raw_manifest is None:
            raise ValidationFailed(
                "Send the bundle's manifest.json as 'manifest'.", fields={"manifest": ["This field is required."]}
            )
        manifest = _json_part(raw_manifest, "manifest")
        serializer = HeMetadataSerializer(data=metadata)
        serializer.is_valid(raise_exception=True)
        dataset, created = he.he_dataset_create(
            owner=request.user, data=he.HeDatasetInput(**serializer.validated_data), manifest=manifest
        )
        return Response(_body(dataset), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class BundleStateApi(APIView):
    @extend_schema(responses=HeBundleOutputSerializer)
    def get(self, request, dataset_id: int):
        dataset = he.he_dataset_get(owner=request.user, dataset_id=dataset_id)
        return Response(_body(dataset))


class BundleFileApi(APIView):
    # The body is read from the raw stream by the service, never parsed or buffered by DRF.
    parser_classes: list = []

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            201: inline_serializer(
                "BundleFileStored",
                {
                    "file": serializers.CharField(),
                    "stored": serializers.BooleanField(),
                    "missing": serializers.ListField(child=serializers.CharField()),
                    "bytes_present": plain_fields.IntegerField(),
                    "bytes_total": plain_fields.IntegerField(),
                },
            )
        },
    )
    def put(self, request, dataset_id: int, name: str):
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type not in ("", "application/octet-stream"):
            raise exceptions.UnsupportedMediaType(content_type)
        try:
            length = int(request.META["CONTENT_LENGTH"])
        except (KeyError, ValueError, TypeError):
            length = None
        if length is not None and length < 0:
            length = None
        dataset, stored = he.bundle_file_upload(
            owner=request.user,
            dataset_id=dataset_id,
            name=name,
            stream=request.stream or _Empty(),
            content_length=length,
        )
        state = he.bundle_state(dataset=dataset)
        body = {
            "file": name,
            "stored": stored,
            "missing": state["missing"],
            "bytes_present": state["bytes_present"],
            "bytes_total": state["bytes_total"],
        }
        return Response(body, status=status.HTTP_201_CREATED if stored else status.HTTP_200_OK)


class _Empty:
    @staticmethod
    def read(size: int = -1) -> bytes:
        return b""


class BundleCompleteApi(APIView):
    @extend_schema(request=None, responses=HeBundleOutputSerializer)
    def post(self, request, dataset_id: int):
        dataset = he.bundle_complete(owner=request.user, dataset_id=dataset_id)
        return Response(_body(dataset))


class EscrowKeyApi(APIView):
    """The platform's public key-encryption key, to seal an HE secret key to the escrow worker."""

    @extend_schema(responses=dict)
    def get(self, request):
        import base64

        from cloakroom_client.escrow import ALGORITHM, key_id

        public = he.kek_public_key()
        return Response(
            {"algorithm": ALGORITHM, "public_key": public, "key_id": key_id(base64.b64decode(public)).hex()}
        )


class EscrowApi(APIView):
    """PUT a sealed secret key (application/octet-stream) to escrow it; DELETE to take it back."""

    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY}, responses=HeDatasetOutputSerializer)
    def put(self, request, dataset_id: int):
        if request.content_type != "application/octet-stream":
            raise ValidationFailed(
                "Content-Type: send the sealed key as application/octet-stream.",
                fields={"Content-Type": ["Must be application/octet-stream."]},
            )
        length = int(request.headers.get("Content-Length") or 0)
        if length > he.MAX_ESCROW_BYTES:
            raise ValidationFailed(
                f"body: a sealed key is at most {he.MAX_ESCROW_BYTES} bytes.", fields={"body": ["Too large."]}
            )
        blob = request.read(he.MAX_ESCROW_BYTES + 1)
        dataset = he.escrow_store(owner=request.user, dataset_id=dataset_id, blob=blob)
        return Response(HeDatasetOutputSerializer(dataset).data)

    @extend_schema(request=None, responses=HeDatasetOutputSerializer)
    def delete(self, request, dataset_id: int):
        return Response(HeDatasetOutputSerializer(he.escrow_remove(owner=request.user, dataset_id=dataset_id)).data)
