"""manage.py rotate_data_keys: re-encrypt every stored dataset file under the newest key."""

from __future__ import annotations

import io
from io import StringIO

import pyarrow.parquet as pq
import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from marketplace import storage
from marketplace.models import Dataset
from tests.marketplace.test_api_datasets import GOOD_CSV, GOOD_PARQUET, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def rotate() -> str:
    out = StringIO()
    call_command("rotate_data_keys", stdout=out)
    return out.getvalue()


@pytest.fixture
def stored_under_a(owner_client, settings):
    settings.CLOAKROOM_DATA_KEYS = [KEY_A]
    assert upload(owner_client, GOOD_CSV).status_code == 201
    assert upload(owner_client, GOOD_PARQUET, name="d.parquet").status_code == 201
    return {d.pk: storage.read_decrypted(d.file_path) for d in Dataset.objects.all()}


def test_rotation_moves_every_file_to_the_newest_key(stored_under_a, settings):
    settings.CLOAKROOM_DATA_KEYS = [KEY_B, KEY_A]
    assert "Rotated 2 file(s)" in rotate()

    settings.CLOAKROOM_DATA_KEYS = [KEY_B]  # the old key is gone and every file still opens
    for dataset in Dataset.objects.all():
        plain = storage.read_decrypted(dataset.file_path)
        assert plain == stored_under_a[dataset.pk]
        assert pq.read_table(io.BytesIO(plain)).column_names == ["age", "ward", "insured"]


def test_after_rotation_the_old_key_alone_no_longer_opens_the_files(stored_under_a, settings):
    settings.CLOAKROOM_DATA_KEYS = [KEY_B, KEY_A]
    rotate()
    settings.CLOAKROOM_DATA_KEYS = [KEY_A]
    with pytest.raises(Exception, match="could not be decrypted"):
        storage.read_decrypted(Dataset.objects.first().file_path)


def test_rotating_twice_is_harmless(stored_under_a, settings):
    settings.CLOAKROOM_DATA_KEYS = [KEY_B, KEY_A]
    rotate()
    assert "Rotated 2 file(s)" in rotate()
    settings.CLOAKROOM_DATA_KEYS = [KEY_B]
    assert all(storage.read_decrypted(d.file_path) == stored_under_a[d.pk] for d in Dataset.objects.all())


def test_with_no_stored_files_it_reports_zero(db):
    assert "Rotated 0 file(s)" in rotate()


def test_a_file_no_key_opens_fails_loudly_and_is_left_as_it_was(stored_under_a, settings, private_storage):
    before = {p: p.read_bytes() for p in private_storage.rglob("*") if p.is_file()}
    settings.CLOAKROOM_DATA_KEYS = [KEY_B]
    with pytest.raises(CommandError, match="no key in CLOAKROOM_DATA_KEYS decrypts"):
        rotate()
    assert {p: p.read_bytes() for p in private_storage.rglob("*") if p.is_file()} == before


def test_a_missing_file_is_reported_and_the_others_are_still_rotated(stored_under_a, settings, private_storage):
    first, second = Dataset.objects.order_by("pk")
    (private_storage / first.file_path).unlink()
    settings.CLOAKROOM_DATA_KEYS = [KEY_B, KEY_A]
    with pytest.raises(CommandError, match=f"dataset {first.pk}: its stored file is missing"):
        rotate()
    settings.CLOAKROOM_DATA_KEYS = [KEY_B]
    assert storage.read_decrypted(second.file_path) == stored_under_a[second.pk]


def test_without_any_key_it_stops_with_a_clear_message(stored_under_a, settings):
    settings.CLOAKROOM_DATA_KEYS = []
    with pytest.raises(CommandError, match="CLOAKROOM_DATA_KEYS is empty"):
        rotate()


def test_the_command_exits_non_zero_from_the_shell(stored_under_a, settings):
    settings.CLOAKROOM_DATA_KEYS = [KEY_B]
    with pytest.raises(SystemExit) as caught:
        from django.core.management import ManagementUtility

        ManagementUtility(["manage.py", "rotate_data_keys"]).execute()
    assert caught.value.code != 0
