"""The privacy budget of a purchase and of its dataset: reading the numbers a buyer sends, reserving,
refunding, and the append-only privacy ledger's rows. Every job kind spends through these functions
and nothing else.

A job's privacy loss is its ``(epsilon, delta)`` and its zCDP ``rho`` (compute/engines/accounting.py).
A purchase, and its dataset across all buyers, accept a job only while everything reserved on them,
with it, fits their ``(epsilon, delta)`` cap by basic composition (the epsilons and deltas add up) or
by zCDP (the rhos add up to at most the cap's ``rho_cap``). Rules, enforced in the database
(docs/PRIVACY.md, docs/RELIABILITY.md):

* Reserve: in the transaction that creates the job and its ``reserve`` ledger row, the purchase's row
  and then its dataset's are locked (``SELECT ... FOR UPDATE``; SQLite's transactions are IMMEDIATE),
  the sums are checked with the job added, and moved. Concurrent submissions serialise on the
  purchase's row; a job that does not fit gets a 409 with nothing written. A check constraint keeps
  every purchase within its cap by one composition or the other, whatever the code does.
* Commit: a job's ``commit`` row is written in the transaction that releases it (compute/lifecycle.py),
  with the purchase's and dataset's guarantee after it (:func:`budget_after_release`).
* Refund: written only by the transaction that moved the job out of an open status, so once.

Locks are always taken purchase first, then dataset, so two transactions never wait on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, Sum

from compute.engines import accounting
from compute.models import Job
from config.exceptions import Conflict, ValidationFailed
from marketplace.models import EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase

DELTA_Q = Decimal("0.000000000001")
# The ledger stores epsilon with 6 decimal places in 12 digits: anything this large could not be
# quantized (Decimal raises InvalidOperation on ".086E78"), and no allotment is this large.
EPSILON_LIMIT = Decimal(10) ** 6
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
    elif eps >= EPSILON_LIMIT:
        errors["epsilon"] = [f"Must be less than {EPSILON_LIMIT:,}."]
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


POOLED = "the purchases' guarantees added up"
Position = accounting.Position
position = accounting.position


def _loss(epsilon: Decimal, delta: Decimal, rho: Decimal) -> accounting.Loss:
    return accounting.Loss(float(epsilon), float(delta), float(rho))


def purchase_position(purchase: Purchase, extra: accounting.Loss = accounting.NONE) -> Position:
    """The purchase's position from its stored sums (reserved minus refunded), with ``extra`` added."""
    used = _loss(purchase.epsilon_used, purchase.delta_used, purchase.rho_used) + extra
    return position(cap_epsilon=purchase.epsilon, cap_delta=purchase.delta, used=used)


def pooled_position(
    dataset: Dataset, used: accounting.Loss, by_purchase: dict[int | None, accounting.Loss]
) -> Position:
    """The dataset's position across all buyers, from the sums of all its jobs (``used``) and each
    purchase's own (``by_purchase``).

    Three valid bounds, the best one wins: basic composition and zCDP over every job on the dataset,
    and the purchases' own guarantees added up (each purchase is within its allotment, and the
    allotments sold are within the dataset's caps, so buyers who pool their answers learn no more)."""
    own = position(cap_epsilon=dataset.epsilon_cap, cap_delta=dataset.delta_cap, used=used)
    if own.share <= 0.0:
        return own
    deltas = dict(Purchase.objects.filter(pk__in=list(by_purchase)).values_list("pk", "delta"))
    eps = delta = 0.0
    for pk, loss in by_purchase.items():
        bound = accounting.guarantee(loss, float(deltas.get(pk, 0)))
        eps, delta = eps + bound.epsilon, delta + bound.delta
    cap_e, cap_d = float(dataset.epsilon_cap), float(dataset.delta_cap)
    pooled = max(eps / cap_e, delta / cap_d if cap_d > 0 else (0.0 if delta == 0 else float("inf")))
    if pooled >= own.share:
        return own
    return Position(
        cap_epsilon=dataset.epsilon_cap,
        cap_delta=dataset.delta_cap,
        used=used,
        bound=accounting.Bound(eps, delta, POOLED),
        share=pooled,
        epsilon_left=own.epsilon_left,
    )


