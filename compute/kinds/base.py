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

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from compute.models import Job
from config.exceptions import ValidationFailed
from marketplace.charts import percent
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
    # The job's zCDP rho, rounded up (compute/engines/accounting.py).
    rho: Decimal


# Why an estimate assumed the row count it did (JobEstimate.rows_basis), in words a buyer reads.
ROWS_GIVEN = "the rows you gave"
ROWS_PUBLIC = "the public row count"


@dataclass(frozen=True)
class Alternative:
    """The other grid mechanism at the same zCDP cost (the same rho), its accuracy, and the share of the
    allotment it would use (the job's own share when zCDP is what binds the purchase)."""

    mechanism: str
    epsilon: Decimal
    delta: Decimal
    ci95_halfwidth: float
    share_of_allotment: float


@dataclass(frozen=True)
class JobEstimate:
    """What a job would cost and how accurate it would be (compute.services.job_estimate).

    The page's estimate panel and the API's estimate endpoint both show this one object, so the two
    cannot disagree; ``accuracy_in_words`` and ``cost_in_words`` are what they say of it in words.
    """

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
    # Where rows_assumed came from (ROWS_GIVEN, ROWS_PUBLIC, or a sentence on how it was derived).
    rows_basis: str = ""
    # A quantile's half-width counts ranks, not values.
    in_ranks: bool = False
    # The accountant's view (compute/budget.py budget_outlook): the job's zCDP rho, the share of the
    # allotment it uses, the share used after it, and the largest pure epsilon of one more job after it.
    rho: Decimal = Decimal(0)
    share_of_allotment: float = 0.0
    share_used: float = 0.0
    share_used_after: float = 0.0
    epsilon_left_after: Decimal = Decimal(0)
    alternative: Alternative | None = None

    @property
    def halfwidth_in_words(self) -> str:
        """The 95% half-width alone, rounded up for reading ("± 0.932", "± 34.1 ranks"); empty when unknown."""
        if self.ci95_halfwidth is None:
            return ""
        return f"± {plain_number(self.ci95_halfwidth)}{' ranks' if self.in_ranks else ''}"

    @property
    def accuracy_in_words(self) -> str:
        """The 95% half-width as a buyer reads it, with the rows it assumed, or why there is none."""
        if self.ci95_halfwidth is None:
            return f"Not known before the job runs: {self.note}."
        text = f"{self.halfwidth_in_words} (95%)"
        if self.exact:
            return f"{text}, whatever the data."
        if self.in_ranks:
            text += f": the answer's rank is within {plain_number(self.ci95_halfwidth)} of the rank asked for"
        if self.rows_assumed is None:  # pragma: no cover - every bound that is not exact needs rows
            return f"{text}."
        return f"{text}, for {self.rows_assumed:,} rows ({self.rows_basis or ROWS_GIVEN})."

    @property
    def cost_in_words(self) -> str:
        """The epsilon a job spends, what that epsilon cost when bought, and the share of the purchase's
        allotment it uses (not an epsilon to subtract: answers compose tighter than that)."""
        eps = plain_decimal(self.epsilon)
        text = f"Costs ε {eps} = {self.price} credits"
        if not self.affordable:
            return (
                f"{text}, but your purchase cannot take it: {percent(self.share_used)} of its allotment is used "
                f"and one more job of at most ε {plain_decimal(self.epsilon_remaining)} would fit. Spend less "
                "or buy more."
            )
        return (
            f"{text} (already paid with your purchase) and uses {percent(self.share_of_allotment)} of your "
            f"allotment; after it {percent(self.share_used_after)} is used and one more job of up to "
            f"ε {plain_decimal(self.epsilon_left_after)} would fit."
        )

    @property
    def share_of_allotment_text(self) -> str:
        return percent(self.share_of_allotment)

    @property
    def share_used_text(self) -> str:
        return percent(self.share_used)

    @property
    def share_used_after_text(self) -> str:
        return percent(self.share_used_after)

    @property
    def mechanism_advice(self) -> str:
        """Which grid mechanism gives the tighter interval for the same share of the allotment."""
        alt = self.alternative
        if alt is None or self.ci95_halfwidth is None:
            return ""
        here = f"± {plain_number(self.ci95_halfwidth)}"
        there = f"± {plain_number(alt.ci95_halfwidth)}"
        other = (
            f"the {alt.mechanism} (epsilon {plain_decimal(alt.epsilon)}, delta {plain_decimal(alt.delta)}) costs "
            f"the same rho, uses {percent(alt.share_of_allotment)} of your allotment and gives {there}"
        )
        if alt.ci95_halfwidth < self.ci95_halfwidth:
            return f"Tighter for the same zCDP cost: {other}, against {here} here."
        return f"This is the tighter mechanism for its zCDP cost: {other}, against {here} here."


def plain_number(value: float) -> str:
    """A half-width to three significant digits, rounded up so that it never claims more accuracy."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    step = 10.0 ** (math.floor(math.log10(value)) - 2)
    rounded = math.ceil(value / step - 1e-9) * step
    decimals = max(0, 2 - math.floor(math.log10(rounded)))
    text = f"{rounded:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plain_decimal(value: Decimal) -> str:
    """An exact budget figure without trailing zeros or an exponent: 1.500000 -> 1.5, 10 -> 10."""
    return f"{value.normalize():f}" if value else "0"


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
