"""Homomorphic-encryption mode on the owner's machine: encrypt a CSV into a bundle, keep the key.

The owner runs this (through ``cloakroom he encrypt``) before anything leaves their machine. A CSV
is checked against the declared schema, numeric columns are clipped to their declared bounds,
categorical columns become one 0/1 indicator column per declared category, and every column is
packed into CKKS vectors (TenSEAL) that fill all the slots of a ciphertext, the last one padded with
zeros. The bundle directory then holds (see the bundle format v1, :mod:`cloakroom_client.protocol.bundle`):

* ``manifest.json``: parameters, the true row count, and every file with its size and SHA-256;
* ``context.bin``: the PUBLIC context, with no secret key and no Galois keys (the server only adds
  ciphertexts slot by slot; the key holder sums the slots after decryption), and relinearisation
  keys only when the owner allows products;
* ``c<column>.<chunk>.ct``: one serialized ``CKKSVector`` each.

The full (secret) context goes to the local keystore, ``~/.cloakroom/keys/<bundle_id>.secret``
(folder 0700, file 0600; ``CLOAKROOM_KEYSTORE`` moves the folder), and never into the bundle.

The package is split by step: :mod:`.params` (CKKS parameters and contexts), :mod:`.keystore`
(the owner's key folder), :mod:`.schema` (the declared schema and the CSV checked against it) and
:mod:`.encrypt` (the bundle written). Decryption is the key holder's, in the shared protocol
(:mod:`cloakroom_client.protocol.ckks`). Every module imports TenSEAL only inside the functions that
need it, so the SDK and the ``cloakroom`` command work without the ``he`` extra.
"""

from cloakroom_client.he.encrypt import Progress, bundle_stats, encrypt_csv, load_manifest
from cloakroom_client.he.keystore import (
    DEFAULT_KEYSTORE,
    KEYSTORE_ENV,
    keystore_dir,
    ledger_path,
    load_epsilon_cap,
    load_local_manifest,
    load_secret_context,
    manifest_copy_path,
    policy_path,
    secret_key_path,
    write_policy,
)
from cloakroom_client.he.params import (
    build_context,
    choose_parameters,
    normalize_job_classes,
    public_context_bytes,
    secret_context_bytes,
)
from cloakroom_client.he.schema import ColumnDecl, SchemaMismatch, parse_schema, read_checked_csv
from cloakroom_client.protocol.errors import HEError

__all__ = [
    "DEFAULT_KEYSTORE",
    "KEYSTORE_ENV",
    "ColumnDecl",
    "HEError",
    "Progress",
    "SchemaMismatch",
    "build_context",
    "bundle_stats",
    "choose_parameters",
    "encrypt_csv",
    "keystore_dir",
    "ledger_path",
    "load_epsilon_cap",
    "load_local_manifest",
    "load_manifest",
    "load_secret_context",
    "manifest_copy_path",
    "normalize_job_classes",
    "parse_schema",
    "policy_path",
    "public_context_bytes",
    "read_checked_csv",
    "secret_context_bytes",
    "secret_key_path",
    "write_policy",
]
