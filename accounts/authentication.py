"""``Authorization: Bearer <key>`` authentication for API keys, and HTTP Basic made safe for junk."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts.services import api_key_authenticate
from accounts.throttling import api_key_lockout, client_ip, login_lockout, throttled


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        # A client that guessed wrong too often waits, right key or not (accounts.throttling).
        lockout, ident = api_key_lockout(), f"ip:{client_ip(request)}"
        wait = lockout.wait(ident)
        if wait is not None:
            raise throttled(wait)
        if len(header) != 2:
            lockout.fail(ident)
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        try:
            key = header[1].decode()
        except UnicodeError:
            lockout.fail(ident)
            raise exceptions.AuthenticationFailed("The API key is not valid.") from None
        user = api_key_authenticate(key=key)
        if user is None:
            lockout.fail(ident)
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
        # The same lockout as the login form: by address and by user name (accounts.throttling).
        lockout = login_lockout()
        idents = [f"ip:{client_ip(request)}" if request is not None else "ip:unknown", f"user:{userid[:150].lower()}"]
        wait = lockout.wait(*idents)
        if wait is not None:
            raise throttled(wait)
        if "\x00" in userid or "\x00" in password:
            lockout.fail(*idents)
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            lockout.fail(*idents)
            raise
