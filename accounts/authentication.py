"""``Authorization: Bearer <key>`` authentication for API keys, and HTTP Basic made safe for junk."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts.services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        user = api_key_authenticate(key=key)
        if user is None:
            raise exceptions.AuthenticationFailed("The API key is not valid or has been revoked.")
        return (user, None)

    def authenticate_header(self, request):
        return self.keyword


class BasicAuthentication(authentication.BasicAuthentication):
    """DRF's HTTP Basic, refusing credentials that no account can have before they reach the database.

    A NUL byte in the user name would otherwise travel to PostgreSQL, which cannot compare text
    holding one and raises; the caller would get a 500 instead of a 401.
    """

    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, request)
