"""Migrations marketplace 0005 and compute 0005 convert an existing ledger and keep its meaning.

The database is taken back to the migrations before tight accounting, a ledger is written there the
way the old code wrote it (reserve, commit, refund; pure releases and releases with delta > 0; two
buyers on one dataset), and the migrations are run forward. Every old row must get a rho no smaller
than its release's, every purchase and dataset its rho cap and the sums of its rows, and the new
check constraint must hold, with basic composition still true for the old rows.

A transactional test (the migrations run outside a test transaction); the fixture migrates back to
the latest migrations whatever happens, before pytest-django empties the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from compute.engines import accounting, dp

BEFORE = [("marketplace", "0004_dataset_suspended_by_owner"), ("compute", "0004_job_deliveries_heartbeat")]
AFTER = [("marketplace", "0005_tight_accounting"), ("compute", "0005_job_rho")]

DELTA = Decimal("0.00001")
COLUMN = dp.ColumnMeta("age", "numeric", 0.0, 100.0)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()  # the graph as the database now stands
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def migrations_back(transactional_db):
    """The database at the migrations before tight accounting; back to the latest ones afterwards."""
    apps = _migrate(BEFORE)
    yield apps
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@dataclass(frozen=True)
class OldJob:
    """A job as the old code left it: its release's (epsilon, delta), its status and ledger rows."""

    purchase: str
    aggregate: str
    epsilon: str
    delta: str
    status: str
    rows: tuple[str, ...]


OLD_JOBS = (
    OldJob("first", "count", "1.5", "0", "released", ("reserve", "commit")),
    OldJob("first", "mean", "2", "0.000002", "released", ("reserve", "commit")),
    OldJob("first", "sum", "0.7", "0", "failed", ("reserve", "refund")),
    OldJob("first", "variance", "1", "0.000001", "failed", ("reserve", "refund")),
    OldJob("first", "mean", "0.25", "0", "queued", ("reserve",)),
    OldJob("second", "sum", "3", "0.000003", "released", ("reserve", "commit")),
    OldJob("second", "variance", "0.9", "0", "released", ("reserve", "commit")),
)


def _query(aggregate: str) -> dict:
    return {"aggregate": aggregate} if aggregate == "count" else {"aggregate": aggregate, "column": COLUMN.name}


def _old_world(apps):
    """Owner, two buyers, one dataset (delta_cap 1e-5), two purchases, their jobs and ledger rows,
    written through the historical models; each purchase's epsilon_used and delta_used as the old
    code kept them (reserved minus refunded)."""
    User = apps.get_model("accounts", "User")
    Dataset = apps.get_model("marketplace", "Dataset")
    Purchase = apps.get_model("marketplace", "Purchase")
    LedgerEntry = apps.get_model("marketplace", "LedgerEntry")
    Job = apps.get_model("compute", "Job")
    owner = User.objects.create(username="owner", is_owner=True)
    dataset = Dataset.objects.create(
        owner=owner,
        slug="old-ledger",
        title="Old ledger",
        description="",
        mode="dp",
        status="published",
        epsilon_cap=Decimal("20"),
        delta_cap=DELTA,
        epsilon_sold=Decimal("15"),
        price_per_epsilon=Decimal("1"),
        file_path="",
        file_format="parquet",
        file_sha256="",
        bundle_error="",
        bundle_id="",
        bundle_status="",
        key_custody="",
    )
    purchases = {
        name: Purchase.objects.create(
            buyer=User.objects.create(username=f"buyer-{name}", is_buyer=True),
            dataset=dataset,
            epsilon=Decimal(eps),
            delta=DELTA,
            price=Decimal(eps),
        )
        for name, eps in (("first", "10"), ("second", "5"))
    }
    for i, old in enumerate(OLD_JOBS):
        purchase = purchases[old.purchase]
        eps, dlt = Decimal(old.epsilon), Decimal(old.delta)
        job = Job.objects.create(
            kind="query",
            spec={"query": _query(old.aggregate)},
            spec_hash=f"{i:064x}",
            epsilon=eps,
            delta=dlt,
            dataset_version=1,
            status=old.status,
            buyer=purchase.buyer,
            dataset=dataset,
            purchase=purchase,
        )
        for kind in old.rows:
            LedgerEntry.objects.create(
                job_id=job.pk, kind=kind, epsilon=eps, delta=dlt, dataset=dataset, purchase=purchase
            )
        held = "refund" not in old.rows
        if held:
            Purchase.objects.filter(pk=purchase.pk).update(
                epsilon_used=purchase.epsilon_used + eps, delta_used=purchase.delta_used + dlt
            )
            purchase.refresh_from_db()
    return dataset.pk, {name: p.pk for name, p in purchases.items()}


