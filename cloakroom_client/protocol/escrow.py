"""Key escrow for HE datasets: the owner seals the secret key so that only the platform's escrow worker
(Celery queue ``keys``) can open it.

The platform publishes the public half of its key-encryption key (KEK), an X25519 key; the private half
is in the escrow worker's settings only. :func:`seal` encrypts the secret context to that public key
with an ephemeral X25519 exchange, HKDF-SHA256 and AES-256-GCM (an ECIES-style sealed box), so the web
process that receives the upload, the database and the media folder only ever hold ciphertext.

Sealed blob layout (all lengths fixed except the last)::

    MAGIC (10) | key id (16, sha256 of the KEK public key, first 16 bytes) | ephemeral public key (32)
    | nonce (12) | AES-GCM ciphertext of the secret context, with its 16-byte tag

The header is authenticated as associated data, so a blob cannot be re-labelled for another key.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"CKESCROW1\n"
ALGORITHM = "X25519-HKDF-SHA256-AES256GCM"
KEY_ID_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + 32 + 12
INFO = b"cloakroom key escrow v1"


class EscrowError(ValueError):
    """A blob that is not a sealed key, is sealed to another KEK, or was altered."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:KEY_ID_BYTES]


def new_kek() -> tuple[str, str]:
    """A fresh KEK as (private, public), each base64 of its 32 raw bytes (for settings)."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw_private).decode(), base64.b64encode(_raw(private.public_key())).decode()


def public_from_private(private_b64: str) -> str:
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return base64.b64encode(_raw(private.public_key())).decode()


def _derive(shared: bytes, header: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO + header).derive(shared)


def seal(secret: bytes, public_key_b64: str) -> bytes:
    """Encrypt ``secret`` (the serialized secret context) to the KEK whose public key is given."""
    try:
        recipient_raw = base64.b64decode(public_key_b64, validate=True)
        recipient = X25519PublicKey.from_public_bytes(recipient_raw)
    except ValueError as exc:
        raise EscrowError(f"not an X25519 public key: {exc}") from None
    ephemeral = X25519PrivateKey.generate()
    nonce = os.urandom(12)
    header = MAGIC + key_id(recipient_raw) + _raw(ephemeral.public_key()) + nonce
    key = _derive(ephemeral.exchange(recipient), header)
    return header + AESGCM(key).encrypt(nonce, secret, header)


def blob_key_id(blob: bytes) -> bytes:
    """The KEK a blob is sealed to, read from its header (no key needed); EscrowError if it is no blob."""
    if len(blob) < HEADER_BYTES + 16 or not blob.startswith(MAGIC):
        raise EscrowError("not a sealed Cloakroom key (bad header or too short)")
    return blob[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES]


def unseal(blob: bytes, private_key_b64: str) -> bytes:
    """Open a sealed blob with the KEK's private key (the escrow worker only)."""
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
    if blob_key_id(blob) != key_id(_raw(private.public_key())):
        raise EscrowError("the key was sealed to another key-encryption key")
    header = blob[:HEADER_BYTES]
    ephemeral = X25519PublicKey.from_public_bytes(header[len(MAGIC) + KEY_ID_BYTES : len(MAGIC) + KEY_ID_BYTES + 32])
    nonce = header[-12:]
    key = _derive(private.exchange(ephemeral), header)
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER_BYTES:], header)
    except (InvalidTag, ValueError):  # a failed authentication, or a ciphertext AES-GCM cannot take
        raise EscrowError("the sealed key was altered or is not for this key-encryption key") from None


def escrow_secret_bytes(secret_context) -> bytes:
    """The secret context reduced to what decryption needs: the secret key, no public, relin or Galois keys."""
    return secret_context.serialize(
        save_public_key=False, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
