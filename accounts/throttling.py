"""Throttling: repeated failed sign-ins and API-key guesses lock a client out for a while, and API
calls and job submissions are rate-limited.

Two mechanisms, both counting in the shared cache (Redis when ``REDIS_URL`` is set, a file cache
under ``var/`` for the embedded default), so that every web worker process sees the same counts:

* :class:`Lockout`: a window of ``window`` seconds from a client's first failure; once the client (an
  IP address, or a user name) has failed ``limit`` times in it, every further attempt is answered 429
  with ``Retry-After`` until the window ends, *whether or not the password is right*, so that a
  guesser learns nothing more. Used by the web and admin login forms (:class:`LoginThrottleMiddleware`),
  HTTP Basic and Bearer API keys (``accounts.authentication``).
* DRF's rate throttles (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``): ``anon`` and ``user`` for every
  API call, :class:`JobSubmitThrottle` for job submissions per buyer, and :class:`DummyQueryThrottle`
  for queries on fake data (compute/dummy.py).

Rates and limits are settings (README, settings table). A 429 from the API is in the one error shape,
code ``throttled``; the web pages answer a short HTML page. Both carry ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)
# What a cache that cannot be reached raises (Redis down, a full disk for the file cache). Throttling
# then steps aside, logged, rather than turning every request into a 500: a broker and cache outage
# must not stop the API from accepting jobs (docs/RELIABILITY.md).
CACHE_ERRORS = (RedisError, OSError)


def _cache_down(exc: Exception) -> None:
    logger.warning("throttling skipped: the cache is unreachable (%s)", type(exc).__name__)


def client_ip(request: HttpRequest) -> str:
    """The client's address as this process saw it (a proxy in front must set REMOTE_ADDR)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


class Lockout:
    """Failures counted per client for ``window`` seconds from its first failure; once there are
    ``limit`` of them, ``wait`` says how long until that window closes."""

    def __init__(self, scope: str, limit: int, window: int):
        self.scope, self.limit, self.window = scope, limit, window

    def _key(self, ident: str) -> str:
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"lockout:{self.scope}:{digest}"

    def wait(self, *idents: str) -> int | None:
        """Seconds until the window closes if any of ``idents`` is locked out, else None."""
        try:
            return self._wait(idents)
        except CACHE_ERRORS as exc:
            _cache_down(exc)
            return None

    def _wait(self, idents) -> int | None:
        now = time.time()
        for ident in idents:
            key = self._key(ident)
            if (cache.get(key) or 0) >= self.limit:
                started = cache.get(key + ":since") or now
                return max(1, math.ceil(self.window - (now - started)))
        return None

    def fail(self, *idents: str) -> None:
        """Count one failure for each of ``idents`` (atomic increments in the shared cache)."""
        try:
            self._fail(idents)
        except CACHE_ERRORS as exc:
            _cache_down(exc)

    def _fail(self, idents) -> None:
        now = time.time()
        for ident in idents:
            key = self._key(ident)
            if cache.add(key, 0, timeout=self.window):
                cache.set(key + ":since", now, timeout=self.window)
            try:
                cache.incr(key)
            except ValueError:  # the window closed between add and incr: start a new one
                cache.set(key, 1, timeout=self.window)
                cache.set(key + ":since", now, timeout=self.window)


def login_lockout() -> Lockout:
    return Lockout("login", settings.CLOAKROOM_LOGIN_FAILURE_LIMIT, settings.CLOAKROOM_LOGIN_FAILURE_WINDOW)


def api_key_lockout() -> Lockout:
    return Lockout("api-key", settings.CLOAKROOM_API_KEY_FAILURE_LIMIT, settings.CLOAKROOM_API_KEY_FAILURE_WINDOW)


def throttled(wait: int) -> exceptions.Throttled:
    return exceptions.Throttled(
        wait=wait, detail=f"Too many failed attempts from this client; try again in {wait} seconds."
    )


class LoginThrottleMiddleware:
    """Counts failed POSTs to the web and admin login forms and answers 429 to a locked-out client.

    A login form that fails re-renders with status 200; one that succeeds redirects. The lockout is
    checked before the form is read, by client address and by the user name typed, so neither a
    single address guessing many passwords nor many addresses guessing one account get far.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def _is_login(self, request: HttpRequest) -> bool:
        return request.method == "POST" and request.path in (reverse("login"), reverse("admin:login"))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self._is_login(request):
            return self.get_response(request)
        lockout = login_lockout()
        username = str(request.POST.get("username", ""))[:150].lower()
        idents = [f"ip:{client_ip(request)}"] + ([f"user:{username}"] if username else [])
        wait = lockout.wait(*idents)
        if wait is not None:
            body = render_to_string("429.html", {"wait": wait}, request=request)
            response = HttpResponse(body, status=429)
            response["Retry-After"] = str(wait)
            return response
        response = self.get_response(request)
        if response.status_code == 200:  # the form came back: the credentials were refused
            lockout.fail(*idents)
        return response


class _RateThrottle(UserRateThrottle):
    """DRF's rate throttle, reading its rate at request time and stepping aside if the cache is down."""

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except CACHE_ERRORS as exc:
            _cache_down(exc)
            return True


class JobSubmitThrottle(_RateThrottle):
    """Job submissions per buyer (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["job_submit"]``)."""

    scope = "job_submit"


class DummyQueryThrottle(_RateThrottle):
    """Queries on a dataset's fake table and its downloads, per user or, signed out, per address
    (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["dummy_query"]``): each is computed in the request."""

    scope = "dummy_query"


class AnonThrottle(_RateThrottle):
    """Every API call of a client that is not signed in, by address."""

    scope = "anon"

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserThrottle(_RateThrottle):
    """Every API call of a signed-in client, by user."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
