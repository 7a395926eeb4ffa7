"""`pip install .` installs the client: every package of cloakroom_client (the protocol, the HE and CLI
packages) and nothing of the server. Read from pyproject.toml's package discovery, the way setuptools
reads it when it builds the wheel."""

from __future__ import annotations

import ast
import re
import sys
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


# The import name of each distribution the client may need, where the two differ.
DISTRIBUTION_OF = {
    "cryptography": "cryptography",
    "numpy": "numpy",
    "pandas": "pandas",
    "requests": "requests",
    "sklearn": "scikit-learn",
}


def _third_party_imports() -> dict[str, set[str]]:
    """Every top-level module cloakroom_client imports (in functions too) that is neither the client's own
    nor the standard library's, with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "cloakroom_client").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top and top != "cloakroom_client" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_every_module_the_client_imports_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = {name: {_requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    imported = _third_party_imports()
    # TenSEAL is the "he" extra's: imported lazily, only by the HE commands (and checked by key-agent);
    # scikit-learn the "models" extra's, imported lazily by cloakroom_client/models.py.
    assert set(imported) == {"cryptography", "numpy", "pandas", "requests", "tenseal", "sklearn"}, imported
    extra_of = {"tenseal": "he", "sklearn": "models"}
    for module, files in imported.items():
        wanted = extras[extra_of[module]] if module in extra_of else base
        assert DISTRIBUTION_OF.get(module, module) in wanted, f"{module} (imported by {sorted(files)}) is not declared"
    # The SDK itself imports cloakroom_client.protocol.escrow, so its cryptography must come with every install.
    assert "cryptography" in base
