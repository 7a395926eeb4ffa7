"""API v1 for accounts: sign-up, the caller's profile, API keys.

Importing this module also registers accounts/schema.py's OpenAPI extensions (the API-key and HTTP Basic
schemes): the URL map imports it, and drf-spectacular builds the document from the URL map.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import schema  # noqa: F401 - registers how the authentication schemes appear in the document
from accounts.authentication import ApiKeyAuthentication, BasicAuthentication
from accounts.selectors import api_key_list, wallet_balance
from accounts.services import VALID_ROLES, api_key_create, api_key_revoke, user_signup
from config import fields as plain_fields
from config import openapi


class SignupApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema_serializer(component_name="SignupInput")
    class InputSerializer(serializers.Serializer):
        username = openapi.RegexField(
            r"^[\w.@+-]+\Z",
            schema_pattern=r"^[\w.@+-]+$",
            max_length=150,
            error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."},
        )
        # 254: what the account's email column holds (RFC 5321's limit on a forward path).
        email = openapi.EmailField(max_length=254)
        password = openapi.CharField(
            max_length=128,
            trim_whitespace=False,
            help_text="At least 8 characters, not all digits, not a common password and not like the user name "
            "or email (Django's password validators).",
        )
        roles = serializers.ListField(
            child=openapi.ChoiceField(choices=VALID_ROLES), allow_empty=False, min_length=1, max_length=2
        )

    @extend_schema_serializer(component_name="SignupOutput")
    class OutputSerializer(serializers.Serializer):
        id = plain_fields.IntegerField()
        username = serializers.CharField()
        email = serializers.EmailField()
        roles = serializers.ListField(child=serializers.CharField())

    @openapi.api_operation(
        tag="accounts",
        summary="Sign up",
        request={"application/json": InputSerializer},
        responses={201: OutputSerializer},
        errors=[400, 413, 415],
        auth=[],
        description=(
            "Create an account. Usernames are public handles, so a name that cannot be had is a 400 "
            "naming `username`, with one message whether it is taken or reserved; it is checked only "
            "once every other field is valid, so a request with any other error says nothing about "
            "the name. Email addresses are never said to be registered or not."
        ),
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_signup(**data.validated_data)
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)


class MeApi(APIView):
    @extend_schema_serializer(component_name="MeOutput")
    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        email = serializers.EmailField()
        roles = serializers.ListField(child=serializers.CharField())
        credits = plain_fields.DecimalField(max_digits=18, decimal_places=2)

    @openapi.api_operation(
        tag="accounts",
        summary="The caller's profile and credits",
        responses={200: OutputSerializer},
        errors=[401],
    )
    def get(self, request):
        user = request.user
        payload = {
            "username": user.username,
            "email": user.email,
            "roles": user.roles,
            "credits": wallet_balance(user=user),
        }
        return Response(self.OutputSerializer(payload).data)


class ApiKeySerializer(serializers.Serializer):
    id = plain_fields.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class ApiKeyListCreateApi(APIView):
    # Creating a key is how a client gets its first credential, so HTTP Basic and the browser
    # session are accepted here as well as an existing key.
    authentication_classes = [ApiKeyAuthentication, BasicAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema_serializer(component_name="ApiKeyInput")
    class InputSerializer(serializers.Serializer):
        # Text only: DRF's CharField would have stored {"name": 0} as the name "0".
        name = openapi.CharField(max_length=100)

    @extend_schema_serializer(component_name="ApiKeyCreated")
    class CreatedSerializer(serializers.Serializer):
        id = plain_fields.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField()
        key = serializers.CharField(help_text="The full key. It is shown only in this response.")

    @openapi.api_operation(
        tag="accounts",
        summary="List the caller's API keys",
        description="Every key of the caller, revoked ones included, newest first; never the keys themselves. "
        "Not paginated: an account has few keys.",
        responses={200: ApiKeySerializer(many=True)},
        errors=[401],
    )
    def get(self, request):
        return Response(ApiKeySerializer(api_key_list(user=request.user), many=True).data)

    @openapi.api_operation(
        tag="accounts",
        summary="Create an API key",
        description="Authenticate with HTTP Basic (user name and password) to get a first key, or with a "
        "key or the browser session to get another.",
        request={"application/json": InputSerializer},
        responses={201: CreatedSerializer},
        errors=[400, 401, 403, 409, 413, 415],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row, key = api_key_create(user=request.user, name=data.validated_data["name"])
        body = {"id": row.id, "name": row.name, "prefix": row.prefix, "key": key}
        return Response(self.CreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    authentication_classes = [ApiKeyAuthentication, BasicAuthentication, SessionAuthentication]

    @openapi.api_operation(
        tag="accounts",
        summary="Revoke an API key",
        description="The key stops working at once. Revoking a revoked key is a 204 again.",
        responses={204: OpenApiResponse(description="Revoked.")},
        errors=[401, 403, 404],
    )
    def delete(self, request, key_id: int):
        api_key_revoke(user=request.user, key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
