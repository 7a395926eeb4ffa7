"""The pre-commit hooks run what `make lint` runs, on the same files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".pre-commit-config.yaml"


def hooks() -> dict[str, dict]:
    config = yaml.safe_load(CONFIG.read_text("utf-8"))
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_the_pre_commit_configuration_is_valid():
    done = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_hooks_are_the_lint_steps_of_make_test_and_download_nothing():
    found = hooks()
    assert set(found) == {"ruff-format", "ruff-check", "mypy", "architecture"}
    config = yaml.safe_load(CONFIG.read_text("utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    # Files passed one by one still honour pyproject's exclusions (migrations, .venv), as `ruff .` does.
    assert "--force-exclude" in found["ruff-format"]["entry"] and "--force-exclude" in found["ruff-check"]["entry"]
    assert found["mypy"]["entry"].endswith("make --no-print-directory mypy")
    assert "tests/test_architecture.py" in found["architecture"]["entry"]
