"""The privacy budget of a purchase: reading the numbers a buyer sends, reserving, refunding, and the
append-only privacy ledger's rows. Every job kind spends through these functions and nothing else.

Three rules, each enforced in the database (docs/PRIVACY.md, docs/RELIABILITY.md):

* Reserve: ``Purchase.epsilon_used`` (and ``delta_used``) only moves by a conditional UPDATE that
  matches while ``used + asked <= allotment``, in the transaction that creates the job and its
  ``reserve`` ledger row. Concurrent submissions serialise on the purchase row; the losers match no
  row and get a 409 with nothing written.
* Commit: a job's ``commit`` row is written in the transaction that releases it (compute/lifecycle.py).
* Refund: written only by the transaction that moved the job out of an open status, so once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import F

from compute.models import Job
from config.exceptions import Conflict, ValidationFailed
from marketplace.models import EPSILON_QUANTUM, LedgerEntry, Purchase

DELTA_Q = Decimal("0.000000000001")
NOT_A_NUMBER = "Must be a number in plain decimal notation, such as 0.5 or 1e-5 (no underscores)."


def _decimal_text(value: Any) -> str:
    text = str(value).strip()
    if "_" in text or not text.isascii():
        raise ValueError("not plain decimal notation")
    return text


def _epsilon(value: Any, errors: dict[str, list[str]]) -> Decimal:
    try:
        eps = Decimal(_decimal_text(value))
    except (ArithmeticError, ValueError, TypeError):
        errors["epsilon"] = [NOT_A_NUMBER]
        return Decimal(0)
    if not eps.is_finite() or eps <= 0:
        errors["epsilon"] = ["Must be a finite number greater than 0."]
    elif eps != eps.quantize(EPSILON_QUANTUM):
        errors["epsilon"] = ["At most 6 decimal places."]
    return eps


def _delta(value: Any, errors: dict[str, list[str]]) -> Decimal:
    try:
        dlt = Decimal(_decimal_text(value if value is not None else 0))
    except (ArithmeticError, ValueError, TypeError):
        errors["delta"] = [NOT_A_NUMBER]
        return Decimal(0)
    if not dlt.is_finite() or dlt < 0 or dlt >= 1:
        errors["delta"] = ["Must be a finite number in [0, 1)."]
    elif dlt != dlt.quantize(DELTA_Q):
        errors["delta"] = ["At most 12 decimal places."]
    return dlt


def budget_numbers(epsilon: Any, delta: Any) -> tuple[Decimal, Decimal]:
    """Exact epsilon and delta from the request, refusing anything not finite or out of range.

    Only ASCII decimal notation is read (``0.5``, ``1e-5``). Python's Decimal also accepts digit
    separators and any script's digits, so ``"1_0"`` would be 10 and ``"١"`` would be 1: a buyer who
    meant something else must get a 400 naming the field, never a charge for a number they did not
    write.
    """
    errors: dict[str, list[str]] = {}
    eps = _epsilon(epsilon, errors)
    dlt = _delta(delta, errors)
    if errors:
        name, reasons = next(iter(errors.items()))
        raise ValidationFailed(f"{name}: {reasons[0]}", fields=errors)
    return eps, dlt


def budget_reserve(*, purchase: Purchase, epsilon: Decimal, delta: Decimal) -> None:
    """Move ``epsilon`` and ``delta`` from the purchase's remaining budget to its used budget, or raise
    a 409 ``insufficient_budget`` and change nothing. Call it inside the transaction that creates the
    job; the conditional UPDATE is what makes two concurrent reservations unable to overspend."""
    reserved = Purchase.objects.filter(
        pk=purchase.pk,
        epsilon_used__lte=F("epsilon") - epsilon,
        delta_used__lte=F("delta") - delta,
    ).update(epsilon_used=F("epsilon_used") + epsilon, delta_used=F("delta_used") + delta)
    if reserved:
        return
    current = Purchase.objects.get(pk=purchase.pk)
    eps_left = current.epsilon - current.epsilon_used
    delta_left = current.delta - current.delta_used
    raise Conflict(
        f"Not enough budget left on this purchase: the job asks for epsilon {epsilon.normalize():f}"
        + (f" and delta {delta.normalize():f}" if delta else "")
        + f"; epsilon {eps_left.normalize():f} and delta {delta_left.normalize():f} remain.",
        code="insufficient_budget",
        extra={"epsilon_remaining": f"{eps_left:f}", "delta_remaining": f"{delta_left:f}"},
    )


def ledger_row(job: Job, kind: str) -> LedgerEntry:
    """Append one privacy-ledger row for the whole of a job's epsilon and delta."""
    return LedgerEntry.objects.create(
        dataset_id=job.dataset_id,
        purchase_id=job.purchase_id,
        job_id=job.pk,
        kind=kind,
        epsilon=job.epsilon,
        delta=job.delta,
    )


def budget_refund(job: Job) -> None:
    """Give a job's reservation back to its purchase, with a ``refund`` row. Only the caller that just
    moved the job out of an open status (a conditional UPDATE that matched) may call it."""
    Purchase.objects.filter(pk=job.purchase_id).update(
        epsilon_used=F("epsilon_used") - job.epsilon, delta_used=F("delta_used") - job.delta
    )
    ledger_row(job, LedgerEntry.Kind.REFUND)
