"""Celery tasks of the compute app. Jobs arrive with the DP job issue; for now the worker answers
a heartbeat so that the demo and the tests can see it is alive."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from compute.models import WorkerHeartbeat


@shared_task(name="compute.heartbeat", acks_late=True)
def heartbeat(token: str) -> None:
    """Record that a worker picked up ``token``. Idempotent: a repeated delivery updates one row."""
    WorkerHeartbeat.objects.update_or_create(token=token, defaults={"seen_at": timezone.now()})
