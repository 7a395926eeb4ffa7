"""Encryption at rest for stored dataset files.

Files are encrypted with Fernet (AES-128-CBC with HMAC-SHA256) under the keys in
``CLOAKROOM_DATA_KEYS``, newest first. ``MultiFernet`` decrypts with any listed key and encrypts
with the first, so rotation is: prepend a new key, run ``manage.py rotate_data_keys``, then drop the
old key. The files live in the private storage root, which no URL serves.
"""

from __future__ import annotations

import os
import uuid

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def _fernet() -> MultiFernet:
    keys = settings.CLOAKROOM_DATA_KEYS
    if not keys:
        raise ImproperlyConfigured("CLOAKROOM_DATA_KEYS is empty: no key to encrypt stored files with.")
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "CLOAKROOM_DATA_KEYS must hold url-safe base64 Fernet keys of 32 bytes, comma-separated."
        ) from None


def encrypt_bytes(data: bytes) -> bytes:
    return _fernet().encrypt(data)


def decrypt_bytes(token: bytes) -> bytes:
    try:
        return _fernet().decrypt(token)
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored file could not be decrypted with any key in CLOAKROOM_DATA_KEYS."
        ) from None


def store_encrypted(data: bytes, *, folder: str = "datasets") -> str:
    """Encrypt and write ``data``; return the storage path."""
    name = f"{folder}/{uuid.uuid4().hex}.enc"
    return default_storage.save(name, ContentFile(encrypt_bytes(data)))


def read_decrypted(path: str) -> bytes:
    with default_storage.open(path, "rb") as handle:
        return decrypt_bytes(handle.read())


def delete_stored(path: str) -> None:
    if path and default_storage.exists(path):
        default_storage.delete(path)


def rotate_stored(path: str) -> bool:
    """Re-encrypt one file under the newest key. Returns True when the file changed.

    The new token is written beside the old file and renamed over it, so a crash mid-way leaves
    either the old or the new file whole, never a torn one.
    """
    full = default_storage.path(path)
    with open(full, "rb") as handle:
        old = handle.read()
    new = _fernet().rotate(old)
    tmp = f"{full}.rotating"
    with open(tmp, "wb") as handle:
        handle.write(new)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, full)
    return new != old
