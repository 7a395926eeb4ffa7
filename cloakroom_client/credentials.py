"""Saved API keys, so that a script or a terminal reuses one key instead of creating another each run.

The file is JSON, one key per server and user name, and only its owner may read it (mode 0600, in a
folder of mode 0700)::

    {"servers": {"http://127.0.0.1:8000": {"current": "demo-buyer",
                                            "users": {"demo-buyer": {"id": 7, "key": "ck_..."}}}}}

Its place is ``$CLOAKROOM_CREDENTIALS``, or ``~/.cloakroom/credentials.json`` (beside the HE keystore,
``~/.cloakroom/keys``). ``current`` is the user the ``cloakroom`` command acts as on that server when
no ``--api-key`` is given: the last one to log in.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

CREDENTIALS_ENV = "CLOAKROOM_CREDENTIALS"
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def credentials_path(path: str | os.PathLike | None = None) -> Path:
    """Where the keys are saved: ``path``, else ``$CLOAKROOM_CREDENTIALS``, else ~/.cloakroom/credentials.json."""
    if path is not None:
        return Path(path)
    configured = os.environ.get(CREDENTIALS_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cloakroom" / "credentials.json"


def server_id(url: str) -> str:
    """The server's address as the file spells it: no trailing slash, so both spellings find one key."""
    return url.rstrip("/")


def load_credentials(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The saved keys; an empty book when the file is missing or is not the JSON this module writes."""
    try:
        data = json.loads(credentials_path(path).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {"servers": {}}
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        return {"servers": {}}
    return data


def saved_key(url: str, username: str | None = None, path: str | os.PathLike | None = None) -> dict | None:
    """The saved ``{"id", "key", "username"}`` of ``username`` on ``url`` (the current user when None)."""
    server = load_credentials(path)["servers"].get(server_id(url))
    if not isinstance(server, dict):
        return None
    name = username if username is not None else server.get("current")
    entry = (server.get("users") or {}).get(name) if isinstance(name, str) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return None
    return {"id": entry.get("id"), "key": entry["key"], "username": name}


def save_key(url: str, *, username: str, key: str, key_id: int | None, path: str | os.PathLike | None = None) -> Path:
    """Save ``key`` as ``username``'s on ``url`` and make that user the current one; returns the file."""
    data = load_credentials(path)
    server = data["servers"].setdefault(server_id(url), {})
    server.setdefault("users", {})[username] = {"id": key_id, "key": key}
    server["current"] = username
    return _write(credentials_path(path), data)


def forget_key(url: str, username: str | None = None, path: str | os.PathLike | None = None) -> dict | None:
    """Remove a saved key (the current user's when ``username`` is None); returns what was removed."""
    entry = saved_key(url, username, path)
    if entry is None:
        return None
    data = load_credentials(path)
    server = data["servers"][server_id(url)]
    server["users"].pop(entry["username"], None)
    if server.get("current") == entry["username"]:
        server["current"] = next(iter(server["users"]), None)
    _write(credentials_path(path), data)
    return entry


def _write(target: Path, data: dict) -> Path:
    """Write the whole file at once, created 0600 so that no other user can read it even for a moment."""
    target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".credentials-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), FILE_MODE)
            json.dump(data, stream, indent=2, sort_keys=True)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
