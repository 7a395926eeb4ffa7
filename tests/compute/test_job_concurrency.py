"""Concurrent job submissions on PostgreSQL can never overspend a purchase."""

from __future__ import annotations

import math
import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, connections

from compute.engines import accounting
from compute.models import Job
from compute.services import job_submit
from config.celery_app import app as celery_app
from config.exceptions import Conflict
from marketplace.models import Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def purged_dp_queue(settings):
    # The jobs go to a queue of this test's own on the real broker, emptied afterwards.
    settings.CLOAKROOM_DP_QUEUE = f"ctest-{uuid.uuid4().hex}"
    yield
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_delete(settings.CLOAKROOM_DP_QUEUE)


def _submit_at_once(buyer, purchase, asked: Decimal, n: int) -> list[str]:
    """``n`` threads, each with its own database connection, submit a sum at ``asked`` at once."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        limit = int(cursor.fetchone()[0])
    assert limit > n + 20, f"PostgreSQL allows {limit} connections; scripts/ensure_services.sh raises it to 300"
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            job_submit(
                buyer=buyer,
                purchase_id=purchase.pk,
                kind="query",
                query={"aggregate": "sum", "column": "age"},
                epsilon=str(asked),
                delta="0",
                idempotency_key=f"k{i}",
            )
            outcome = "accepted"
        except Conflict as exc:
            outcome = "409" if exc.code == "insufficient_budget" else f"other 409 {exc.code}"
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
            outcome = f"error {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(outcomes) == n
    assert outcomes.count("409") == n - outcomes.count("accepted"), sorted(set(outcomes))
    return outcomes


def _ledger_sums(purchase) -> tuple[Decimal, Decimal]:
    reserves = LedgerEntry.objects.filter(purchase=purchase, kind="reserve")
    return (
        sum((e.epsilon for e in reserves), Decimal(0)),
        sum((e.rho for e in reserves), Decimal(0)),
    )


def test_a_hundred_simultaneous_submissions_never_spend_more_than_a_pure_allotment(buyer, dp_dataset, purged_dp_queue):
    # A dataset without delta: basic composition is the only accountant, exactly.
    Dataset.objects.filter(pk=dp_dataset.pk).update(delta_cap=Decimal(0))
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("1"))
    assert purchase.delta == 0 and purchase.rho_cap == 0
    # Each asks 0.03: the hundred ask for 3.0 in total, three times the allotment of 1.0.
    asked = Decimal("0.03")
    accepted = _submit_at_once(buyer, purchase, asked, 100).count("accepted")
    assert accepted == 33  # floor(1.0 / 0.03): every job that fits was accepted, none more

    purchase.refresh_from_db()
    assert purchase.epsilon_used == asked * accepted <= purchase.epsilon
    reserved, _ = _ledger_sums(purchase)
    assert reserved == purchase.epsilon_used
    assert Job.objects.filter(purchase=purchase).count() == accepted
    assert LedgerEntry.objects.filter(purchase=purchase).exclude(kind="reserve").count() == 0
    assert Purchase.objects.get(pk=purchase.pk).epsilon - reserved == Decimal("0.01")


def test_two_hundred_simultaneous_submissions_never_exceed_the_cap_under_the_accountant(
    buyer, dp_dataset, purged_dp_queue
):
    """zCDP lets the purchase take more jobs than basic composition would, and no more than fit."""
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("1"))
    assert purchase.delta > 0 and purchase.rho_cap > 0
    asked = Decimal("0.03")
    accepted = _submit_at_once(buyer, purchase, asked, 200).count("accepted")

    job_rho = Job.objects.filter(purchase=purchase).first().rho
    assert job_rho == Decimal("0.00045")  # a pure 0.03 is charged 0.03**2 / 2
    # Basic composition fits 33; the rest were accepted because the rhos still fit the cap, and every
    # job that fitted was accepted, none more.
    assert accepted == int(purchase.rho_cap / job_rho) > 33
    purchase.refresh_from_db()
    reserved_eps, reserved_rho = _ledger_sums(purchase)
    assert (
        (purchase.epsilon_used, purchase.rho_used)
        == (reserved_eps, reserved_rho)
        == (
            asked * accepted,
            job_rho * accepted,
        )
    )
    assert purchase.rho_used <= purchase.rho_cap < purchase.rho_used + job_rho
    # Independently of the accountant: rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP
    # (Bun and Steinke, Proposition 1.3), a looser conversion than the library's; the library's own
    # answer is within the allotment.
    rho, delta = float(purchase.rho_used), float(purchase.delta)
    loose = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    tight = accounting.zcdp_epsilon(rho, delta)
    assert tight <= float(purchase.epsilon) < loose
    assert Job.objects.filter(purchase=purchase).count() == accepted
