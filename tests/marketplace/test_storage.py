"""Encryption at rest: marketplace/storage.py."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from marketplace import storage

PLAIN = b"PAR1 pretend parquet bytes with a secret value 4242 PAR1"


def test_a_stored_file_is_encrypted_on_disk_and_decrypts_to_the_same_bytes(private_storage):
    path = storage.store_encrypted(PLAIN)
    on_disk = (private_storage / path).read_bytes()
    assert on_disk != PLAIN and b"secret" not in on_disk and b"PAR1" not in on_disk
    assert storage.read_decrypted(path) == PLAIN


def test_stored_files_get_unguessable_names_inside_the_private_root(private_storage):
    first, second = storage.store_encrypted(PLAIN), storage.store_encrypted(PLAIN)
    assert first != second and first.startswith("datasets/") and first.endswith(".enc")
    assert (private_storage / first).is_file() and (private_storage / second).is_file()


def test_the_same_bytes_encrypt_differently_each_time(private_storage):
    first, second = storage.store_encrypted(PLAIN), storage.store_encrypted(PLAIN)
    assert (private_storage / first).read_bytes() != (private_storage / second).read_bytes()


def test_a_file_under_an_unknown_key_cannot_be_read(private_storage, settings):
    path = storage.store_encrypted(PLAIN)
    settings.CLOAKROOM_DATA_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="could not be decrypted"):
        storage.read_decrypted(path)


def test_a_tampered_file_cannot_be_read(private_storage):
    path = storage.store_encrypted(PLAIN)
    full = private_storage / path
    token = bytearray(full.read_bytes())
    token[40] = ord("A") if token[40] != ord("A") else ord("B")
    full.write_bytes(bytes(token))
    with pytest.raises(ImproperlyConfigured):
        storage.read_decrypted(path)


def test_an_older_key_still_decrypts_while_it_is_listed(private_storage, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CLOAKROOM_DATA_KEYS = [old]
    path = storage.store_encrypted(PLAIN)
    settings.CLOAKROOM_DATA_KEYS = [new, old]
    assert storage.read_decrypted(path) == PLAIN


def test_rotation_re_encrypts_under_the_newest_key(private_storage, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CLOAKROOM_DATA_KEYS = [old]
    path = storage.store_encrypted(PLAIN)
    settings.CLOAKROOM_DATA_KEYS = [new, old]
    assert storage.rotate_stored(path) is True
    settings.CLOAKROOM_DATA_KEYS = [new]
    assert storage.read_decrypted(path) == PLAIN
    assert not list(private_storage.rglob("*.rotating"))


def test_no_keys_is_a_configuration_error(settings):
    settings.CLOAKROOM_DATA_KEYS = []
    with pytest.raises(ImproperlyConfigured, match="CLOAKROOM_DATA_KEYS"):
        storage.encrypt_bytes(PLAIN)


def test_a_malformed_key_is_a_configuration_error(settings):
    settings.CLOAKROOM_DATA_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet"):
        storage.encrypt_bytes(PLAIN)


def test_deleting_a_stored_file_removes_it_and_tolerates_a_missing_one(private_storage):
    path = storage.store_encrypted(PLAIN)
    storage.delete_stored(path)
    assert not (private_storage / path).exists()
    storage.delete_stored(path)
    storage.delete_stored("")
