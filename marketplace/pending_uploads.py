"""Uploads kept across a failed submit of the New dataset page, so the owner need not choose the file again.

When the page comes back with an error (a column that does not match the file, a missing price), the
file the owner chose is kept as a *pending upload*: encrypted like a stored dataset file
(:mod:`marketplace.storage`), in the private storage root under ``pending/``, which no URL serves. The
page carries only a random token in a hidden field; the token means something only in the session
that kept the file, and only for the owner who chose it. A pending upload is deleted when the dataset
is created from it, when another file replaces it, when a fourth is kept in the same session (the
oldest goes), or once it is older than ``CLOAKROOM_PENDING_UPLOAD_SECONDS``: looked up then, or by
:func:`pending_uploads_sweep`, which every new pending upload runs and Celery beat runs too. No
dataset row is ever written for one, and its contents are never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.models import User
from marketplace import storage

logger = logging.getLogger(__name__)

SESSION_KEY = "marketplace_pending_uploads"
FOLDER = "pending"
MAX_PER_SESSION = 3
DEFAULT_SECONDS = 3600


def pending_upload_lifetime() -> int:
    """Seconds a pending upload is kept (``CLOAKROOM_PENDING_UPLOAD_SECONDS``)."""
    return int(getattr(settings, "CLOAKROOM_PENDING_UPLOAD_SECONDS", DEFAULT_SECONDS))


@dataclass(frozen=True)
class PendingUpload:
    """A kept file: what the page shows (its name and size) and where its encrypted copy is."""

    token: str
    name: str
    size: int
    path: str
    owner_id: int
    created: float

    @property
    def expired(self) -> bool:
        return time.time() - self.created > pending_upload_lifetime()


def _entries(session: SessionBase) -> dict[str, dict]:
    entries = session.get(SESSION_KEY)
    return dict(entries) if isinstance(entries, dict) else {}


def _pending(token: str, entry: dict) -> PendingUpload | None:
    try:
        return PendingUpload(
            token=token,
            name=str(entry["name"]),
            size=int(entry["size"]),
            path=str(entry["path"]),
            owner_id=int(entry["owner"]),
            created=float(entry["created"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _display_name(name: str) -> str:
    """The file's own name, without any folder and without control characters, at most 200 characters."""
    base = os.path.basename(name.replace("\\", "/"))
    return "".join(ch for ch in base if ch.isprintable())[-200:] or "upload"


def pending_upload_keep(
    *, session: SessionBase, owner: User, data: bytes, name: str, replaces: str = ""
) -> PendingUpload:
    """Keep ``data`` (the file as uploaded) for ``owner`` in ``session``; return it with its new token.

    ``replaces``: the token of the file this one replaces, deleted now.
    """
    pending_uploads_sweep()
    if replaces:
        pending_upload_discard(session=session, token=replaces)
    entries = _entries(session)
    while len(entries) >= MAX_PER_SESSION:
        oldest = min(entries, key=lambda t: float(entries[t].get("created", 0)))
        storage.delete_stored(str(entries.pop(oldest).get("path", "")))
    token = secrets.token_urlsafe(24)
    path = storage.store_encrypted(data, folder=FOLDER)
    entry = {"name": _display_name(name), "size": len(data), "path": path, "owner": owner.pk, "created": time.time()}
    entries[token] = entry
    session[SESSION_KEY] = entries
    return PendingUpload(
        token=token, name=entry["name"], size=len(data), path=path, owner_id=owner.pk, created=entry["created"]
    )


def pending_upload_get(*, session: SessionBase, owner: User, token: str) -> PendingUpload | None:
    """The upload kept under ``token`` in this session for this owner; None if there is none (any more).

    An expired one is deleted on the way.
    """
    if not token:
        return None
    entry = _entries(session).get(token)
    pending = _pending(token, entry) if isinstance(entry, dict) else None
    if pending is None or pending.owner_id != owner.pk:
        return None
    if pending.expired or not default_storage.exists(pending.path):
        pending_upload_discard(session=session, token=token)
        return None
    return pending


def pending_upload_read(*, session: SessionBase, pending: PendingUpload) -> bytes | None:
    """The kept file's bytes, or None (and it is discarded) when no key of CLOAKROOM_DATA_KEYS opens it
    any more (the keys were rotated past it) or its file has gone."""
    try:
        return storage.read_decrypted(pending.path)
    except (ImproperlyConfigured, InvalidToken, FileNotFoundError):
        pending_upload_discard(session=session, token=pending.token)
        return None


def pending_upload_discard(*, session: SessionBase, token: str) -> None:
    """Delete the upload kept under ``token`` (its file and its place in the session), if any."""
    entries = _entries(session)
    entry = entries.pop(token, None)
    if entry is None:
        return
    if isinstance(entry, dict):
        storage.delete_stored(str(entry.get("path", "")))
    session[SESSION_KEY] = entries


def pending_uploads_sweep(*, now: datetime | None = None) -> int:
    """Delete every pending upload older than its lifetime, whichever session kept it; return how many.

    Sessions that were abandoned (a closed tab, a log-out) never come back for their files, so the
    files' own age is what counts here.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=pending_upload_lifetime())
    try:
        _, names = default_storage.listdir(FOLDER)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        path = f"{FOLDER}/{name}"
        try:
            if default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
                removed += 1
        except FileNotFoundError:  # deleted meanwhile by its own session
            continue
    if removed:
        logger.info("deleted %d expired pending upload(s)", removed)
    return removed
