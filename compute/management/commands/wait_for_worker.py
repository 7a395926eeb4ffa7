"""Wait until a Celery worker answers: send a heartbeat task and watch for its row.

This proves the whole chain works (this process can reach the broker, a worker consumes the queue
and can write to the database), which a ping of the broker alone would not. The demo uses it to
print "worker ready"; deployments can use it as a readiness probe.
"""

from __future__ import annotations

import secrets
import time

from django.core.management.base import BaseCommand, CommandError

from compute import selectors
from compute.tasks import worker_heartbeat_record_task


class Command(BaseCommand):
    help = "Send a heartbeat task to the Celery workers and wait until one of them has processed it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait before giving up (default 60)")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between checks (default 0.5)")

    def handle(self, *args, timeout: float, interval: float, **options) -> None:
        if timeout <= 0 or interval <= 0:
            raise CommandError("--timeout and --interval must be greater than 0.")
        token = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        # A short connection retry budget per attempt: an unreachable broker fails loudly instead of
        # hanging for Celery's default of many retries. Attempts repeat until the deadline, because
        # the filesystem broker can fail one transiently: two processes starting at once (the
        # demo's key agent and its "ready" line) may read the exchange table while the other writes it.
        while True:
            try:
                worker_heartbeat_record_task.apply_async(
                    args=[token],
                    retry=True,
                    retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 0.5},
                )
                break
            except Exception as exc:  # noqa: BLE001 (each Kombu transport raises its own errors; any means "no broker")
                if time.monotonic() + interval >= deadline:
                    raise CommandError(
                        f"Could not send the heartbeat task to the broker: {exc.__class__.__name__}: {exc}"
                    ) from None
                time.sleep(interval)
        while time.monotonic() < deadline:
            if selectors.worker_heartbeat_seen(token=token):
                self.stdout.write(self.style.SUCCESS("worker ready"))
                return
            time.sleep(interval)
        raise CommandError(
            f"No worker processed the heartbeat within {timeout:g}s. Is `celery -A config worker` running "
            "with the same CELERY_BROKER_URL (or REDIS_URL) and database as this command?"
        )
