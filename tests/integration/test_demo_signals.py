"""`make demo` stops cleanly on SIGTERM (docker, systemd) and on Ctrl-C (SIGINT to the terminal's
process group): every process of the Procfile is gone within 10 s and make prints no error."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests

from tests.integration.live import REPO_ROOT, clean_env, free_port

pytestmark = pytest.mark.integration


def _default_signals() -> None:
    # A shell may have started the test runner with SIGINT ignored (a background job); a terminal's
    # make would not have it so.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_make_demo_stops_every_process_within_ten_seconds_without_an_error(tmp_path, sent):
    port = free_port()
    env = clean_env(CLOAKROOM_VAR_DIR=str(tmp_path / "var"))
    for name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # make test's own make must not steer this one
        env.pop(name, None)
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(
            ["make", "demo", f"PORT={port}"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )
    try:
        deadline = time.monotonic() + 300
        while "is ready" not in log.read_text(errors="replace"):
            assert demo.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/health/", timeout=10).status_code == 200

        sent_at = time.monotonic()
        os.killpg(demo.pid, sent)
        demo.wait(timeout=30)
        stopped_after = time.monotonic() - sent_at
        left = subprocess.run(["pgrep", "-g", str(demo.pid)], capture_output=True, text=True).stdout.split()
    finally:
        if demo.poll() is None or subprocess.run(["pgrep", "-g", str(demo.pid)], capture_output=True).returncode == 0:
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert left == [], text
    assert stopped_after < 10, text
    # make died of the signal it was sent, as a process should; it printed no "Error" or "Interrupt".
    assert demo.returncode == -sent
    assert "make: ***" not in text, text
