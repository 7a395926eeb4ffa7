"""marketplace/pending_uploads.py: a file the New dataset page keeps across a failed submit. Encrypted in
the private storage root, tied to one session and one owner, deleted on use, on replacement, past its
lifetime (looked up, or swept), and never a dataset row."""

from __future__ import annotations

import os
import time

import pytest
from cryptography.fernet import Fernet
from django.contrib.sessions.backends.db import SessionStore

from marketplace import storage
from marketplace.models import Dataset
from marketplace.pending_uploads import (
    MAX_PER_SESSION,
    pending_upload_discard,
    pending_upload_get,
    pending_upload_keep,
    pending_upload_read,
    pending_uploads_sweep,
)
from marketplace.tasks import pending_uploads_sweep_task

pytestmark = pytest.mark.django_db

CSV = b"age,ward\n34,secret-ward-name\n"


def files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def keep(session, owner, data=CSV, name="visits.csv", **kwargs):
    return pending_upload_keep(session=session, owner=owner, data=data, name=name, **kwargs)


def test_a_kept_file_is_encrypted_in_the_private_root_and_read_back_by_its_token(owner, private_storage):
    session = SessionStore()

    pending = keep(session, owner)

    (stored,) = files(private_storage)
    assert stored.relative_to(private_storage).parts[0] == "pending"
    assert b"secret-ward-name" not in stored.read_bytes()
    assert storage.decrypt_bytes(stored.read_bytes()) == CSV
    assert (pending.name, pending.size) == ("visits.csv", len(CSV))
    found = pending_upload_get(session=session, owner=owner, token=pending.token)
    assert found == pending
    assert pending_upload_read(session=session, pending=found) == CSV
    assert not Dataset.objects.exists()


def test_the_token_means_nothing_in_another_session_or_to_another_owner(owner, outsider, private_storage):
    session = SessionStore()
    pending = keep(session, owner)

    assert pending_upload_get(session=SessionStore(), owner=owner, token=pending.token) is None
    assert pending_upload_get(session=session, owner=outsider, token=pending.token) is None
    assert pending_upload_get(session=session, owner=owner, token="") is None
    assert pending_upload_get(session=session, owner=owner, token=pending.token + "x") is None
    assert len(files(private_storage)) == 1  # a wrong guess deletes nothing


def test_the_session_keeps_the_token_but_never_the_files_contents(owner):
    session = SessionStore()
    keep(session, owner)
    session.save()

    stored = SessionStore(session_key=session.session_key).load()
    assert b"secret-ward-name" not in repr(stored).encode()
    assert "secret-ward-name" not in session.encode(dict(session))


def test_discarding_deletes_the_file_and_forgets_the_token(owner, private_storage):
    session = SessionStore()
    pending = keep(session, owner)

    pending_upload_discard(session=session, token=pending.token)

    assert files(private_storage) == []
    assert pending_upload_get(session=session, owner=owner, token=pending.token) is None
    pending_upload_discard(session=session, token=pending.token)  # twice is harmless


def test_a_replacing_file_deletes_the_one_it_replaces(owner, private_storage):
    session = SessionStore()
    first = keep(session, owner)

    second = keep(session, owner, data=b"x\n1\n", replaces=first.token)

    assert pending_upload_get(session=session, owner=owner, token=first.token) is None
    assert storage.decrypt_bytes(files(private_storage)[0].read_bytes()) == b"x\n1\n"
    assert len(files(private_storage)) == 1
    assert pending_upload_get(session=session, owner=owner, token=second.token) is not None


def test_a_session_keeps_at_most_a_few_files_and_the_oldest_goes(owner, private_storage):
    session = SessionStore()
    tokens = [keep(session, owner, data=b"n\n%d\n" % i).token for i in range(MAX_PER_SESSION + 1)]

    assert len(files(private_storage)) == MAX_PER_SESSION
    assert pending_upload_get(session=session, owner=owner, token=tokens[0]) is None
    assert all(pending_upload_get(session=session, owner=owner, token=t) for t in tokens[1:])


def test_an_expired_file_is_deleted_when_looked_up(owner, private_storage, settings, monkeypatch):
    settings.CLOAKROOM_PENDING_UPLOAD_SECONDS = 60
    session = SessionStore()
    pending = keep(session, owner)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)

    assert pending_upload_get(session=session, owner=owner, token=pending.token) is None
    assert files(private_storage) == []


def test_the_sweep_deletes_old_files_of_any_session_and_leaves_fresh_ones(owner, private_storage, settings):
    settings.CLOAKROOM_PENDING_UPLOAD_SECONDS = 60
    old = keep(SessionStore(), owner, data=b"old\n1\n")
    fresh = keep(SessionStore(), owner, data=b"fresh\n1\n")
    dataset_file = storage.store_encrypted(b"a dataset's own file")
    past = time.time() - 120
    os.utime(private_storage / old.path, (past, past))

    assert pending_uploads_sweep() == 1

    remaining = {str(p.relative_to(private_storage)) for p in files(private_storage)}
    assert remaining == {fresh.path, dataset_file}


def test_keeping_a_file_sweeps_the_expired_ones(owner, private_storage, settings):
    settings.CLOAKROOM_PENDING_UPLOAD_SECONDS = 60
    old = keep(SessionStore(), owner)
    past = time.time() - 120
    os.utime(private_storage / old.path, (past, past))

    keep(SessionStore(), owner)

    assert not (private_storage / old.path).exists()


def test_the_beat_task_runs_the_sweep(owner, private_storage, settings):
    settings.CLOAKROOM_PENDING_UPLOAD_SECONDS = 60
    old = keep(SessionStore(), owner)
    past = time.time() - 120
    os.utime(private_storage / old.path, (past, past))

    assert pending_uploads_sweep_task.apply().get() == 1
    assert files(private_storage) == []
    assert settings.CELERY_BEAT_SCHEDULE["sweep-pending-uploads"]["task"] == "marketplace.sweep_pending_uploads"


def test_the_sweep_with_nothing_kept_yet_does_nothing(private_storage):
    assert pending_uploads_sweep() == 0


def test_a_file_no_key_opens_any_more_is_dropped_instead_of_failing(owner, private_storage, settings):
    session = SessionStore()
    pending = keep(session, owner)
    settings.CLOAKROOM_DATA_KEYS = [Fernet.generate_key().decode()]  # the old key was rotated away

    assert pending_upload_read(session=session, pending=pending) is None
    assert files(private_storage) == []


def test_the_name_shown_is_the_files_own_name_only(owner):
    pending = keep(SessionStore(), owner, name="../../etc/\x00pass\nwd.csv")
    assert pending.name == "passwd.csv"