def dataset_position(
    dataset: Dataset, extra: accounting.Loss = accounting.NONE, purchase_id: int | None = None
) -> Position:
    """The dataset's position from the stored sums (reserved minus refunded), with ``extra`` added to
    purchase ``purchase_id`` (None: to the charges without a purchase)."""
    used = _loss(dataset.epsilon_used, dataset.delta_used, dataset.rho_used) + extra
    rows = list(
        Purchase.objects.filter(dataset_id=dataset.pk).values_list("pk", "epsilon_used", "delta_used", "rho_used")
    )
    by_purchase: dict[int | None, accounting.Loss] = {pk: _loss(e, d, r) for pk, e, d, r in rows}
    # What no purchase holds (PATE jobs of the ensembles the dataset is in, compute/pate_budget.py) counts
    # as one more buyer, under key None, whose own guarantee is basic composition of its charges.
    others = [
        total - sum((row[i] for row in rows), Decimal(0))
        for i, total in ((1, dataset.epsilon_used), (2, dataset.delta_used), (3, dataset.rho_used))
    ]
    if any(others):
        by_purchase[None] = _loss(*others)
    if purchase_id is not None or extra != accounting.NONE:
        by_purchase[purchase_id] = by_purchase.get(purchase_id, accounting.NONE) + extra
    return pooled_position(dataset, used, by_purchase)


@dataclass(frozen=True)
class Outlook:
    """What one more job would do to a purchase: its position before and after, and whether it fits
    (the reservation's own check, on the exact decimals)."""

    before: Position
    after: Position
    fits: bool

    @property
    def share(self) -> float:
        """How much of the allotment the job itself uses."""
        return max(self.after.share - self.before.share, 0.0)


def budget_outlook(*, purchase: Purchase, epsilon: Decimal, delta: Decimal, rho: Decimal) -> Outlook:
    """For estimates: the purchase with and without a job of this loss. Writes nothing."""
    fits = _purchase_takes(purchase, epsilon, delta, rho)
    return Outlook(
        before=purchase_position(purchase),
        after=purchase_position(purchase, _loss(epsilon, delta, rho)),
        fits=fits,
    )


def _within(
    epsilon: Decimal, delta: Decimal, rho: Decimal, *, cap_e: Decimal, cap_d: Decimal, rho_cap: Decimal
) -> bool:
    """The check constraint ``purchase_never_overspent``, exactly: basic composition or zCDP."""
    return (epsilon <= cap_e and delta <= cap_d) or rho <= rho_cap


def _purchase_takes(purchase: Purchase, epsilon: Decimal, delta: Decimal, rho: Decimal) -> bool:
    """Whether the purchase, with one more job of this loss, stays within its allotment: the rule of
    ``_within`` on its stored sums, the same for the estimate and the reservation."""
    return _within(
        purchase.epsilon_used + epsilon,
        purchase.delta_used + delta,
        purchase.rho_used + rho,
        cap_e=purchase.epsilon,
        cap_d=purchase.delta,
        rho_cap=purchase.rho_cap,
    )


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def _dataset_fits(d: Dataset, purchase_id: int | None, epsilon: Decimal, delta: Decimal, rho: Decimal) -> bool:
    """Whether the dataset, across all its buyers, can take the job: the exact decimal rule for basic
    composition and zCDP first (cheap, and what nearly every job meets), else the purchases' guarantees
    added up."""
    if _within(
        d.epsilon_used + epsilon,
        d.delta_used + delta,
        d.rho_used + rho,
        cap_e=d.epsilon_cap,
        cap_d=d.delta_cap,
        rho_cap=d.rho_cap,
    ):
        return True
    return dataset_position(d, _loss(epsilon, delta, rho), purchase_id).fits


def dataset_takes(dataset: Dataset, *, epsilon: Decimal, delta: Decimal, rho: Decimal) -> bool:
    """Whether the dataset, across all its buyers, can take a charge of this loss that no purchase holds
    (a PATE job's, compute/pate_budget.py): the rule every purchase's job meets on it. Call it with the
    dataset's row locked, in the transaction that moves the sums."""
    return _dataset_fits(dataset, None, epsilon, delta, rho)


def dataset_after(dataset: Dataset, own: accounting.Loss) -> dict[str, object]:
    """A receipt's ``dataset_after`` for a charge without a purchase (a PATE job's): the guarantee of
    everything released on the dataset, to all its buyers, ``own`` included. Call it in the releasing
    transaction with the dataset's row locked."""
    by_purchase = _committed_by_purchase(dataset.pk)
    by_purchase[None] = by_purchase.get(None, accounting.NONE) + own
    return _bound_fields(pooled_position(dataset, accounting.compose(by_purchase.values()), by_purchase))


