"""API v1 for HE datasets: create one from a bundle manifest, upload its files, check it, escrow its key.

- ``POST /api/v1/datasets/he/``: metadata + manifest -> 201 draft dataset, ``bundle_status`` "uploading",
  and the files the server expects (200 with the same dataset when that bundle's upload already exists).
- ``GET /api/v1/datasets/{id}/bundle/``: which files are present and which are missing (resume from here).
- ``PUT /api/v1/datasets/{id}/bundle/files/{name}``: one file as the raw body (application/octet-stream).
- ``POST /api/v1/datasets/{id}/bundle/complete/``: check the bundle; "ready" or a 400 saying why not.
- ``GET /api/v1/he/escrow-key/``, ``PUT`` and ``DELETE /api/v1/datasets/{id}/escrow/``: key escrow.

Only the owner may call any of these; for anyone else the dataset does not exist (404). The views parse
(:mod:`marketplace.he.serializers`) and answer; the work is in :mod:`marketplace.he.services`.
"""

from __future__ import annotations

import base64

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiRequest, OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cloakroom_client.protocol.escrow import ALGORITHM, key_id
from config import fields as plain_fields
from config import openapi
from config.exceptions import Forbidden, ValidationFailed
from marketplace.he import selectors, services, storage
from marketplace.he.serializers import (
    HeBundleOutputSerializer,
    HeCreateSerializer,
    HeDatasetOutputSerializer,
    HeMetadataSerializer,
    bundle_body,
    parse_create_request,
)

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
        parsed = parse_create_request(request)
        dataset, created = services.he_dataset_create(owner=request.user, data=parsed.data, manifest=parsed.manifest)
        return Response(bundle_body(dataset), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


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
        dataset = selectors.he_dataset_get(owner=request.user, dataset_id=dataset_id)
        return Response(bundle_body(dataset))


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
        dataset, stored = services.bundle_file_upload(
            owner=request.user,
            dataset_id=dataset_id,
            name=name,
            stream=request.stream or _Empty(),
            content_length=length,
        )
        state = selectors.bundle_state(dataset=dataset)
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
        dataset = services.bundle_complete(owner=request.user, dataset_id=dataset_id)
        return Response(bundle_body(dataset))


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
        public = selectors.kek_public_key()
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
        if length > storage.MAX_ESCROW_BYTES:
            raise ValidationFailed(
                f"body: a sealed key is at most {storage.MAX_ESCROW_BYTES} bytes.", fields={"body": ["Too large."]}
            )
        blob = request.read(storage.MAX_ESCROW_BYTES + 1)
        dataset = services.escrow_store(owner=request.user, dataset_id=dataset_id, blob=blob)
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
        return Response(
            HeDatasetOutputSerializer(services.escrow_remove(owner=request.user, dataset_id=dataset_id)).data
        )