def _charge(epsilon: Decimal, delta: Decimal) -> Decimal:
    return accounting.rho_charge(accounting.upper_bound_rho(float(epsilon), float(delta)))


def _expected_sums(purchase: str | None) -> dict[str, Decimal]:
    """Reserved minus refunded, from the list of old jobs (a refunded job's reserve and refund cancel)."""
    held = [j for j in OLD_JOBS if "refund" not in j.rows and purchase in (None, j.purchase)]
    return {
        "epsilon_used": sum((Decimal(j.epsilon) for j in held), Decimal(0)),
        "delta_used": sum((Decimal(j.delta) for j in held), Decimal(0)),
        "rho_used": sum((_charge(Decimal(j.epsilon), Decimal(j.delta)) for j in held), Decimal(0)),
    }


def test_the_migrations_convert_an_old_ledger_and_keep_its_meaning(migrations_back):
    dataset_pk, purchase_pks = _old_world(migrations_back)

    apps = _migrate(AFTER)
    Dataset = apps.get_model("marketplace", "Dataset")
    Purchase = apps.get_model("marketplace", "Purchase")
    LedgerEntry = apps.get_model("marketplace", "LedgerEntry")
    Job = apps.get_model("compute", "Job")

    # Every ledger row and every job: the upper bound of its release's rho, rounded up.
    rows = list(LedgerEntry.objects.all())
    assert len(rows) == sum(len(j.rows) for j in OLD_JOBS)
    for row in rows:
        assert row.rho == _charge(row.epsilon, row.delta) > 0, (row.kind, row.epsilon, row.delta)
    jobs = list(Job.objects.order_by("pk"))
    assert len(jobs) == len(OLD_JOBS)
    for job, old in zip(jobs, OLD_JOBS, strict=True):
        assert job.rho == _charge(job.epsilon, job.delta) > 0
        # No smaller than the rho of what the planner releases for that query at that (epsilon, delta).
        query = dp.parse_query(job.spec["query"], {COLUMN.name: COLUMN})
        assert dp.plan({COLUMN.name: COLUMN}, query, float(old.epsilon), float(old.delta)).rho <= float(job.rho)
        assert {r.rho for r in rows if r.job_id == job.pk} == {job.rho}

    # Caps and the sums of the rows.
    dataset = Dataset.objects.get(pk=dataset_pk)
    assert dataset.rho_cap == accounting.rho_allowance(dataset.epsilon_cap, dataset.delta_cap) > 0
    assert {f: getattr(dataset, f) for f in _expected_sums(None)} == _expected_sums(None)
    for name, pk in purchase_pks.items():
        purchase = Purchase.objects.get(pk=pk)
        assert purchase.rho_cap == accounting.rho_allowance(purchase.epsilon, purchase.delta) > 0
        assert {f: getattr(purchase, f) for f in _expected_sums(name)} == _expected_sums(name)
        # The meaning is kept: basic composition still holds for the old rows, so does the new check
        # constraint, and the guarantee reported is no weaker than basic composition's.
        assert purchase.epsilon_used <= purchase.epsilon and purchase.delta_used <= purchase.delta
        within_basic = purchase.epsilon_used <= purchase.epsilon and purchase.delta_used <= purchase.delta
        assert within_basic or purchase.rho_used <= purchase.rho_cap
        used = accounting.Loss(float(purchase.epsilon_used), float(purchase.delta_used), float(purchase.rho_used))
        assert accounting.fits(used, float(purchase.epsilon), float(purchase.delta))
        assert accounting.guarantee(used, float(purchase.delta)).epsilon <= float(purchase.epsilon_used)
    assert dataset.epsilon_used <= dataset.epsilon_cap and dataset.delta_used <= dataset.delta_cap
    assert dataset.epsilon_used == sum(Purchase.objects.get(pk=pk).epsilon_used for pk in purchase_pks.values())

    # The new constraint is in force: over basic composition's cap is allowed while rho is within
    # the rho cap, and refused when both are over.
    first = Purchase.objects.get(pk=purchase_pks["first"])
    Purchase.objects.filter(pk=first.pk).update(epsilon_used=first.epsilon + 1)
    with pytest.raises(IntegrityError, match="purchase_never_overspent"), transaction.atomic():
        Purchase.objects.filter(pk=first.pk).update(rho_used=first.rho_cap + Decimal("0.000000000001"))
    with pytest.raises(IntegrityError, match="purchase_used_not_negative"), transaction.atomic():
        Purchase.objects.filter(pk=first.pk).update(rho_used=Decimal("-0.000000000001"))
