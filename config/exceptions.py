"""Domain errors raised by services; config/errors.py maps them to the API's one error shape.

Kept free of DRF imports so that any module (services, authentication, tasks) can raise them.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A domain error raised by a service, carrying its HTTP status and a machine-readable code."""

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.fields = fields or {}
        self.extra = extra or {}


class ValidationFailed(ServiceError):
    status_code = 400
    code = "invalid"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"
