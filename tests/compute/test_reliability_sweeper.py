"""Reliability (docs/RELIABILITY.md) in one process: what the submission, the heartbeat and the sweeper
do when the broker refuses a task, a worker stops beating, or deliveries keep being dropped. The same
with real processes is in tests/integration: test_reliability_broker_outage, test_reliability_worker_crash
and test_reliability_deliveries."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from compute import services
from compute.kinds.dp_query import DpQuery
from compute.models import Job
from compute.tasks import dp_job_run_task
from config.celery_app import app as celery_app
from marketplace.models import LedgerEntry, Purchase

pytestmark = pytest.mark.django_db


def submit(api, purchase, epsilon="0.5"):
    body = {"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": epsilon}
    return api.post("/api/v1/jobs/", body, format="json")


def ledger_kinds(job_id):
    return sorted(LedgerEntry.objects.filter(job_id=job_id).values_list("kind", flat=True))


def record_sends(monkeypatch) -> list[int]:
    """The tasks sent from now on, recorded instead of published."""
    calls: list[int] = []
    monkeypatch.setattr(DpQuery, "send", lambda self, job_id: calls.append(job_id))
    return calls


@pytest.fixture
def queue_length(monkeypatch):
    """What the broker says waits in each queue (0: nothing, the job's message is gone)."""
    lengths = {"value": 0}
    monkeypatch.setattr(services.QueueLengths, "ask", staticmethod(lambda queue: lengths["value"]))
    return lengths


def age(job_id, **seconds_ago):
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(**{field: now - timedelta(seconds=s) for field, s in seconds_ago.items()})


def test_a_submission_the_broker_refuses_is_accepted_and_the_sweeper_sends_it(
    api, purchase, monkeypatch, django_capture_on_commit_callbacks, queue_length
):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(dp_job_run_task, "apply_async", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, purchase)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.status, job.sends, job.sent_at) == ("queued", 0, None)
    assert ledger_kinds(job.pk) == ["reserve"]
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == Decimal("0.5")

    # While the broker still refuses, the sweeper leaves the job as it is.
    age(job.pk, created_at=60)
    assert services.jobs_sweep()["requeued"] == 0
    assert Job.objects.get(pk=job.pk).sends == 0
    # Once it accepts, the next sweep sends the job.
    sent = record_sends(monkeypatch)
    assert services.jobs_sweep()["requeued"] == 1
    assert sent == [job.pk]
    job.refresh_from_db()
    assert job.sends == 1 and job.sent_at is not None
    # ... and the one after that does not send it again while it waits its turn.
    assert services.jobs_sweep()["requeued"] == 0
    assert services.job_run(job_id=job.pk) == "released"
    assert ledger_kinds(job.pk) == ["commit", "reserve"]


def test_a_job_just_submitted_is_left_to_its_own_send(api, purchase, monkeypatch, queue_length):
    sent = record_sends(monkeypatch)
    job_id = submit(api, purchase).json()["id"]  # on_commit never runs here: the job is stored, unsent
    assert services.jobs_sweep()["requeued"] == 0
    assert sent == []
    age(job_id, created_at=services.SEND_GRACE.total_seconds() + 1)
    assert services.jobs_sweep()["requeued"] == 1
    assert sent == [job_id]


def test_a_queued_job_is_sent_again_while_its_queue_is_empty_and_failed_after_the_last_delivery(
    api, purchase, monkeypatch, settings, queue_length
):
    settings.CLOAKROOM_JOB_MAX_DELIVERIES = 3
    sent = record_sends(monkeypatch)
    job_id = submit(api, purchase).json()["id"]
    age(job_id, created_at=600)
    assert services.jobs_sweep()["requeued"] == 1  # the first send
    redeliver = settings.CLOAKROOM_JOB_REDELIVER_SECONDS
    # Not started within the redelivery wait, but its message still waits in the queue: no re-send.
    queue_length["value"] = 4
    age(job_id, sent_at=redeliver + 1)
    assert services.jobs_sweep() == {"requeued": 0, "failed": 0, "key_wait_expired": 0}
    # The queue is empty: the message was lost or dropped. Sent again, twice, then failed.
    queue_length["value"] = 0
    assert services.jobs_sweep()["requeued"] == 1
    age(job_id, sent_at=redeliver - 5)
    assert services.jobs_sweep()["requeued"] == 0  # not before the wait is over
    age(job_id, sent_at=redeliver + 1)
    assert services.jobs_sweep()["requeued"] == 1
    assert Job.objects.get(pk=job_id).sends == 3
    age(job_id, sent_at=redeliver + 1)
    assert services.jobs_sweep() == {"requeued": 0, "failed": 1, "key_wait_expired": 0}
    assert sent == [job_id] * 3
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed" and "sent to the workers 3 times" in job.error and "refunded" in job.error
    assert ledger_kinds(job_id) == ["refund", "reserve"]
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == 0
    assert services.jobs_sweep()["requeued"] == 0