def budget_reserve(*, purchase: Purchase, epsilon: Decimal, delta: Decimal, rho: Decimal) -> None:
    """Reserve a job's ``(epsilon, delta)`` and ``rho`` on its purchase and its dataset, or raise a 409
    ``insufficient_budget`` and change nothing. Call it inside the transaction that creates the job:
    the row locks are what make concurrent reservations unable to overspend."""
    p = Purchase.objects.select_for_update().get(pk=purchase.pk)
    d = Dataset.objects.select_for_update().get(pk=p.dataset_id)
    if not _purchase_takes(p, epsilon, delta, rho):
        now = purchase_position(p)
        raise Conflict(
            f"Not enough budget left on this purchase: the job asks for epsilon {_plain(epsilon)}"
            + (f" and delta {_plain(delta)}" if delta else "")
            + f" (rho {_plain(rho)}), and with it the purchase's jobs would no longer fit its "
            f"(epsilon {_plain(p.epsilon)}, delta {_plain(p.delta)}) allotment; {now.share:.1%} of it is used, "
            f"and one more job of at most epsilon {_plain(now.epsilon_left)} (delta 0) would fit.",
            code="insufficient_budget",
            extra={
                "epsilon_remaining": f"{now.epsilon_left:f}",
                "delta_remaining": f"{max(p.delta - p.delta_used, Decimal(0)):f}",
                "share_used": round(now.share, 6),
            },
        )
    if not _dataset_fits(d, p.pk, epsilon, delta, rho):
        raise Conflict(
            "This dataset's privacy budget, across all its buyers, cannot take this job: "
            f"{dataset_position(d).share:.1%} of it is used.",
            code="dataset_budget_exhausted",
        )
    moves = {
        "epsilon_used": F("epsilon_used") + epsilon,
        "delta_used": F("delta_used") + delta,
        "rho_used": F("rho_used") + rho,
    }
    Purchase.objects.filter(pk=p.pk).update(**moves)
    Dataset.objects.filter(pk=d.pk).update(**moves)


def ledger_row(job: Job, kind: str) -> LedgerEntry:
    """Append one privacy-ledger row for the whole of a job's epsilon, delta and rho."""
    return LedgerEntry.objects.create(
        dataset_id=job.dataset_id,
        purchase_id=job.purchase_id,
        job_id=job.pk,
        kind=kind,
        epsilon=job.epsilon,
        delta=job.delta,
        rho=job.rho,
    )


def budget_refund(job: Job) -> None:
    """Give a job's reservation back to its purchase and dataset, with a ``refund`` row. Only the caller
    that just moved the job out of an open status (a conditional UPDATE that matched) may call it."""
    Purchase.objects.select_for_update().filter(pk=job.purchase_id).first()
    Dataset.objects.select_for_update().filter(pk=job.dataset_id).first()
    moves = {
        "epsilon_used": F("epsilon_used") - job.epsilon,
        "delta_used": F("delta_used") - job.delta,
        "rho_used": F("rho_used") - job.rho,
    }
    Purchase.objects.filter(pk=job.purchase_id).update(**moves)
    Dataset.objects.filter(pk=job.dataset_id).update(**moves)
    ledger_row(job, LedgerEntry.Kind.REFUND)


def _committed_by_purchase(dataset_id: int) -> dict[int | None, accounting.Loss]:
    rows = (
        LedgerEntry.objects.filter(dataset_id=dataset_id, kind=LedgerEntry.Kind.COMMIT)
        .values("purchase_id")
        .annotate(e=Sum("epsilon"), d=Sum("delta"), r=Sum("rho"))
    )
    return {row["purchase_id"]: _loss(row["e"], row["d"], row["r"]) for row in rows}


def _bound_fields(pos: Position) -> dict[str, object]:
    return {
        "epsilon": round(pos.bound.epsilon, 6),
        "delta": pos.bound.delta,
        "composition": pos.bound.method,
        "share_used": round(pos.share, 6),
    }


def budget_after_release(job: Job) -> dict[str, object]:
    """What a receipt states of a release's privacy (docs/PRIVACY.md): its own epsilon, delta and rho,
    and the guarantee of everything released on its purchase and on its dataset, it included. Call it
    in the releasing transaction: it locks the purchase's and the dataset's rows (in that order), so
    two releases read each other in the order they commit."""
    purchase = Purchase.objects.select_for_update().get(pk=job.purchase_id)
    dataset = Dataset.objects.select_for_update().get(pk=job.dataset_id)
    own = _loss(job.epsilon, job.delta, job.rho)
    by_purchase = _committed_by_purchase(dataset.pk)
    by_purchase[purchase.pk] = by_purchase.get(purchase.pk, accounting.NONE) + own
    p_pos = position(cap_epsilon=purchase.epsilon, cap_delta=purchase.delta, used=by_purchase[purchase.pk])
    d_pos = pooled_position(dataset, accounting.compose(by_purchase.values()), by_purchase)
    return {
        "epsilon": f"{job.epsilon:f}",
        "delta": f"{job.delta:f}",
        "rho": f"{job.rho:f}",
        "purchase_after": _bound_fields(p_pos),
        "dataset_after": _bound_fields(d_pos),
    }
