"""What a job kind is: the part of a job that differs from one kind to the next.

The lifecycle (compute/services.py for submit, run, cancel and sweep; compute/lifecycle.py for claim,
heartbeat, release and fail; compute/budget.py for the budget) is written once. A kind supplies only:

* ``prepare``: parse and validate the request against the dataset, and return its canonical spec
  (stored on the job, hashed for free repeats). Nothing is reserved yet.
* ``estimate``: the accuracy and price of a request, from declared bounds alone (reads no data).
* ``send``: queue the kind's first task for a job, on the kind's queue.
* ``run``: the work that task does (one task, or a first task that queues many parts), ending in
  :func:`compute.lifecycle.job_release` or :func:`compute.lifecycle.job_fail`.
* ``discard``: remove whatever files a cancelled or failed job left behind.
* ``sweep``: the kind's own clean-up, run by the sweeper after the lifecycle's.

A kind is registered by the dataset mode it runs on and the name a buyer gives as ``kind``
(compute/kinds/__init__.py). docs/ARCHITECTURE.md shows how to add one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from compute.models import Job
from config.exceptions import ValidationFailed
from marketplace.models import Dataset, Purchase


def query_error(exc: QueryError) -> ValidationFailed:
    """An engine's refusal of a request, as the 400 that names the field."""
    return ValidationFailed(f"{exc.field}: {exc.message}", code="invalid_query", fields={exc.field: [exc.message]})


@dataclass(frozen=True)
class Prepared:
    """A validated request: the canonical spec to store and the exact budget it asks for."""

    spec: dict[str, Any]
    epsilon: Decimal
    delta: Decimal


@dataclass(frozen=True)
class JobEstimate:
    """What a job would cost and how accurate it would be (compute.services.job_estimate)."""

    epsilon: Decimal
    delta: Decimal
    price: Decimal
    noise_scale: float
    ci95_halfwidth: float | None
    exact: bool
    mechanism: str
    note: str
    rows_assumed: int | None
    epsilon_remaining: Decimal
    affordable: bool


class JobKind(ABC):
    """One kind of job on one mode of dataset. Instances hold no state; one is registered per kind."""

    #: the request's ``kind``
    name: str
    #: the ``Dataset.mode`` it runs on
    mode: str

    @abstractmethod
    def queue(self) -> str:
        """The broker queue of the kind's first task (read from the settings)."""

    @abstractmethod
    def prepare(self, *, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> Prepared:
        """Validate a request; raise ``ValidationFailed`` (or ``Conflict``) naming what is wrong."""

    @abstractmethod
    def estimate(
        self, *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows: int | None
    ) -> JobEstimate:
        """Accuracy and price; with ``target`` (a 95% half-width), the smallest epsilon that reaches it."""

    @abstractmethod
    def send(self, job_id: int) -> None:
        """Queue the job's first task. May raise whatever the broker raises; the caller handles it."""

    @abstractmethod
    def run(self, *, job_id: int) -> str:
        """The first task's work. Idempotent: returns what it did ("released", "skipped", "failed", ...)."""

    def discard(self, job: Job) -> None:  # noqa: B027 (most kinds leave nothing behind)
        """Remove what a job that will never be released left on disk."""

    def sweep(self) -> dict[str, int]:
        """The kind's own part of the sweep; counts of what it did, by name."""
        return {}
