"""Documenting an operation: its tag, its answers, the one error shape, pages of lists.

* :func:`api_operation` documents an operation: its tag, summary, body and answers, plus the error
  answers it can give, all in the one error shape (:class:`ErrorSerializer`, config/errors.py)
  and a 429 with ``Retry-After`` for every operation (accounts/throttling.py).
* :func:`paginated` documents a page of ``PageNumberPagination`` (``count``, ``next``,
  ``previous``, ``results``) as list operations answer it.
* :func:`postprocess_schema` (a drf-spectacular hook) puts the tags in order, and the health probe is
  documented here so that config/health.py keeps to the probe itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

# ---------------------------------------------------------------------------------------------
# Tags: every operation belongs to exactly one, in this order.

TAGS = {
    "accounts": "Sign-up, the caller's profile and API keys.",
    "datasets": "The catalogue: list, upload (DP), publish and suspend datasets; an owner's budget view.",
    "purchases": "Privacy budget bought on a dataset, and its ledger.",
    "jobs": "Queries on purchased budget: estimate, submit, follow, cancel, download.",
    "ensembles": "PATE: owners' datasets joined into ensembles, and labels for a buyer's rows by their noisy vote.",
    "models": "Models published for encrypted inference, and predictions on a client's encrypted rows.",
    "he": "Encrypted (HE) datasets: bundle upload, key escrow, and the key holder's release of HE jobs.",
    "health": "Whether this web process reaches its database and broker.",
}

# ---------------------------------------------------------------------------------------------
# The one error shape (config/errors.py error_body).


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Machine-readable: `invalid`, `invalid_query`, `not_authenticated`, `forbidden`, `not_found`, "
        "`throttled`, `payload_too_large`, `unsupported_media_type`, or a specific code such as "
        "`insufficient_budget` or `not_an_owner`."
    )
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Reasons by field, as dotted paths into the request (`query.filters.0.value`); empty when "
        "the error is not about a field.",
    )
    limit_bytes = serializers.IntegerField(required=False, help_text="413: the body size limit.")
    epsilon_remaining = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a job: epsilon left on the purchase."
    )
    delta_remaining = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a job: delta left on the purchase."
    )
    epsilon_available = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a purchase: epsilon left for sale."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API: {"error": {"code", "message", "fields"}}."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The request is not valid: `fields` names each offending field (a dotted path into the body or "
    "the name of a query parameter or header).",
    401: "Credentials were sent but are not valid (or none were sent where they are required).",
    403: "The caller may not do this: the wrong role (owner or buyer), or a session request without its CSRF token.",
    404: "No such object for this caller (another account's objects do not exist for it), or no such page.",
    409: "The request conflicts with the object's state (see `code`).",
    413: "The request body is larger than the server reads.",
    415: "The request body's Content-Type is not one this operation reads.",
    429: "Too many requests, or too many failed credentials, from this client: wait `Retry-After` seconds.",
}


def attachment_header(filename: str) -> OpenApiParameter:
    """The ``Content-Disposition`` response header of a download, documented with its file name
    (``filename`` as the client sees it, e.g. ``cloakroom-job-{id}.{format}``)."""
    return OpenApiParameter(
        "Content-Disposition",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        required=True,
        description=f'attachment; filename="{filename}"',
    )


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in statuses}


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)
WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[401],
    description="The scheme to authenticate with (`Bearer`).",
)

_UNSET: Any = object()


def api_operation(
    *,
    tag: str,
    summary: str,
    responses: Mapping[Any, Any],
    errors: Iterable[int] = (),
    description: str | None = None,
    request: Any = _UNSET,
    parameters: Iterable[OpenApiParameter] = (),
    auth: list | None = None,
    operation_id: str | None = None,
):
    """``extend_schema`` for one operation, with its error answers in the one error shape.

    ``errors`` lists the 4xx statuses the operation can answer besides 429, which every operation
    can (rate limits and credential lockouts).
    """
    if tag not in TAGS:
        raise ValueError(f"unknown tag {tag!r}")
    statuses = sorted({*errors, 429})
    headers = [RETRY_AFTER] + ([WWW_AUTHENTICATE] if 401 in statuses else [])
    kwargs: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "responses": {**responses, **error_responses(*statuses)},
        "parameters": [*parameters, *headers],
    }
    if description is not None:
        kwargs["description"] = description
    if request is not _UNSET:
        kwargs["request"] = request
    if auth is not None:
        kwargs["auth"] = auth
    if operation_id is not None:
        kwargs["operation_id"] = operation_id
    return extend_schema(**kwargs)


PAGE_PARAMETER = OpenApiParameter(
    "page",
    {"type": "integer", "minimum": 1},
    OpenApiParameter.QUERY,
    description="Page number, from 1 (20 items a page). A page past the last is a 404.",
)


class Pagination(PageNumberPagination):
    """DRF's page-number pagination, reading ``?page=`` strictly: an empty value is a 404 like any
    other page that is not a number, instead of page 1."""

    def get_page_number(self, request, paginator):
        number = request.query_params.get(self.page_query_param)
        if number is None:
            return 1
        if number in self.last_page_strings:
            return paginator.num_pages
        return number


def paginated(item: type[serializers.Serializer] | serializers.Serializer, name: str) -> serializers.Serializer:
    """A page of ``PageNumberPagination`` as the list operations answer it."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(min_value=0, help_text="Items on all pages."),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
            "results": serializers.ListField(child=item() if isinstance(item, type) else item),
        },
    )


def postprocess_schema(result, generator, request, public):
    """drf-spectacular hook (SPECTACULAR_SETTINGS): the tags in order, with their descriptions."""
    result["tags"] = [{"name": name, "description": description} for name, description in TAGS.items()]
    return result


class _HealthDocumentation(OpenApiViewExtension):
    """GET /api/v1/health/ documented here: config/health.py keeps to the probe itself."""

    target_class = "config.health.HealthApi"

    def view_replacement(self):
        health = inline_serializer(
            "Health",
            {
                # Plain strings, not two ChoiceFields: one choice set would get two enum names.
                "database": serializers.CharField(help_text='"ok" or "unreachable"'),
                "broker": serializers.CharField(help_text='"ok" or "unreachable"'),
                "worker": inline_serializer("HealthWorker", {"last_seen": serializers.DateTimeField(allow_null=True)}),
            },
        )

        class HealthApi(self.target_class):
            @api_operation(
                tag="health",
                summary="Is this web process able to reach its database and broker?",
                description="Open to anyone, credentials ignored. 200 while the database and the broker both "
                "answer, 503 (the same body) when either does not; the body says which, and when a worker was "
                "last seen.",
                responses={
                    200: OpenApiResponse(health, description="Both answer."),
                    503: OpenApiResponse(health, description="The database or the broker does not answer."),
                },
                auth=[],
            )
            def get(self, request):
                return super().get(request)

        return HealthApi
