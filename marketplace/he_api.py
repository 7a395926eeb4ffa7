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
from drf_spectacular.utils import OpenApiRequest, OpenApiResponse, extend_schema_serializer, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cloakroom_client.protocol.bundle import COLUMN_KINDS, FORMAT, MAX_COLUMNS, MAX_MANIFEST_BYTES, PARAMETERS, VERSION
from config import fields as plain_fields
from config import openapi
from config.exceptions import Forbidden, ValidationFailed
from marketplace import he
from marketplace.models import Dataset

# The create request carries the manifest (a few MB for the largest bundles) and a little metadata.
MAX_CREATE_BYTES = MAX_MANIFEST_BYTES + 1024 * 1024

_FILE = openapi.register_component(
    "HeBundleFileEntry",
    {
        "type": "object",
        "required": ["file", "bytes", "sha256"],
        "properties": {
            "file": {"type": "string", "description": "`context.bin`, or `cNNN.NNNN.ct` (column, chunk)."},
            "bytes": {"type": "integer", "minimum": 1},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
)
openapi.register_component(
    "HeManifest",
    {
        "type": "object",
        "description": "The bundle's manifest.json, format v1 (the owner CLI writes it): the CKKS parameters, "
        "the row count and, per encrypted column, its declared bounds and its ciphertext files, one per "
        "`slots` rows. Keys the format does not define are dropped.",
        "required": [
            "format",
            "version",
            "bundle_id",
            "scheme",
            "job_classes",
            "poly_modulus_degree",
            "coeff_mod_bit_sizes",
            "global_scale_bits",
            "slots",
            "rows",
            "context",
            "columns",
        ],
        "properties": {
            "format": {"type": "string", "enum": [FORMAT]},
            "version": {"type": "integer", "enum": [VERSION]},
            "bundle_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "A UUID4, as hex."},
            "scheme": {"type": "string", "enum": ["ckks"]},
            "job_classes": {
                "type": "array",
                "items": {"type": "string", "enum": ["sum", "product"]},
                "minItems": 1,
                "maxItems": 2,
                "uniqueItems": True,
                "description": '["sum"] or ["sum", "product"]; each set has its own CKKS parameters.',
            },
            "poly_modulus_degree": {
                "type": "integer",
                "enum": sorted({p["poly_modulus_degree"] for p in PARAMETERS.values()}),
            },
            "coeff_mod_bit_sizes": {"type": "array", "items": {"type": "integer"}},
            "global_scale_bits": {
                "type": "integer",
                "enum": sorted({p["global_scale_bits"] for p in PARAMETERS.values()}),
            },
            "slots": {"type": "integer", "description": "Half of poly_modulus_degree."},
            "rows": {"type": "integer", "minimum": 1},
            "context": _FILE,
            "columns": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_COLUMNS,
                "items": {
                    "type": "object",
                    "required": ["name", "source", "kind", "lower", "upper", "files"],
                    "properties": {
                        "name": {"type": "string", "description": "`source=category` for an indicator."},
                        "source": {"type": "string", "description": "The column of the owner's table."},
                        "kind": {"type": "string", "enum": list(COLUMN_KINDS)},
                        "lower": {"type": "number"},
                        "upper": {"type": "number"},
                        "category": {"type": "string", "description": "Indicator columns: the category."},
                        "files": {"type": "array", "items": _FILE},
                    },
                },
            },
        },
    },
)


@extend_schema_serializer(component_name="HeMetadata")
class HeMetadataSerializer(serializers.Serializer):
    title = openapi.CharField(max_length=200)
    description = openapi.CharField(required=False, allow_blank=True, default="", max_length=20000)
    epsilon_cap = openapi.DecimalField(max_digits=12, decimal_places=6, min_value=Decimal("0.000001"))
    delta_cap = openapi.DecimalField(
        max_digits=16, decimal_places=12, min_value=Decimal("0"), max_value=Decimal("0.1"), default=Decimal("0")
    )
    price_per_epsilon = openapi.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0"))
    row_count_public = openapi.BooleanField(default=False)
    key_custody = openapi.ChoiceField(
        choices=[Dataset.KeyCustody.OWNER],
        default=Dataset.KeyCustody.OWNER,
        help_text="A dataset starts with the key on the owner's machine; escrow it once the bundle is ready.",
    )


@extend_schema_serializer(component_name="HeDatasetCreate")
class HeCreateSerializer(HeMetadataSerializer):
    manifest = openapi.JsonSchemaField(component="HeManifest")


class HeColumnOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = openapi.ChoiceOutput(choices=COLUMN_KINDS)
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
    mode = openapi.ChoiceOutput(choices=Dataset.Mode.choices)
    status = openapi.ChoiceOutput(choices=Dataset.Status.choices)
    epsilon_cap = plain_fields.DecimalField(max_digits=12, decimal_places=6)
    delta_cap = plain_fields.DecimalField(max_digits=16, decimal_places=12)
    price_per_epsilon = plain_fields.DecimalField(max_digits=14, decimal_places=2)
    row_count_public = serializers.BooleanField()
    row_count = plain_fields.IntegerField()
    bundle_id = serializers.CharField()
    bundle_status = openapi.ChoiceOutput(choices=Dataset.BundleStatus.choices)
    bundle_error = serializers.CharField(help_text="Why the bundle was rejected; empty otherwise.")
    key_custody = openapi.ChoiceOutput(choices=Dataset.KeyCustody.choices)
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
        except RecursionError:
            raise ValidationFailed(
                f"{field} is nested too deeply to read.", code="invalid_json", fields={field: ["Nested too deeply."]}
            ) from None
        except ValueError as exc:
            raise ValidationFailed(
                f"{field} is not valid JSON: {exc}", code="invalid_json", fields={field: [f"Not valid JSON: {exc}"]}
            ) from None
    return raw


_OWNER_ONLY = "Only the dataset's owner may call this; any other dataset is a 404."


class HeDatasetCreateApi(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @openapi.api_operation(
        tag="he",
        summary="Create an HE dataset from its bundle's manifest",
        description="Owners only. Creates a draft whose bundle is `uploading`, and lists the files to upload. "
        "A 200 with the same dataset when the owner already has a live upload of this bundle (resume); a 409 "
        "when the bundle id is taken by another manifest. As multipart, `metadata` is a JSON object part and "
        "`manifest` the manifest.json file.",
        request={
            "application/json": HeCreateSerializer,
            "multipart/form-data": OpenApiRequest(
                inline_serializer(
                    "HeDatasetCreateMultipart",
                    {
                        "metadata": HeMetadataSerializer(),
                        "manifest": serializers.FileField(help_text="the bundle's manifest.json"),
                    },
                ),
                encoding={"metadata": {"contentType": "application/json"}},
            ),
        },
        responses={
            201: OpenApiResponse(HeBundleOutputSerializer, description="Created."),
            200: OpenApiResponse(HeBundleOutputSerializer, description="This bundle's upload already exists."),
        },
        errors=[400, 401, 403, 409, 413, 415],
    )
    def post(self, request):
        if not request.user.is_owner:
            # Before the body is read: a buyer's request is refused whatever it holds.
            raise Forbidden("Only accounts with the owner role can list datasets.", code="not_an_owner")
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
    @openapi.api_operation(
        tag="he",
        summary="An HE bundle's upload state",
        description="Every file the manifest names, which are present and which are still missing (resume "
        f"from here). {_OWNER_ONLY}",
        responses={200: HeBundleOutputSerializer},
        errors=[401, 404],
    )
    def get(self, request, dataset_id: int):
        dataset = he.he_dataset_get(owner=request.user, dataset_id=dataset_id)
        return Response(_body(dataset))


def _octet_stream_only(request) -> None:
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type not in ("", "application/octet-stream"):
        raise exceptions.UnsupportedMediaType(content_type)


class BundleFileApi(APIView):
    # The body is read from the raw stream by the service, never parsed or buffered by DRF.
    parser_classes: list = []

    @openapi.api_operation(
        tag="he",
        summary="Upload one file of an HE bundle",
        description="The file as the raw body, checked against the manifest's length and sha256 while it "
        "arrives; only a matching file is kept. 201 when stored, 200 when that file was already present. "
        f"{_OWNER_ONLY}",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            201: OpenApiResponse(
                inline_serializer(
                    "BundleFileStored",
                    {
                        "file": serializers.CharField(),
                        "stored": serializers.BooleanField(),
                        "missing": serializers.ListField(child=serializers.CharField()),
                        "bytes_present": plain_fields.IntegerField(),
                        "bytes_total": plain_fields.IntegerField(),
                    },
                ),
                description="Stored.",
            ),
            200: OpenApiResponse(
                inline_serializer(
                    "BundleFileAlreadyStored",
                    {
                        "file": serializers.CharField(),
                        "stored": serializers.BooleanField(),
                        "missing": serializers.ListField(child=serializers.CharField()),
                        "bytes_present": plain_fields.IntegerField(),
                        "bytes_total": plain_fields.IntegerField(),
                    },
                ),
                description="The file was already present.",
            ),
        },
        errors=[400, 401, 403, 404, 409, 415],
    )
    def put(self, request, dataset_id: int, name: str):
        _octet_stream_only(request)
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
    @openapi.api_operation(
        tag="he",
        summary="Check an HE bundle and mark it ready",
        description="Every file must be present (a 409 `bundle_incomplete` lists the missing ones). The check "
        "reads the ciphertexts in a sandboxed process; a bundle that fails it is rejected, its files deleted, "
        f"and the answer is a 400 saying why. {_OWNER_ONLY}",
        request=None,
        responses={200: HeBundleOutputSerializer},
        errors=[400, 401, 403, 404, 409],
    )
    def post(self, request, dataset_id: int):
        dataset = he.bundle_complete(owner=request.user, dataset_id=dataset_id)
        return Response(_body(dataset))


class EscrowKeyApi(APIView):
    """The platform's public key-encryption key, to seal an HE secret key to the escrow worker."""

    @openapi.api_operation(
        tag="he",
        summary="The platform's key-encryption key",
        description="The public key to seal an HE secret key to before escrowing it (X25519). A 409 when this "
        "deployment has no escrow key configured.",
        responses={
            200: inline_serializer(
                "EscrowKey",
                {
                    "algorithm": serializers.CharField(),
                    "public_key": serializers.CharField(help_text="Base64."),
                    "key_id": serializers.CharField(help_text="Hex."),
                },
            )
        },
        errors=[401, 409],
    )
    def get(self, request):
        import base64

        from cloakroom_client.protocol.escrow import ALGORITHM, key_id

        public = he.kek_public_key()
        return Response(
            {"algorithm": ALGORITHM, "public_key": public, "key_id": key_id(base64.b64decode(public)).hex()}
        )


class EscrowApi(APIView):
    """PUT a sealed secret key (application/octet-stream) to escrow it; DELETE to take it back."""

    @openapi.api_operation(
        tag="he",
        summary="Escrow an HE dataset's secret key",
        description="The secret key sealed to the platform's key-encryption key (`cloakroom he escrow`), as "
        "the raw body; the escrow worker then releases the dataset's jobs. The bundle must be ready (409). "
        f"{_OWNER_ONLY}",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: HeDatasetOutputSerializer},
        errors=[400, 401, 403, 404, 409, 415],
    )
    def put(self, request, dataset_id: int):
        _octet_stream_only(request)
        try:
            length = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > he.MAX_ESCROW_BYTES:
            raise ValidationFailed(
                f"body: a sealed key is at most {he.MAX_ESCROW_BYTES} bytes.", fields={"body": ["Too large."]}
            )
        blob = request.read(he.MAX_ESCROW_BYTES + 1)
        dataset = he.escrow_store(owner=request.user, dataset_id=dataset_id, blob=blob)
        return Response(HeDatasetOutputSerializer(dataset).data)

    @openapi.api_operation(
        tag="he",
        summary="Take an escrowed key back",
        description="Deletes the sealed key; releases wait for the owner's key agent again. " + _OWNER_ONLY,
        request=None,
        responses={200: HeDatasetOutputSerializer},
        errors=[401, 403, 404],
    )
    def delete(self, request, dataset_id: int):
        return Response(HeDatasetOutputSerializer(he.escrow_remove(owner=request.user, dataset_id=dataset_id)).data)
