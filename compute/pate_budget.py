"""The privacy budget of a PATE job: the same rho charged to every member dataset of its ensemble.

Each row of each member dataset sits in exactly one teacher, so the vote histogram moves by one
teacher's vote when a row is added or removed, whichever dataset it is in: the job's zCDP ``rho`` is
every member's loss, and each member dataset is charged that rho (docs/PATE.md). A PATE job has no
purchase; its ledger rows name the dataset alone (``purchase`` null), one per member and move.

* Reserve: in the transaction that creates the job, every member dataset's row is locked with
  ``SELECT ... FOR UPDATE`` in primary-key order (so two jobs over overlapping ensembles always wait on
  each other in the same order and never deadlock, and two jobs can never spend the same budget), each
  is checked with the job added by the rule every purchase's job meets on it
  (:func:`compute.budget.dataset_takes`), and only when all of them can take it are the sums moved. The
  first that cannot is a 409 naming it, and nothing is written.
* Commit: in the releasing transaction, each member gets a ``commit`` row of the rho the run used (at
  most the reservation) and a ``refund`` row of the rest, if any.
* Refund: a failed or cancelled job gives every member its whole reservation back, once (the caller
  just moved the job out of an open status by a conditional UPDATE).

A zCDP charge of rho is stated on a dataset of delta cap ``delta`` as ``(epsilon(rho, delta), delta)``:
what rho-zCDP implies at that delta, with epsilon rounded up to the ledger's places. Basic composition
of those rows is a valid bound, and the zCDP account adds the rhos up.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from django.db.models import F

from compute.budget import dataset_after, dataset_takes
from compute.engines import accounting
from compute.models import Job
from config.exceptions import Conflict
from marketplace.models import EPSILON_QUANTUM, Dataset, LedgerEntry

Charge = tuple[Decimal, Decimal, Decimal]  # epsilon, delta, rho


def member_charge(dataset: Dataset, rho: Decimal) -> Charge:
    """What a charge of ``rho`` is on one member dataset: (epsilon at its delta cap, that delta, rho)."""
    if rho <= 0:
        return Decimal(0), Decimal(0), Decimal(0)
    delta = dataset.delta_cap
    eps = accounting.zcdp_epsilon(float(rho), float(delta))
    epsilon = Decimal(repr(eps)).quantize(Decimal("1e-12")).quantize(EPSILON_QUANTUM, rounding=ROUND_CEILING)
    return epsilon, delta, rho


def _move(dataset_id: int, charge: Charge, sign: int) -> None:
    epsilon, delta, rho = charge
    Dataset.objects.filter(pk=dataset_id).update(
        epsilon_used=F("epsilon_used") + sign * epsilon,
        delta_used=F("delta_used") + sign * delta,
        rho_used=F("rho_used") + sign * rho,
    )


def _row(job_id: int, dataset_id: int, kind: str, charge: Charge) -> LedgerEntry:
    epsilon, delta, rho = charge
    return LedgerEntry.objects.create(
        dataset_id=dataset_id, purchase=None, job_id=job_id, kind=kind, epsilon=epsilon, delta=delta, rho=rho
    )


def members_reserve(*, dataset_ids: list[int], rho: Decimal) -> dict[int, Charge]:
    """Reserve ``rho`` on every member dataset, or raise a 409 naming the first that cannot take it and
    change nothing. Call it inside the transaction that creates the job (then :func:`members_record`)."""
    locked = list(Dataset.objects.select_for_update().filter(pk__in=dataset_ids).order_by("pk"))
    charges: dict[int, Charge] = {}
    for dataset in locked:
        epsilon, delta, _ = charge = member_charge(dataset, rho)
        if not dataset_takes(dataset, epsilon=epsilon, delta=delta, rho=rho):
            raise Conflict(
                f"Not enough budget left on member dataset {dataset.pk} ({dataset.title}): the job asks every member "
                f"for rho {rho.normalize():f} (epsilon {epsilon.normalize():f} at its delta "
                f"{delta.normalize():f}), and this dataset's budget, across all its buyers, cannot take it. Ask "
                "fewer queries (max_queries) or larger noise.",
                code="dataset_budget_exhausted",
                extra={"dataset": dataset.pk, "dataset_title": dataset.title},
            )
        charges[dataset.pk] = charge
    for dataset_id, charge in charges.items():
        _move(dataset_id, charge, +1)
    return charges


def members_record(job: Job, charges: dict[int, Charge]) -> None:
    """The ``reserve`` rows of a job whose reservation :func:`members_reserve` just made."""
    for dataset_id, charge in sorted(charges.items()):
        _row(job.pk, dataset_id, LedgerEntry.Kind.RESERVE, charge)


def _reserved(job: Job) -> dict[int, Charge]:
    rows = LedgerEntry.objects.filter(job_id=job.pk, purchase__isnull=True, kind=LedgerEntry.Kind.RESERVE)
    return {row.dataset_id: (row.epsilon, row.delta, row.rho) for row in rows.order_by("dataset_id")}


def _lock(dataset_ids: list[int]) -> list[Dataset]:
    return list(Dataset.objects.select_for_update().filter(pk__in=dataset_ids).order_by("pk"))


def members_refund(job: Job) -> None:
    """Give every member dataset its reservation back, with a ``refund`` row each. Only the caller that
    just moved the job out of an open status may call it."""
    reserved = _reserved(job)
    _lock(list(reserved))
    for dataset_id, charge in reserved.items():
        _move(dataset_id, charge, -1)
        _row(job.pk, dataset_id, LedgerEntry.Kind.REFUND, charge)


def members_commit(job: Job, used_rho: Decimal) -> dict[str, object]:
    """Commit what the run used on every member (at most the reservation) and refund the rest; returns
    the receipt's privacy part: the job's rho and, per member, its charge and the dataset's guarantee
    after it. Call it in the releasing transaction, after the job's row is locked."""
    reserved = _reserved(job)
    used = min(used_rho, job.rho)
    members = []
    for dataset in _lock(list(reserved)):
        charge = reserved[dataset.pk]
        spent = member_charge(dataset, used)
        back = (charge[0] - spent[0], charge[1] - spent[1], charge[2] - spent[2])
        own = accounting.Loss(float(spent[0]), float(spent[1]), float(spent[2]))
        # Read before this job's commit row is written, which it adds itself.
        after = dataset_after(dataset, own)
        if any(back):
            _move(dataset.pk, back, -1)
            _row(job.pk, dataset.pk, LedgerEntry.Kind.REFUND, back)
        _row(job.pk, dataset.pk, LedgerEntry.Kind.COMMIT, spent)
        members.append(
            {
                "dataset": dataset.pk,
                "epsilon": f"{spent[0]:f}",
                "delta": f"{spent[1]:f}",
                "rho": f"{spent[2]:f}",
                "dataset_after": after,
            }
        )
    return {"rho_reserved": f"{job.rho:f}", "rho": f"{used:f}", "members": members}