def test_when_the_broker_cannot_say_what_waits_nothing_is_sent_again_or_failed(
    api, purchase, monkeypatch, settings, queue_length
):
    settings.CLOAKROOM_JOB_MAX_DELIVERIES = 1
    sent = record_sends(monkeypatch)
    job_id = submit(api, purchase).json()["id"]
    Job.objects.filter(pk=job_id).update(sends=1)
    age(job_id, created_at=600, sent_at=600)
    queue_length["value"] = None
    assert services.jobs_sweep() == {"requeued": 0, "failed": 0, "key_wait_expired": 0}
    assert sent == [] and Job.objects.get(pk=job_id).status == "queued"


def test_a_running_job_whose_heartbeat_stopped_is_back_in_the_queue_long_before_its_lease(
    api, purchase, monkeypatch, settings, queue_length
):
    beat = settings.CLOAKROOM_JOB_HEARTBEAT_SECONDS
    assert settings.CLOAKROOM_JOB_LEASE_SECONDS > 10 * beat
    ids = [submit(api, purchase, epsilon=e).json()["id"] for e in ("0.1", "0.2", "0.3")]
    dead, alive, he_style = ids
    now = timezone.now()
    for job_id, heartbeat in ((dead, now - timedelta(seconds=4 * beat)), (alive, now), (he_style, None)):
        Job.objects.filter(pk=job_id).update(
            status="running",
            claim=f"c{job_id}",
            attempts=1,
            started_at=now - timedelta(minutes=2),
            heartbeat_at=heartbeat,
        )
    sent = record_sends(monkeypatch)
    assert services.jobs_sweep()["requeued"] == 1
    assert sent == [dead]
    job = Job.objects.get(pk=dead)
    assert (job.status, job.claim, job.heartbeat_at) == ("queued", "", None)
    # The dead worker's claim can no longer release anything; the next worker's can, once.
    assert not Job.objects.filter(pk=dead, status="running", claim=f"c{dead}").exists()
    assert services.job_run(job_id=dead) == "released"
    assert ledger_kinds(dead) == ["commit", "reserve"]
    # A live heartbeat, and a job without one (HE: the lease alone), are left running.
    assert Job.objects.get(pk=alive).status == "running"
    assert Job.objects.get(pk=he_style).status == "running"


def test_a_job_whose_worker_died_on_its_last_attempt_is_failed_and_refunded(api, purchase, settings, monkeypatch):
    job_id = submit(api, purchase).json()["id"]
    Job.objects.filter(pk=job_id).update(
        status="running",
        claim="dead",
        attempts=settings.CLOAKROOM_JOB_MAX_ATTEMPTS,
        started_at=timezone.now(),
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    sent = record_sends(monkeypatch)
    assert services.jobs_sweep() == {"requeued": 0, "failed": 1, "key_wait_expired": 0}
    assert sent == []
    assert ledger_kinds(job_id) == ["refund", "reserve"]


def test_the_beat_schedule_drops_a_sweep_that_waited_past_the_next_and_publishing_is_bounded(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-stuck-jobs"]
    assert entry["task"] == "compute.sweep_jobs"
    assert entry["options"]["expires"] == entry["schedule"]
    policy = celery_app.conf.task_publish_retry_policy
    assert policy["max_retries"] <= 1 and policy["interval_start"] == 0
    if settings.CELERY_BROKER_URL.startswith("redis"):
        options = celery_app.conf.broker_transport_options
        assert 0 < options["socket_timeout"] <= 5 and 0 < options["socket_connect_timeout"] <= 5


@pytest.mark.django_db(transaction=True)
def test_a_running_job_beats_its_heartbeat_until_it_is_released(api, purchase, settings, monkeypatch):
    settings.CLOAKROOM_JOB_HEARTBEAT_SECONDS = 0.2
    settings.CLOAKROOM_FAULT_JOB_DELAY_SECONDS = 1
    assert record_sends(monkeypatch) == []
    job_id = submit(api, purchase).json()["id"]
    started = time.monotonic()
    assert services.job_run(job_id=job_id) == "released"
    assert time.monotonic() - started >= 1
    job = Job.objects.get(pk=job_id)
    # Beaten during the second the job was slow, after the claim set the first value.
    assert job.heartbeat_at - job.started_at >= timedelta(seconds=0.6)
    last = job.heartbeat_at
    time.sleep(0.5)
    assert Job.objects.get(pk=job_id).heartbeat_at == last  # the thread stopped with the job
