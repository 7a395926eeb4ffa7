"""Reads for an owner's dashboard: what each of their datasets earned, and how its budget and jobs move.

A selector of compute, not of the marketplace, because it counts jobs: compute builds on the
marketplace, so the marketplace never reads compute's models.

The share of a dataset's budget used is the accountant's (compute/engines/accounting.py), with the
meaning of :func:`compute.budget.pooled_position`: the best of basic composition and zCDP over all the
dataset's releases, and the purchases' own guarantees added up. :func:`pooled_usage` computes it from
sums already read, so that a chart of a dataset's history costs no query per point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from accounts.models import User
from compute.budget import POOLED
from compute.engines import accounting
from compute.models import Job
from marketplace import charts
from marketplace.models import Dataset, LedgerEntry, Purchase

ZERO = Decimal(0)


@dataclass(frozen=True)
class Commit:
    """One commit row of the privacy ledger: a released job's charge to its purchase."""

    when: datetime
    purchase_id: int
    epsilon: Decimal
    delta: Decimal
    rho: Decimal


@dataclass(frozen=True)
class DatasetActivity:
    """What an owner may see of a dataset's use: money, buyers, budget and job counts. Never a
    released value: those belong to the buyers who paid for them."""

    dataset: Dataset
    earnings: Decimal
    buyers: int
    purchases: int
    epsilon_committed: Decimal
    epsilon_held: Decimal
    jobs_by_status: dict[str, int]
    # (status, label, count) for every job status, in the order a job moves through them.
    job_counts: list[tuple[str, str, int]]
    # The commit rows of the privacy ledger, oldest first.
    commits: list[Commit]
    # Each purchase's delta: the delta of its allotment, at which its own guarantee is stated.
    deltas: dict[int, Decimal]
    # The share used by released answers and open jobs' reservations together: what a new job must fit beside.
    reserved: charts.Usage

    @property
    def jobs_total(self) -> int:
        return sum(self.jobs_by_status.values())

    @property
    def jobs_awaiting_key(self) -> int:
        return self.jobs_by_status.get("awaiting_key", 0)


# A purchase's ledger sums: (epsilon, delta, rho).
Sums = tuple[Decimal, Decimal, Decimal]
NO_SUMS: Sums = (ZERO, ZERO, ZERO)


def loss_of(sums: Sums) -> accounting.Loss:
    """Ledger sums as the accountant's loss."""
    return accounting.Loss(float(sums[0]), float(sums[1]), float(sums[2]))


def _guarantee_share(*, cap_epsilon: Decimal, cap_delta: Decimal, epsilon: float, delta: float) -> float:
    """The share of a ``(cap_epsilon, cap_delta)`` cap that an ``(epsilon, delta)`` guarantee uses:
    the larger of the epsilon's and the delta's shares."""
    e, d = float(cap_epsilon), float(cap_delta)
    return max(epsilon / e, delta / d if d > 0 else (0.0 if delta == 0 else math.inf))


def pooled_usage(
    *,
    cap_epsilon: Decimal,
    cap_delta: Decimal,
    used: accounting.Loss,
    by_purchase: dict[int, accounting.Loss],
    deltas: dict[int, Decimal],
) -> charts.Usage:
    """The share of a dataset's ``(cap_epsilon, cap_delta)`` that releases of loss ``used`` in all, and
    ``by_purchase`` on each purchase (whose allotment's delta is in ``deltas``), use together, and the
    guarantee behind it: what :func:`compute.budget.pooled_position` says of the same sums, without its
    query and its search for the epsilon left (tests/compute/test_dataset_share.py holds them equal)."""
    e, d = float(cap_epsilon), float(cap_delta)
    own = charts.Usage(accounting.share(used, e, d), accounting.guarantee(used, d))
    if own.share <= 0.0:
        return own
    eps = delta = 0.0
    for pk, loss in by_purchase.items():
        bound = accounting.guarantee(loss, float(deltas.get(pk, ZERO)))
        eps, delta = eps + bound.epsilon, delta + bound.delta
    pooled = _guarantee_share(cap_epsilon=cap_epsilon, cap_delta=cap_delta, epsilon=eps, delta=delta)
    if pooled >= own.share:
        return own
    return charts.Usage(pooled, accounting.Bound(eps, delta, POOLED))


def dataset_usage(dataset: Dataset, by_purchase: dict[int, Sums], deltas: dict[int, Decimal]) -> charts.Usage:
    """:func:`pooled_usage` of a dataset whose purchases' ledger sums are ``by_purchase``."""
    rows = by_purchase.values()
    total: Sums = (sum((s[0] for s in rows), ZERO), sum((s[1] for s in rows), ZERO), sum((s[2] for s in rows), ZERO))
    return pooled_usage(
        cap_epsilon=dataset.epsilon_cap,
        cap_delta=dataset.delta_cap,
        used=loss_of(total),
        by_purchase={pk: loss_of(s) for pk, s in by_purchase.items()},
        deltas=deltas,
    )


