"""The owner's keystore: one folder (0700) with, per bundle, its secret context, the owner's copy of
its manifest, the epsilon cap and the key holder's ledger of epsilon released.

The folder is the argument, else ``$CLOAKROOM_KEYSTORE``, else ``~/.cloakroom/keys``. Bundle ids
become file names, so anything but 32 hex digits is refused. TenSEAL is imported inside
:func:`load_secret_context` only, so that publishing (which records the cap here) works without the
``he`` extra.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloakroom_client.protocol.errors import HEError

if TYPE_CHECKING:
    import tenseal as ts

KEYSTORE_ENV = "CLOAKROOM_KEYSTORE"
DEFAULT_KEYSTORE = Path.home() / ".cloakroom" / "keys"
_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")


def keystore_dir(keystore: str | os.PathLike | None = None) -> Path:
    """The keystore folder: the argument, else ``$CLOAKROOM_KEYSTORE``, else ``~/.cloakroom/keys``."""
    if keystore:
        return Path(keystore).expanduser()
    env = os.environ.get(KEYSTORE_ENV)
    return Path(env).expanduser() if env else DEFAULT_KEYSTORE


def _check_bundle_id(bundle_id: str) -> str:
    # The id becomes a file name, so anything but 32 hex digits (e.g. "../x") is refused.
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.match(bundle_id):
        raise HEError(f"bundle id {bundle_id!r} is not 32 lowercase hex digits")
    return bundle_id


def secret_key_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.secret"


def write_secret(bundle_id: str, data: bytes, keystore: str | os.PathLike | None) -> Path:
    """Write the secret context readable by the owner alone.

    The folder is created 0700 (and tightened to 0700 if it already exists); the file is created
    with O_EXCL and mode 0600 from the start, so it is never readable by others, not even briefly.
    """
    folder = keystore_dir(keystore)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = secret_key_path(bundle_id, keystore)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot loosen it, but a stricter one must not stop us reading it
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd != -1:
            os.close(fd)
    return path


def manifest_copy_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The owner's own copy of a bundle's manifest, beside its key: what the key agent plans from."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.manifest.json"


def policy_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The owner's epsilon cap for a bundle, written when it is published from this machine."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.policy.json"


def ledger_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The key holder's append-only record of the epsilon it released for a bundle."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.ledger.jsonl"


def write_private(path: Path, text: str) -> None:
    """Write a small keystore file, 0600, atomically (a temporary file renamed over it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_local_manifest(bundle_id: str, keystore: str | os.PathLike | None = None) -> dict:
    """The owner's copy of a bundle's manifest from the keystore. Raises HEError if it is missing."""
    path = manifest_copy_path(bundle_id, keystore)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HEError(
            f"no local manifest for bundle {bundle_id} in {path.parent} (copy the bundle's manifest.json "
            f"there as {path.name})"
        )
    except (OSError, ValueError) as exc:
        raise HEError(f"{path} cannot be read as a manifest ({type(exc).__name__})")
    if not isinstance(manifest, dict) or manifest.get("bundle_id") != bundle_id:
        raise HEError(f"{path} is not the manifest of bundle {bundle_id}")
    return manifest


def write_policy(bundle_id: str, epsilon_cap: Any, keystore: str | os.PathLike | None = None) -> Path:
    """Record the owner's epsilon cap for a bundle in the keystore (what the key agent enforces)."""
    path = policy_path(bundle_id, keystore)
    write_private(path, json.dumps({"bundle_id": bundle_id, "epsilon_cap": str(epsilon_cap)}) + "\n")
    return path


def load_epsilon_cap(bundle_id: str, keystore: str | os.PathLike | None = None) -> str | None:
    """The owner's epsilon cap for a bundle from the keystore, or None when none was recorded."""
    try:
        policy = json.loads(policy_path(bundle_id, keystore).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cap = policy.get("epsilon_cap") if isinstance(policy, dict) else None
    return str(cap) if cap is not None else None


def load_secret_context(bundle_id: str, keystore: str | os.PathLike | None = None) -> ts.Context:
    """The secret context of a bundle from the keystore. Raises HEError if it is missing or public."""
    import tenseal as ts  # lazily: see the module's docstring

    path = secret_key_path(bundle_id, keystore)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HEError(f"no secret key for bundle {bundle_id} in {path.parent}")
    ctx = ts.context_from(data)
    if not ctx.is_private():
        raise HEError(f"{path} holds no secret key")
    return ctx
