"""Celery tasks of the marketplace: each calls one service. The Celery names are the wire contract."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="marketplace.sweep_pending_uploads")
def pending_uploads_sweep_task() -> int:
    """Delete the New dataset page's kept uploads past their lifetime (Celery beat, queue ``default``)."""
    from marketplace.pending_uploads import pending_uploads_sweep

    return pending_uploads_sweep()