def ledger_sums(dataset_ids: list[int]) -> dict[int, dict[int, dict[str, Sums]]]:
    """The privacy ledger's sums by dataset, purchase and kind, in one query."""
    out: dict[int, dict[int, dict[str, Sums]]] = {}
    for row in (
        LedgerEntry.objects.filter(dataset_id__in=dataset_ids)
        .order_by()
        .values("dataset_id", "purchase_id", "kind")
        .annotate(e=Sum("epsilon"), d=Sum("delta"), r=Sum("rho"))
    ):
        sums = (row["e"] or ZERO, row["d"] or ZERO, row["r"] or ZERO)
        out.setdefault(row["dataset_id"], {}).setdefault(row["purchase_id"], {})[row["kind"]] = sums
    return out


def held_or_spent(kinds: dict[str, Sums]) -> Sums:
    """What a purchase's released and open jobs hold together: reserved minus refunded."""
    reserved, refunded = kinds.get(LedgerEntry.Kind.RESERVE, NO_SUMS), kinds.get(LedgerEntry.Kind.REFUND, NO_SUMS)
    return (reserved[0] - refunded[0], reserved[1] - refunded[1], reserved[2] - refunded[2])


def budget_steps(activity: DatasetActivity, indices: list[int]) -> dict[int, charts.Step]:
    """The dataset's usage just after each of the commits at ``indices``: the exact sums are walked
    commit by commit (cheap), and the accountant runs only at the indices asked for, so a chart of a
    dataset with thousands of commits costs what its thinned points cost."""
    wanted = set(indices)
    sums: dict[int, Sums] = {}
    committed = ZERO
    out: dict[int, charts.Step] = {}
    for i, c in enumerate(activity.commits):
        e, d, r = sums.get(c.purchase_id, NO_SUMS)
        sums[c.purchase_id] = (e + c.epsilon, d + c.delta, r + c.rho)
        committed += c.epsilon
        if i in wanted:
            usage = dataset_usage(activity.dataset, sums, activity.deltas)
            out[i] = charts.Step(when=c.when, committed=committed, usage=usage)
    return out


def _kind_total(ledger: dict[int, dict[str, Sums]], kind: str) -> Decimal:
    return sum((kinds[kind][0] for kinds in ledger.values() if kind in kinds), ZERO)


def dataset_activity(*, owner: User, datasets: list[Dataset]) -> list[DatasetActivity]:
    """Activity of the owner's ``datasets`` (others' are skipped), in their order, in five queries."""
    mine = [d for d in datasets if d.owner_id == owner.pk]
    ids = [d.pk for d in mine]
    sales = {
        row["dataset_id"]: row
        for row in Purchase.objects.filter(dataset_id__in=ids)
        .order_by()
        .values("dataset_id")
        .annotate(earnings=Sum("price"), buyers=Count("buyer_id", distinct=True), purchases=Count("id"))
    }
    deltas: dict[int, dict[int, Decimal]] = {}
    for dataset_id, pk, delta in Purchase.objects.filter(dataset_id__in=ids).values_list("dataset_id", "pk", "delta"):
        deltas.setdefault(dataset_id, {})[pk] = delta
    ledger = ledger_sums(ids)
    jobs: dict[int, dict[str, int]] = {}
    for row in Job.objects.filter(dataset_id__in=ids).order_by().values("dataset_id", "status").annotate(n=Count("id")):
        jobs.setdefault(row["dataset_id"], {})[row["status"]] = row["n"]
    commits: dict[int, list[Commit]] = {}
    for dataset_id, at, purchase_id, epsilon, delta, rho in (
        LedgerEntry.objects.filter(dataset_id__in=ids, kind=LedgerEntry.Kind.COMMIT)
        .order_by("created_at", "id")
        .values_list("dataset_id", "created_at", "purchase_id", "epsilon", "delta", "rho")
    ):
        commits.setdefault(dataset_id, []).append(Commit(at, purchase_id, epsilon, delta, rho))

    out = []
    for d in mine:
        sold = sales.get(d.pk, {})
        rows = ledger.get(d.pk, {})
        committed = _kind_total(rows, LedgerEntry.Kind.COMMIT)
        held = _kind_total(rows, LedgerEntry.Kind.RESERVE) - committed - _kind_total(rows, LedgerEntry.Kind.REFUND)
        out.append(
            DatasetActivity(
                dataset=d,
                earnings=sold.get("earnings") or Decimal("0.00"),
                buyers=sold.get("buyers", 0),
                purchases=sold.get("purchases", 0),
                epsilon_committed=committed,
                epsilon_held=held,
                jobs_by_status=jobs.get(d.pk, {}),
                job_counts=[(value, label, jobs.get(d.pk, {}).get(value, 0)) for value, label in Job.Status.choices],
                commits=commits.get(d.pk, []),
                deltas=deltas.get(d.pk, {}),
                reserved=dataset_usage(
                    d, {pk: held_or_spent(kinds) for pk, kinds in rows.items()}, deltas.get(d.pk, {})
                ),
            )
        )
    return out
