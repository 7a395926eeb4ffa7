"""Celery tasks of the compute app: each takes ids, and calls one service (compute/services.py or a
kind's step in compute/kinds/). Each is named after its service with ``_task`` added; the Celery names
(``compute.run_dp_job`` ...) are the wire contract with queued messages and stay as they are.

Services import this module to queue tasks; the tasks import their service inside the body (HackSoft's
rule that keeps the two from importing each other at load). Every task below that changes a job is
safe to deliver twice: its service claims or checks the job's status first and skips a job that is
done, cancelled or held by another worker, so one job is charged and released once.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="compute.heartbeat", acks_late=True)
def worker_heartbeat_record_task(token: str) -> None:
    """Record that a worker picked up ``token`` (health checks, the demo and the tests use it)."""
    from compute.services import worker_heartbeat_record

    worker_heartbeat_record(token=token)


@shared_task(name="compute.run_dp_job", acks_late=True, reject_on_worker_lost=True)
def dp_job_run_task(job_id: int) -> str:
    """Run a DP job (queue ``dp``).

    ``acks_late`` with ``reject_on_worker_lost`` puts the message back when the worker process dies
    mid-job. While the job runs, a thread beats its heartbeat; once the beats stop (the worker was
    killed, or lost its machine) the sweeper puts the job back in the queue within about a minute
    (docs/RELIABILITY.md).
    """
    from compute.services import job_run

    return job_run(job_id=job_id)


@shared_task(name="compute.run_ml_job", acks_late=True, reject_on_worker_lost=True)
def ml_job_run_task(job_id: int) -> str:
    """Run a PATE job (queue ``ml``): train the teachers in memory, count the votes, answer by
    Confident-GNMax, release. Like a DP job: ``acks_late`` with a heartbeat the sweeper watches."""
    from compute.services import job_run

    return job_run(job_id=job_id)


@shared_task(name="compute.run_he_job", acks_late=True, reject_on_worker_lost=True)
def he_job_run_task(job_id: int) -> str:
    """Claim an HE job, queue its parts and compute the first (queue ``he``)."""
    from compute.services import job_run

    return job_run(job_id=job_id)


@shared_task(name="compute.run_he_part", acks_late=True, reject_on_worker_lost=True)
def he_part_run_task(job_id: int, claim: str, index: int) -> str:
    """Aggregate one part of an HE job's ciphertexts under encryption (queue ``he``).

    The TenSEAL context is loaded here, in the worker's child process, after the fork."""
    from compute.kinds.he_query.parts import he_part_run

    return he_part_run(job_id=job_id, claim=claim, index=index)


@shared_task(name="compute.release_with_escrow", acks_late=True, reject_on_worker_lost=True)
def escrow_release_task(job_id: int) -> str:
    """Release an HE job with its dataset's escrowed key (queue ``keys``: the escrow worker only)."""
    from compute.kinds.he_query.key_holder import escrow_release

    return escrow_release(job_id=job_id)


@shared_task(name="compute.run_prediction", acks_late=True, reject_on_worker_lost=True)
def prediction_run_task(prediction_id: int) -> str:
    """Score a client's encrypted rows on a published model (queue ``he``; the client's public context is
    loaded here, in the worker's child, after the fork). A second delivery finds it no longer queued and
    does nothing; one whose worker died is failed and refunded by the sweeper."""
    from compute.inference.services import prediction_run

    return prediction_run(prediction_id=prediction_id)


@shared_task(name="compute.sweep_jobs")
def jobs_sweep_task() -> dict:
    """Run by Celery beat every CLOAKROOM_SWEEP_SECONDS (on the default queue; a sweep that waited past
    the next is dropped): send jobs the broker missed, re-queue dead workers' jobs, and fail and refund
    jobs that cannot run (compute.services.jobs_sweep); then the same for encrypted predictions: fail and
    refund stuck ones, delete scores nobody downloaded (compute.inference.services.predictions_sweep)."""
    from compute.inference.services import predictions_sweep
    from compute.services import jobs_sweep

    swept = jobs_sweep()
    swept["predictions"] = predictions_sweep()
    return swept
