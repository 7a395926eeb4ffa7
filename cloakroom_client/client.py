"""A small, dependency-light client for the Cloakroom REST API v1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any
from urllib.parse import quote

import requests

from cloakroom_client.credentials import save_key, saved_key
from cloakroom_client.extras import TryAndTrain
from cloakroom_client.frames import DATASET_COLUMNS, PURCHASE_COLUMNS, csv_frame, records_frame
from cloakroom_client.inference import Predictions
from cloakroom_client.pate import Ensembles
from cloakroom_client.progress import StatusLine, job_status_text
from cloakroom_client.protocol.escrow import escrow_secret_bytes, seal

DEFAULT_TIMEOUT = 30.0
FINISHED = ("released", "failed", "cancelled")


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


class Client(TryAndTrain, Predictions, Ensembles):
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
        self._raise_for_error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @staticmethod
    def _raise_for_error(response: requests.Response) -> None:
        """Raise the API's error (CloakroomError) for a 4xx/5xx response."""
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
            except (ValueError, AttributeError):
                raise CloakroomError(
                    response.status_code, "http_error", response.text[:200] or response.reason
                ) from None

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
        # A client without credentials: signing up needs none, as create_api_key needs only a password.
        client = cls(url)
        return client._request(
            "POST", "auth/signup/", json={"username": username, "email": email, "password": password, "roles": roles}
        )

    @classmethod
    def create_api_key(cls, url: str, *, username: str, password: str, name: str = "sdk") -> str:
        """Create an API key with a username and password (HTTP Basic); returns the key, shown once.

        Each call makes another key: a script run again and again should use :meth:`login`."""
        return cls.new_api_key(url, username=username, password=password, name=name)["key"]

    @classmethod
    def new_api_key(cls, url: str, *, username: str, password: str, name: str = "sdk") -> dict:
        """Create an API key (HTTP Basic); returns ``{"id", "name", "prefix", "key"}``."""
        client = cls(url)
        client.session.auth = (username, password)
        return client._request("POST", "api-keys/", json={"name": name})

    @classmethod
    def login(
        cls,
        url: str,
        *,
        username: str,
        password: str,
        name: str = "sdk",
        credentials: str | os.PathLike | None = None,
    ) -> Client:
        """A client for ``username`` that reuses the key saved for that user and server.

        A key is created (with the password) only when none is saved or the server refuses the saved
        one (revoked); the new key is saved, mode 0600, in ``credentials`` (default
        ``$CLOAKROOM_CREDENTIALS`` or ``~/.cloakroom/credentials.json``, see
        :mod:`cloakroom_client.credentials`).
        """
        saved = saved_key(url, username, credentials)
        if saved is not None:
            client = cls(url, saved["key"])
            try:
                if client.me().get("username") == username:
                    save_key(url, username=username, key=saved["key"], key_id=saved["id"], path=credentials)
                    return client
            except CloakroomError as exc:
                if exc.status not in (401, 403):
                    raise
        created = cls.new_api_key(url, username=username, password=password, name=name)
        save_key(url, username=username, key=created["key"], key_id=created.get("id"), path=credentials)
        return cls(url, created["key"])

    def revoke_api_key(self, key_id: int) -> None:
        """Revoke one of the caller's API keys (``DELETE /api/v1/api-keys/{id}/``)."""
        self._request("DELETE", f"api-keys/{int(key_id)}/")

    def me(self) -> dict:
        return self._request("GET", "me/")

    # -- catalogue and purchases ---------------------------------------------------------------

    def datasets(
        self, *, search: str | None = None, mode: str | None = None, mine: bool | None = None, as_frame: bool = False
    ):
        """Every dataset the caller may see (all pages): a list of dicts, or with ``as_frame`` a pandas
        DataFrame, one row per dataset (budget and money as Decimal, times as timestamps)."""
        rows = list(self._pages("datasets/", {"search": search, "mode": mode, "mine": mine}))
        return records_frame(rows, DATASET_COLUMNS) if as_frame else rows

    def dataset(self, dataset_id: int) -> dict:
        return self._request("GET", f"datasets/{int(dataset_id)}/")

    def upload(self, path: str, metadata: dict) -> dict:
        """Upload a CSV or Parquet file with its declared schema; returns the draft dataset."""
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

    def purchases(self, *, as_frame: bool = False):
        """The caller's purchases (all pages), with what is spent and left of each: a list of dicts, or
        with ``as_frame`` a pandas DataFrame, one row per purchase."""
        rows = list(self._pages("purchases/"))
        return records_frame(rows, PURCHASE_COLUMNS) if as_frame else rows

    def purchase(self, purchase_id: int) -> dict:
        return self._request("GET", f"purchases/{int(purchase_id)}/")

    # -- jobs -----------------------------------------------------------------------------------

    def estimate(
        self,
        purchase: int,
        query: dict,
        *,
        epsilon: str | Decimal | float | None = None,
        delta: str | Decimal | float = "0",
        ci95_halfwidth: float | None = None,
        rows: int | None = None,
    ) -> dict:
        """Accuracy and price of a query before running it; spends nothing.

        Give ``epsilon`` to learn the noise scale and the 95% half-width, or ``ci95_halfwidth`` to
        learn the epsilon that reaches it. ``rows`` is the size of the data the answer covers, when
        the row count is private and the query is a mean, variance or quantile.
        """
        body: dict[str, Any] = {"purchase": int(purchase), "kind": "query", "query": query, "delta": str(delta)}
        if epsilon is not None:
            body["epsilon"] = str(epsilon)
        if ci95_halfwidth is not None:
            body["ci95_halfwidth"] = ci95_halfwidth
        if rows is not None:
            body["rows"] = rows
        return self._request("POST", "jobs/estimate/", json=body)

    def submit(
        self,
        purchase: int,
        query: dict,
        *,
        epsilon: str | Decimal | float,
        delta: str | Decimal | float = "0",
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit a DP query job; returns the job (status ``queued``, or an earlier release when the
        same query was already answered, which costs nothing)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {
            "purchase": int(purchase),
            "kind": "query",
            "query": query,
            "epsilon": str(epsilon),
            "delta": str(delta),
        }
        return self._request("POST", "jobs/", json=body, headers=headers)

    def job(self, job_id: int) -> dict:
        return self._request("GET", f"jobs/{int(job_id)}/")

    def jobs(self, *, status: str | None = None) -> list[dict]:
        return list(self._pages("jobs/", {"status": status}))

    def cancel(self, job_id: int) -> dict:
        return self._request("POST", f"jobs/{int(job_id)}/cancel/")

    def ledger(self, purchase_id: int) -> dict:
        return self._request("GET", f"purchases/{int(purchase_id)}/ledger/")

    def wait(self, job: int | dict, *, timeout: float = 300.0, poll: float = 0.5, progress: bool = True) -> dict:
        """Poll until the job is released, failed or cancelled; returns the job.

        With ``progress`` a status line (state, elapsed time, and a bar of the parts done for an HE job)
        is kept up to date on stderr, and ended with a newline however the wait ends. Raises
        ``TimeoutError`` when the job is still open after ``timeout`` seconds.
        """
        job_id = job["id"] if isinstance(job, dict) else int(job)
        start = time.monotonic()
        delay = poll
        with StatusLine(enabled=progress) as line:
            while True:
                current = self.job(job_id)
                elapsed = time.monotonic() - start
                line.show(job_status_text(current, elapsed), key=(current["status"], current.get("progress")))
                if current["status"] in FINISHED:
                    return current
                if elapsed > timeout:
                    raise TimeoutError(f"job {job_id} is still {current['status']} after {timeout:.0f}s")
                time.sleep(delay)
                delay = min(delay * 1.5, 5.0)

    def download(self, job: int | dict, fmt: str = "json") -> str:
        """A released job's result as the server writes it: ``json`` (the release and its receipt) or
        ``csv`` (one row per group, bin or quantile). Raises CloakroomError 404 ``not_released`` before."""
        job_id = job["id"] if isinstance(job, dict) else int(job)
        response = self.session.get(
            f"{self.url}/api/v1/jobs/{job_id}/download/", params={"format": fmt}, timeout=self.timeout
        )
        self._raise_for_error(response)
        return response.text

    # -- HE bundles: the owner's side ------------------------------------------------------------

    def create_he_dataset(self, body: dict) -> dict:
        """Create an HE dataset from its metadata and the bundle's manifest (or find the one this
        manifest already created); returns the dataset with its ``bundle_status``."""
        return self._request("POST", "datasets/he/", json=body)

    def bundle_state(self, dataset_id: int) -> dict:
        """The owner's view of an HE dataset's bundle: its ``bundle_id``, files, and those still missing."""
        return self._request("GET", f"datasets/{int(dataset_id)}/bundle/")

    def put_bundle_file(self, dataset_id: int, name: str, body: IO[bytes] | bytes, *, timeout: float) -> dict:
        """Upload one file of a bundle; ``body`` may be a stream that ``requests`` sends as it reads."""
        return self._request(
            "PUT",
            f"datasets/{int(dataset_id)}/bundle/files/{name}",
            data=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=timeout,
        )

    def complete_bundle(self, dataset_id: int, *, timeout: float) -> dict:
        """Have the server check the uploaded bundle against its manifest; returns the dataset."""
        return self._request("POST", f"datasets/{int(dataset_id)}/bundle/complete/", timeout=timeout)

    # -- HE jobs: the key holder's side -------------------------------------------------------------

    def awaiting_jobs(self) -> list[dict]:
        """The release plans of every HE job on the caller's datasets that waits for its key, oldest
        first (all pages, read before any is released, so releasing cannot shift a page)."""
        plans: list[dict] = []
        seen: set = set()
        for plan in self._pages("he/jobs/awaiting/"):
            if plan.get("job") not in seen:
                seen.add(plan.get("job"))
                plans.append(plan)
        return plans

    def he_job(self, job_id: int) -> dict:
        """The release plan of one HE job (409 ``job_not_awaiting_key`` when it waits for no key)."""
        return self._request("GET", f"he/jobs/{int(job_id)}/")

    def aggregate_bytes(self, job_id: int, name: str) -> bytes:
        """The serialized ciphertext (TenSEAL ``CKKSVector`` bytes) of one encrypted aggregate of a job."""
        url = f"{self.url}/api/v1/he/jobs/{int(job_id)}/aggregates/{quote(str(name), safe='')}/"
        response = self.session.get(
            url, headers={"Accept": "application/octet-stream, application/json"}, timeout=self.timeout
        )
        self._raise_for_error(response)
        return response.content

    def release(self, job_id: int, values: dict) -> dict:
        """Post the noisy component values of an HE job; returns the released job."""
        return self._request("POST", f"he/jobs/{int(job_id)}/release/", json={"values": dict(values)})

    def escrow_key(self) -> dict:
        """The platform's public key-encryption key: ``{"algorithm", "public_key", "key_id"}``."""
        return self._request("GET", "he/escrow-key/")

    def escrow(self, dataset_id: int, secret_context, *, public_key: str | None = None) -> dict:
        """Seal an HE dataset's secret context to the platform's escrow worker and upload it.

        Only the sealed blob leaves this machine: the web server, the database and the media folder
        cannot open it; the escrow worker (queue ``keys``) can, and releases jobs without a key agent.
        """
        blob = seal(escrow_secret_bytes(secret_context), public_key or self.escrow_key()["public_key"])
        return self._request(
            "PUT",
            f"datasets/{int(dataset_id)}/escrow/",
            data=blob,
            headers={"Content-Type": "application/octet-stream"},
        )

    def unescrow(self, dataset_id: int) -> dict:
        """Delete the escrowed key; releases wait for the owner's key agent again."""
        return self._request("DELETE", f"datasets/{int(dataset_id)}/escrow/")

    def result_frame(self, job: int | dict):
        """A released job's answer as a pandas DataFrame: one row per group (and bin or quantile),
        with the 95% interval where the mechanism gives one."""
        return csv_frame(self.download(job, "csv"))
