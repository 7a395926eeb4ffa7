"""Re-encrypting stored files under a new key."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from marketplace import storage
from marketplace.models import Dataset
from tests.marketplace.test_uploads import GOOD_CSV, METADATA

pytestmark = pytest.mark.django_db


def test_rotation_moves_every_file_to_the_newest_key(owner_client, private_storage, settings, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CLOAKROOM_DATA_KEYS = [old]
    f = io.BytesIO(GOOD_CSV)
    f.name = "d.csv"
    assert (
        owner_client.post(
            "/api/v1/datasets/", {"file": f, "metadata": json.dumps(METADATA)}, format="multipart"
        ).status_code
        == 201
    )
    path = Dataset.objects.get().file_path
    before = storage.read_decrypted(path)

    settings.CLOAKROOM_DATA_KEYS = [new, old]
    call_command("rotate_data_keys")
    assert "Rotated 1 file(s)" in capsys.readouterr().out

    settings.CLOAKROOM_DATA_KEYS = [new]  # the old key is gone: the file still opens
    assert storage.read_decrypted(path) == before
    assert pq.read_table(io.BytesIO(before)).num_rows == 3


def test_rotation_fails_loudly_when_no_key_opens_a_file(owner_client, private_storage, settings):
    f = io.BytesIO(GOOD_CSV)
    f.name = "d.csv"
    owner_client.post("/api/v1/datasets/", {"file": f, "metadata": json.dumps(METADATA)}, format="multipart")
    settings.CLOAKROOM_DATA_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="no key in CLOAKROOM_DATA_KEYS decrypts"):
        call_command("rotate_data_keys")
