"""``demo_setup``, the one process ``make demo`` runs before the servers, and the command lines the demo
prints for a person to paste (marketplace/management/demo.py).

The end-to-end checks, a real second ``make demo`` and its printed hint run as printed, are in
tests/integration/test_readme_tour.py.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from marketplace.management import demo
from marketplace.management.commands.demo_setup import Command as DemoSetup

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def static_root(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    return settings.STATIC_ROOT


@pytest.fixture
def collections(monkeypatch):
    """Count the collectstatic runs demo_setup asks for, and let each one really run."""
    runs: list[str] = []
    real = call_command

    def counting(name, *args, **kwargs):
        if name == "collectstatic":
            runs.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr("marketplace.management.commands.demo_setup.call_command", counting)
    return runs


def collect(force: bool = False) -> str:
    out = io.StringIO()
    DemoSetup(stdout=out).collect_static(force=force)
    return out.getvalue()


def test_the_static_files_are_collected_once_then_only_when_a_source_changes(static_root, collections, settings):
    source = Path(settings.STATICFILES_DIRS[0]) / "css" / "cloakroom.css"
    assert "Collected the static files." in collect()
    assert (static_root / "css" / "cloakroom.css").is_file()
    assert "not collecting them again" in collect()
    assert collections == ["collectstatic"]

    # A changed source (here only its modification time) is collected again; the file is left as it was.
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert "Collected the static files." in collect()
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert collections == ["collectstatic"] * 2
    assert "Collected the static files." in collect(force=True)
    assert len(collections) == 3


def test_another_storage_backend_means_another_collection(static_root, collections, settings):
    collect()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    assert "Collected the static files." in collect()
    assert (static_root / "staticfiles.json").is_file()
    assert len(collections) == 2


def test_a_failed_collection_leaves_no_marker_so_the_next_start_collects_again(static_root, monkeypatch):
    collect()
    marker = demo.static_fingerprint_path()
    assert marker.is_file()

    def broken(name, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("marketplace.management.commands.demo_setup.call_command", broken)
    # Force it, as a changed source would.
    with pytest.raises(OSError):
        collect(force=True)
    assert not marker.exists()


def test_without_the_demos_environment_file_the_hint_is_plain_manage_py(var_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert demo.manage_command("changepassword", "demo-buyer") == "python manage.py changepassword demo-buyer"


def test_with_the_demos_environment_file_the_hint_reads_it_through_honcho(var_dir, monkeypatch):
    (var_dir / "demo.env").write_text("SECRET_KEY=x\n")
    monkeypatch.chdir(REPO_ROOT)
    command = demo.manage_command("changepassword", "demo-buyer")
    honcho = Path(sys.executable).with_name("honcho")
    assert command == (
        f"{demo.shown_path(honcho)} -e {var_dir / 'demo.env'} run {demo.shown_path(Path(sys.executable))} "
        "manage.py changepassword demo-buyer"
    )


def test_paths_inside_the_current_folder_are_shown_relative_and_others_quoted(tmp_path, monkeypatch):
    odd = tmp_path / "a folder" / "demo.env"
    monkeypatch.chdir(tmp_path)
    assert demo.shown_path(odd) == "'a folder/demo.env'"
    monkeypatch.chdir(REPO_ROOT)
    assert demo.shown_path(odd) == f"'{odd}'"


@pytest.mark.django_db
def test_a_second_seed_prints_the_changepassword_line_with_the_demos_settings(var_dir, monkeypatch):
    """What a second ``make demo`` prints instead of a bare ``python manage.py changepassword``, which
    stops at "SECRET_KEY is not set"; the integration test runs the printed line for real."""
    monkeypatch.chdir(REPO_ROOT)
    call_command("seed_demo", stdout=io.StringIO())
    (var_dir / "demo.env").write_text("SECRET_KEY=x\n")
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    lines = out.getvalue().splitlines()
    at = lines.index(
        "Already there, passwords unchanged: demo-owner, demo-buyer, demo-modeller, admin. To set a new one for demo-buyer:"
    )
    assert lines[at + 1].strip() == demo.manage_command("changepassword", "demo-buyer")
    assert "honcho -e" in lines[at + 1] and "<" not in lines[at + 1]
