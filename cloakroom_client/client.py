"""A small, dependency-light client for the Cloakroom REST API v1."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import requests

DEFAULT_TIMEOUT = 30.0


class CloakroomError(Exception):
    """An error answered by the API, in its one error shape.

    ``code`` is machine-readable (``insufficient_budget``, ``invalid``, ...), ``message`` is for a
    person, ``fields`` maps each offending field to its reasons, and ``status`` is the HTTP status.
    """

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None, body: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.body = body or {}


class Client:
    """A client bound to one server and one API key.

    ``url`` is the server's base address (``http://127.0.0.1:8000``); ``api_key`` is a key created
    with ``POST /api/v1/api-keys/`` (or :meth:`create_api_key`). Numbers that carry money or budget
    are sent and returned as decimal strings, never floats.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "cloakroom-client/0.1"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = path if path.startswith("http") else f"{self.url}/api/v1/{path.lstrip('/')}"
        response = self.session.request(method, url, timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", {})
                raise CloakroomError(
                    response.status_code,
                    error.get("code", "error"),
                    error.get("message", response.reason),
                    error.get("fields"),
                    body,
                )
            except ValueError:
                raise CloakroomError(
                    response.status_code, "http_error", response.text[:200] or response.reason
                ) from None
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        page = self._request("GET", path, params={k: v for k, v in (params or {}).items() if v is not None})
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self._request("GET", page["next"])

    # -- accounts -------------------------------------------------------------------------------

    @classmethod
    def signup(cls, url: str, *, username: str, email: str, password: str, roles: list[str]) -> dict:
        """Create an account; returns the new user. Use :meth:`create_api_key` next."""
        return cls(url)._request(
            "POST", "auth/signup/", json={"username": username, "email": email, "password": password, "roles": roles}
        )

    @classmethod
    def create_api_key(cls, url: str, *, username: str, password: str, name: str = "sdk") -> str:
        """Create an API key with a username and password (HTTP Basic); returns the key, shown once."""
        client = cls(url)
        client.session.auth = (username, password)
        return client._request("POST", "api-keys/", json={"name": name})["key"]

    def me(self) -> dict:
        return self._request("GET", "me/")

    # -- catalogue and purchases ---------------------------------------------------------------

    def datasets(self, *, search: str | None = None, mode: str | None = None, mine: bool | None = None) -> list[dict]:
        """Every dataset the caller may see (all pages)."""
        return list(self._pages("datasets/", {"search": search, "mode": mode, "mine": mine}))

    def dataset(self, dataset_id: int) -> dict:
        return self._request("GET", f"datasets/{int(dataset_id)}/")

    def upload(self, path: str, metadata: dict) -> dict:
        """Upload a CSV or Parquet file with its declared schema; returns the draft dataset."""
        import json

        with open(path, "rb") as handle:
            return self._request(
                "POST",
                "datasets/",
                files={"file": (path.rsplit("/", 1)[-1], handle)},
                data={"metadata": json.dumps(metadata, default=str)},
            )

    def publish(self, dataset_id: int) -> dict:
        return self._request("POST", f"datasets/{int(dataset_id)}/publish/")

    def buy(self, dataset_id: int, epsilon: str | Decimal | float) -> dict:
        """Buy an allotment of a dataset's epsilon. Raises CloakroomError 409 when too little is left."""
        return self._request("POST", "purchases/", json={"dataset": int(dataset_id), "epsilon": str(epsilon)})

    def purchases(self) -> list[dict]:
        return list(self._pages("purchases/"))

    def purchase(self, purchase_id: int) -> dict:
        return self._request("GET", f"purchases/{int(purchase_id)}/")
