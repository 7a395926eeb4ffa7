"""One error shape for the whole API.

Every 4xx (and the 500 that should never happen) is returned as::

    {"error": {"code": "machine_readable", "message": "What went wrong, for a person.",
               "fields": {"field_name": ["reason", ...]}}}

Services raise :class:`ServiceError` subclasses; DRF's own exceptions are mapped here too, so API
views never build error bodies by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.exceptions import ServiceError

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, fields: dict | None = None, **extra: Any) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "fields": fields or {}}
    body.update(extra)
    return {"error": body}


def _flatten(detail: Any) -> Any:
    """Turn DRF's ErrorDetail trees into plain strings and lists."""
    if isinstance(detail, dict):
        return {str(k): _flatten(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten(v) for v in detail]
    return str(detail)


def _dotted(prefix: str, node: Any, out: dict[str, list[str]]) -> None:
    """Flatten nested errors to dotted paths: ``{"columns": [{}, {"lower": [..]}]}`` -> ``columns.1.lower``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "non_field_errors" and prefix:
                # An error about a nested object or list as a whole belongs to that field.
                _dotted(prefix, value, out)
            else:
                _dotted(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(node, list) and any(isinstance(v, (dict, list)) for v in node):
        for index, value in enumerate(node):
            if value:
                _dotted(f"{prefix}.{index}" if prefix else str(index), value, out)
    elif isinstance(node, list):
        out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in node)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(node))


def _fields_from_validation(detail: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    _dotted("", _flatten(detail), out)
    return out


def _summarise(fields: dict[str, list[str]]) -> str:
    parts = []
    for name, reasons in fields.items():
        label = "" if name == "non_field_errors" else f"{name}: "
        parts.append(f"{label}{reasons[0] if reasons else 'invalid'}")
    return "; ".join(parts) or "The request is not valid."


def _body_limit_error(exc: Exception, request=None) -> tuple[dict, int]:
    """The body and status for Django's refusals to read an oversized request.

    Django raises these (SuspiciousOperation subclasses) while reading the body, inside the view;
    DRF does not know them, so without this they were 500s. The request's POST data is marked
    unreadable, as Django's own handler does, so that nothing later tries to parse it again.
    """
    django_request = getattr(request, "_request", request)
    mark = getattr(django_request, "_mark_post_parse_error", None)
    if mark is not None:
        mark()
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return (
            error_body(
                "payload_too_large",
                f"The request body is larger than the {limit}-byte limit (uploaded files aside).",
                limit_bytes=limit,
            ),
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return error_body("too_many_files", f"The request sends more than {limit} files."), status.HTTP_400_BAD_REQUEST
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return error_body("too_many_fields", f"The request sends more than {limit} fields."), status.HTTP_400_BAD_REQUEST


_BODY_LIMITS = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)

_DRF_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.fields, **exc.extra), status=exc.status_code)
    if isinstance(exc, _BODY_LIMITS):
        body, code = _body_limit_error(exc, context.get("request"))
        # Logged where Django's own handler logs these outside DRF (json_400), at the same level.
        logging.getLogger(f"django.security.{type(exc).__name__}").error("%s", exc)
        return Response(body, status=code)
    if isinstance(exc, RecursionError):
        # Python's JSON parser recurses once per nesting level, so "[[[[...]]]]" thousands deep
        # raises RecursionError, which DRF's parser does not turn into a ParseError. Such a body
        # is the client's fault, never a server error.
        exc = exceptions.ParseError("The request body is nested too deeply to read.")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        # Unexpected: log it with its traceback and answer in the same shape, without details.
        logger.exception("Unhandled error in %s", context.get("view"))
        return Response(
            error_body("server_error", "Something went wrong on our side; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, exceptions.ValidationError):
        fields = _fields_from_validation(exc.detail)
        response.data = error_body("invalid", _summarise(fields), fields)
    else:
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        response.data = error_body(code, str(getattr(exc, "detail", exc)))
    return response


def json_404(request, exception=None):  # noqa: ARG001 - Django's handler signature
    """404 for URLs outside any API view: JSON under /api/, a plain page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_500(request):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "Something went wrong on our side."), status=500)
    from django.views.defaults import server_error

    return server_error(request)


def json_400(request, exception=None):
    """400 (413 for an oversized body) for what Django refuses before or outside a view."""
    if isinstance(exception, _BODY_LIMITS):
        body, code = _body_limit_error(exception, request)
        if request.path.startswith("/api/"):
            return JsonResponse(body, status=code)
        from django.views.defaults import bad_request

        response = bad_request(request, exception)
        response.status_code = code
        return response
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("bad_request", "The request could not be read."), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)
