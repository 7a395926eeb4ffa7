"""Reads for the compute app, already limited to what the caller may see."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from accounts.models import User
from compute.models import Job, WorkerHeartbeat
from config.exceptions import NotFound


def job_list(*, user: User) -> QuerySet[Job]:
    """The caller's own jobs, newest first."""
    return Job.objects.filter(buyer=user).select_related("dataset", "purchase")


def job_get(*, user: User, job_id) -> Job:
    """One of the caller's jobs; anyone else's job is a 404, never a 403 that confirms it exists."""
    try:
        return job_list(user=user).get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such job.") from None


def worker_last_seen() -> datetime | None:
    """When a worker last processed a heartbeat task, or None if no worker ever has."""
    return WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()


def worker_heartbeat_seen(*, token: str) -> bool:
    """Whether a worker has processed the heartbeat task sent with ``token``."""
    return WorkerHeartbeat.objects.filter(token=token).exists()
