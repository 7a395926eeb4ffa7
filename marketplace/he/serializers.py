"""The HE API's request and answer shapes: the manifest's schema component, the serializers, and the
parser of the create request (metadata and manifest, as one JSON object or as multipart parts).

The views in :mod:`marketplace.he.api` only call these and a service.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request

from cloakroom_client.protocol.bundle import COLUMN_KINDS, FORMAT, MAX_COLUMNS, MAX_MANIFEST_BYTES, PARAMETERS, VERSION
from config import fields as plain_fields
from config import openapi
from config.exceptions import ValidationFailed
from marketplace.he.selectors import bundle_state
from marketplace.he.services import HeDatasetInput
from marketplace.models import Dataset
from marketplace.parsers import json_loads_strict

# The create request carries the manifest (a few MB for the largest bundles) and a little metadata.
MAX_CREATE_BYTES = MAX_MANIFEST_BYTES + 1024 * 1024

FILE_ENTRY = openapi.register_component(
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
            "context": FILE_ENTRY,
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
                        "files": {"type": "array", "items": FILE_ENTRY},
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


def bundle_body(dataset: Dataset) -> dict:
    """The answer about an HE dataset and its bundle (:class:`HeBundleOutputSerializer`)."""
    body = dict(HeDatasetOutputSerializer(dataset).data)
    body.update(bundle_state(dataset=dataset))
    return body


def json_part(raw: Any, field: str) -> Any:
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
        return json_loads_strict(raw, field)
    return raw


@dataclass(frozen=True)
class HeCreateRequest:
    data: HeDatasetInput
    manifest: Any


def parse_create_request(request: Request) -> HeCreateRequest:
    """Read ``POST /api/v1/datasets/he/``: the metadata (checked by :class:`HeMetadataSerializer`) and the
    manifest as it was sent (the service checks it against the format).

    An announced ``Content-Length`` over the limit is refused before the body is parsed. As JSON, the
    metadata fields sit beside ``manifest``; as multipart, ``metadata`` is a JSON part and ``manifest``
    the manifest.json file (or a JSON text part).
    """
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
        metadata = json_part(payload.get("metadata"), "metadata")
    else:
        metadata = {k: v for k, v in payload.items() if k != "manifest"}
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object.", fields={"metadata": ["Must be a JSON object."]})
    raw_manifest = request.FILES.get("manifest") if "manifest" in request.FILES else payload.get("manifest")
    if raw_manifest is None:
        raise ValidationFailed(
            "Send the bundle's manifest.json as 'manifest'.", fields={"manifest": ["This field is required."]}
        )
    manifest = json_part(raw_manifest, "manifest")
    serializer = HeMetadataSerializer(data=metadata)
    serializer.is_valid(raise_exception=True)
    return HeCreateRequest(data=HeDatasetInput(**serializer.validated_data), manifest=manifest)
