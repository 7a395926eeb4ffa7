"""`pip install .` installs the client: every package of cloakroom_client (the protocol, the HE and CLI
packages) and nothing of the server. Read from pyproject.toml's package discovery, the way setuptools
reads it when it builds the wheel."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_distribution_holds_every_client_package_and_no_server_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    found = set(find_packages(where=str(ROOT), **config["packages"]["find"]))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cloakroom_client").rglob("__init__.py")}
    assert found == on_disk
    assert {"cloakroom_client.protocol.he_plan", "cloakroom_client.cli", "cloakroom_client.he"} <= found
