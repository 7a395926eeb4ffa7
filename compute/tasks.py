"""Celery tasks of the compute app: thin wrappers around the services. DP jobs run on the dp queue,
HE jobs and their parts on the he queue, escrowed-key releases on the keys queue; a heartbeat task
lets the demo and the tests see that a worker is alive."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from compute.models import WorkerHeartbeat


@shared_task(name="compute.heartbeat", acks_late=True)
def heartbeat(token: str) -> None:
    """Record that a worker picked up ``token``. Idempotent: a repeated delivery updates one row."""
    WorkerHeartbeat.objects.update_or_create(token=token, defaults={"seen_at": timezone.now()})


@shared_task(name="compute.run_dp_job", acks_late=True, reject_on_worker_lost=True)
def run_dp_job(job_id: int) -> str:
    """Run a DP job. Safe to deliver twice: the service claims the job first and skips it when it
    is done, cancelled or held by another worker, so one job is charged and released once.

    ``acks_late`` with ``reject_on_worker_lost`` puts the message back when the worker process dies
    mid-job. While the job runs, a thread beats its heartbeat; once the beats stop (the worker was
    killed, or lost its machine) the sweeper puts the job back in the queue within about a minute
    (docs/RELIABILITY.md).
    """
    from compute.services import job_run

    return job_run(job_id=job_id)


@shared_task(name="compute.sweep_jobs")
def sweep_jobs() -> dict:
    """Run by Celery beat every CLOAKROOM_SWEEP_SECONDS (on the default queue; a sweep that waited past
    the next is dropped): send jobs the broker missed, re-queue dead workers' jobs, and fail and refund
    jobs that cannot run (compute.services.jobs_sweep)."""
    from compute.services import jobs_sweep

    return jobs_sweep()


@shared_task(name="compute.run_he_job", acks_late=True, reject_on_worker_lost=True)
def run_he_job(job_id: int) -> str:
    """Claim an HE job and queue its parts (queue ``he``). Safe to deliver twice, like run_dp_job."""
    from compute.he_services import he_job_start

    return he_job_start(job_id=job_id)


@shared_task(name="compute.run_he_part", acks_late=True, reject_on_worker_lost=True)
def run_he_part(job_id: int, claim: str, index: int) -> str:
    """Aggregate one part of an HE job's ciphertexts under encryption (queue ``he``).

    The TenSEAL context is loaded here, in the worker's child process, after the fork."""
    from compute.he_services import he_part_run

    return he_part_run(job_id=job_id, claim=claim, index=index)


@shared_task(name="compute.release_with_escrow", acks_late=True, reject_on_worker_lost=True)
def release_with_escrow(job_id: int) -> str:
    """Release an HE job with its dataset's escrowed key (queue ``keys``: the escrow worker only)."""
    from compute.he_services import escrow_release

    return escrow_release(job_id=job_id)
