"""Tells drf-spectacular how API-key authentication appears in the OpenAPI document."""

from drf_spectacular.authentication import BasicScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key from POST /api/v1/api-keys/."}


class BasicAuthenticationScheme(BasicScheme):
    """HTTP Basic through accounts.authentication.BasicAuthentication, DRF's own with a guard for junk."""

    target_class = "accounts.authentication.BasicAuthentication"
