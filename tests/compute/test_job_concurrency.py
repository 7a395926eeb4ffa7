"""Concurrent job submissions on PostgreSQL can never overspend a purchase."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, connections

from compute.models import Job
from compute.services import job_submit
from config.celery_app import app as celery_app
from config.exceptions import Conflict
from marketplace.models import LedgerEntry, Purchase
from marketplace.services import purchase_create

pytestmark = pytest.mark.django_db(transaction=True)

SUBMISSIONS = 100


@pytest.fixture
def purged_dp_queue(settings):
    # The jobs go to a queue of this test's own on the real broker, emptied afterwards.
    settings.CLOAKROOM_DP_QUEUE = f"ctest-{uuid.uuid4().hex}"
    yield
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_delete(settings.CLOAKROOM_DP_QUEUE)


def test_a_hundred_simultaneous_submissions_never_spend_more_than_the_allotment(buyer, dp_dataset, purged_dp_queue):
    assert connection.vendor == "postgresql", "this test needs PostgreSQL (set DATABASE_URL)"
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        limit = int(cursor.fetchone()[0])
    assert limit > SUBMISSIONS + 20, (
        f"PostgreSQL allows {limit} connections; scripts/ensure_services.sh raises it to 300"
    )
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("1"))
    # Each asks 0.03: the hundred ask for 3.0 in total, three times the allotment of 1.0.
    asked = Decimal("0.03")
    barrier = threading.Barrier(SUBMISSIONS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        try:
            barrier.wait(timeout=30)
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

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(SUBMISSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    accepted = outcomes.count("accepted")
    assert outcomes.count("409") == SUBMISSIONS - accepted, sorted(set(outcomes))
    assert accepted == 33  # floor(1.0 / 0.03): every job that fits was accepted, none more
    purchase.refresh_from_db()
    assert purchase.epsilon_used == asked * accepted <= purchase.epsilon
    reserved = sum((e.epsilon for e in LedgerEntry.objects.filter(purchase=purchase, kind="reserve")), Decimal(0))
    assert reserved == purchase.epsilon_used
    assert Job.objects.filter(purchase=purchase).count() == accepted
    assert LedgerEntry.objects.filter(purchase=purchase).exclude(kind="reserve").count() == 0
    assert Purchase.objects.get(pk=purchase.pk).epsilon - reserved == Decimal("0.01")
