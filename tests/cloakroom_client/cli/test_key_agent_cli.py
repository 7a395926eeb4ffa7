"""`cloakroom key-agent` against a small real HTTP server that speaks the key-agent contract.

The server (http.server in a thread) serves the awaiting jobs in pages of two, the aggregate
ciphertexts (real TenSEAL aggregates of a real bundle) and the release endpoint, and records every
request, so the tests can check what the agent fetched and posted. The end-to-end test against the
Django server lives with the server's tests. No database is needed.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cloakroom_client.cli import main as cli_main
from cloakroom_client.he import load_secret_context
from cloakroom_client.protocol import he_plan
from cloakroom_client.protocol.ckks import decrypt_sum
from cloakroom_client.protocol.release_spec import release_spec_fingerprint
from compute.engines.he import encrypted_sum
from tests.fixtures.he_bundles import secret_markers

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "ck_owner_test_key"
PAGE_SIZE = 2


class ContractServer:
    """The server side of the key-agent contract, in memory."""

    def __init__(self):
        self.plans: dict[int, dict] = {}
        self.aggregates: dict[tuple[int, str], bytes] = {}
        self.fail_release: dict[int, int] = {}  # job -> how many more posts answer 500
        self.posts: list[tuple[int, dict, int]] = []  # (job, values, status)
        self.fetches: list[tuple[int, str]] = []
        self.released: dict[int, dict] = {}
        self.on_release = None  # called with the job id before a successful release is answered
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_job(self, plan: dict, aggregates: dict[str, bytes]) -> None:
        self.plans[plan["job"]] = plan
        for name, data in aggregates.items():
            self.aggregates[(plan["job"], name)] = data

    def awaiting(self) -> list[dict]:
        return [p for job, p in sorted(self.plans.items()) if job not in self.released]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str, fields: dict | None = None) -> None:
                error = {"code": code, "message": message}
                if fields:
                    error["fields"] = fields
                self._send(status, {"error": error})

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._error(401, "not_authenticated", "Invalid API key.")
                    return False
                return True

            def do_GET(self):
                if not self._authorized():
                    return
                parts = urlsplit(self.path)
                if parts.path == "/api/v1/he/jobs/awaiting/":
                    page = int(parse_qs(parts.query).get("page", ["1"])[0])
                    with server.lock:
                        plans = server.awaiting()
                    start = (page - 1) * PAGE_SIZE
                    more = start + PAGE_SIZE < len(plans)
                    return self._send(
                        200,
                        {
                            "count": len(plans),
                            "next": f"{server.url}/api/v1/he/jobs/awaiting/?page={page + 1}" if more else None,
                            "previous": None,
                            "results": plans[start : start + PAGE_SIZE],
                        },
                    )
                match = re.fullmatch(r"/api/v1/he/jobs/(\d+)/(?:aggregates/([^/]+)/)?", parts.path)
                if not match or int(match[1]) not in server.plans:
                    return self._error(404, "not_found", "No such HE job on your datasets.")
                job = int(match[1])
                if job in server.released:
                    return self._error(409, "job_not_awaiting_key", "The job is released, not waiting for a key.")
                if match[2] is None:
                    return self._send(200, server.plans[job])
                with server.lock:
                    server.fetches.append((job, match[2]))
                data = server.aggregates.get((job, match[2]))
                if data is None:
                    return self._error(404, "not_found", "No such aggregate.")
                return self._send(200, data, "application/octet-stream")

            def do_POST(self):
                if not self._authorized():
                    return
                match = re.fullmatch(r"/api/v1/he/jobs/(\d+)/release/", urlsplit(self.path).path)
                if not match or int(match[1]) not in server.plans:
                    return self._error(404, "not_found", "No such HE job on your datasets.")
                job = int(match[1])
                values = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["values"]
                with server.lock:
                    if job in server.released:
                        server.posts.append((job, values, 409))
                        return self._error(409, "job_not_awaiting_key", "The job is released, not waiting for a key.")
                    if server.fail_release.get(job, 0) > 0:
                        server.fail_release[job] -= 1
                        server.posts.append((job, values, 500))
                        return self._send(500, b"<h1>Server Error (500)</h1>", "text/html")
                    names = {c["name"] for c in server.plans[job]["components"]}
                    fields = {}
                    for name in names | set(values):
                        value = values.get(name)
                        if name not in names:
                            fields[f"values.{name}"] = ["Not a component of this job."]
                        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                            fields[f"values.{name}"] = ["Must be a finite number."]
                    if fields:
                        server.posts.append((job, values, 400))
                        return self._error(400, "invalid", "Invalid values.", fields)
                    server.posts.append((job, values, 200))
                    server.released[job] = values
                if server.on_release:
                    server.on_release(job)
                return self._send(200, {"id": job, "status": "released", "result": values})

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_plan(job: int, bundle, **sum_changes) -> dict:
    """The server's plan of a mean of age at epsilon 2e-4 (huge noise, so that a noisy value equal to
    the truth is out of the question), built with the shared planner as the server builds it, with
    the sum component's fields replaced by keyword (a server that lies)."""
    planned = he_plan.plan({"aggregate": "mean", "column": "age"}, bundle.manifest, 0.0002)
    components = planned.key_components()
    components[1].update(sum_changes)
    return {
        "job": job,
        "dataset": 1,
        "bundle_id": bundle.manifest["bundle_id"],
        "query": planned.query,
        "epsilon": "0.000200",
        "delta": "0",
        "aggregates": [
            {**a, "url": f"/api/v1/he/jobs/{job}/aggregates/{a['name']}/"} for a in planned.key_aggregates()
        ],
        "components": components,
        "created_at": "2025-01-01T00:00:00Z",
    }


def stranger_plan(job: int, bundle) -> dict:
    """A plan for a bundle whose key is not in the keystore."""
    return {**make_plan(job, bundle), "bundle_id": uuid.uuid4().hex}


@pytest.fixture
def owner(bundle):
    return served_bundle(bundle)


def served_bundle(bundle):
    """The bundle's aggregates as the server computes them, and the un-noised values the agent must
    never show (decrypted here with the owner's key, the way the agent decrypts them)."""
    public = (bundle.folder / "context.bin").read_bytes()
    aggregates = {}
    for name, column in zip(("a0", "a1"), bundle.manifest["columns"]):
        aggregates[name] = encrypted_sum(public, [(bundle.folder / f["file"]).read_bytes() for f in column["files"]])
    length = min(bundle.manifest["rows"], bundle.manifest["slots"])
    secret = load_secret_context(bundle.manifest["bundle_id"], bundle.keystore)
    truth = {name: decrypt_sum(secret, data, length) for name, data in aggregates.items()}
    return bundle, aggregates, length, truth


def assert_nothing_secret_in(text: str, bundle, truth: dict) -> None:
    for value in truth.values():
        for form in (f"{value:.6f}", f"{value:.2f}", repr(value)):
            assert form not in text
    assert f"count={round(truth['a1'])}," not in text
    for marker in secret_markers(bundle.secret):
        assert marker.decode("latin-1") not in text
    assert "Traceback" not in text


def test_key_agent_help_and_the_other_commands_are_unchanged():
    run = [sys.executable, "-m", "cloakroom_client.cli"]
    out = subprocess.run([*run, "key-agent", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0
    for option in ("--keystore", "--interval", "--once"):
        assert option in out.stdout
    assert "CLOAKROOM_KEYSTORE" in out.stdout

    top = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert top.returncode == 0
    for command in ("me", "datasets", "upload", "publish", "buy", "purchases", "he", "key-agent"):
        assert re.search(rf"^\s+{command}\s", top.stdout, re.MULTILINE), command
    he_help = subprocess.run([*run, "he", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert he_help.returncode == 0 and "encrypt" in he_help.stdout and "publish" in he_help.stdout

    bad = subprocess.run([*run, "key-agent", "--interval", "0"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--interval" in bad.stderr


def test_one_pass_releases_skips_a_missing_key_and_survives_a_failing_job(owner, capsys):
    bundle, aggregates, length, truth = owner
    unknown = uuid.uuid4().hex
    with ContractServer() as server:
        server.add_job(make_plan(1, bundle), aggregates)
        server.add_job({**make_plan(2, bundle), "bundle_id": unknown}, aggregates)
        server.add_job({**make_plan(3, bundle), "bundle_id": unknown}, aggregates)
        server.add_job(make_plan(4, bundle), aggregates)
        server.add_job(make_plan(5, bundle, scale=1.0), aggregates)  # asks for less noise than it needs
        server.add_job(make_plan(6, bundle), aggregates)
        server.fail_release[4] = 1
        argv = ["--url", server.url, "--api-key", API_KEY, "key-agent", "--once", "--keystore", str(bundle.keystore)]
        code = cli_main(argv)
    err = capsys.readouterr().err

    assert code == 1  # job 4's release failed (and job 5's plan was refused)
    assert sorted(server.released) == [1, 6]
    assert [(job, status) for job, _, status in server.posts] == [(1, 200), (4, 500), (6, 200)]
    # Jobs without a key and the refused plan were not even downloaded.
    assert {job for job, _ in server.fetches} == {1, 4, 6}

    assert err.count(f"no key for bundle {unknown} in keystore; skipping its jobs") == 1
    assert "job 4: release failed: 500" in err
    assert "job 5: refused its plan: component 'sum': scale 1" in err
    # One line per released job, with the values that were posted (noisy ones), in order.
    lines = [line for line in err.splitlines() if "released job" in line]
    assert len(lines) == 2
    for line, job in zip(lines, (1, 6)):
        values = server.released[job]
        assert isinstance(values["count"], float) and isinstance(values["sum"], float)
        assert line.endswith(f"released job {job} (mean of age): count={values['count']:.6f}, sum={values['sum']:.6f}")
    assert err.index("job 4: release failed") < err.index("released job 6")
    # The noisy values are not the truth: the noise (scale 1.2e6 and 1e4) is really there.
    for job in (1, 6):
        assert abs(server.released[job]["sum"] - truth["a0"]) > 1.0
    assert server.released[1] != server.released[6]
    assert_nothing_secret_in(err, bundle, truth)


def test_one_pass_exits_0_when_every_job_is_released_or_skipped(owner, capsys):
    bundle, aggregates, length, truth = owner
    with ContractServer() as server:
        server.add_job(make_plan(1, bundle), aggregates)
        server.add_job(stranger_plan(2, bundle), aggregates)
        argv = ["--url", server.url, "--api-key", API_KEY, "key-agent", "--once", "--keystore", str(bundle.keystore)]
        assert cli_main(argv) == 0
        assert sorted(server.released) == [1]
    assert_nothing_secret_in(capsys.readouterr().err, bundle, truth)


def test_a_refused_api_key_and_an_unusable_key_file_are_errors(owner, capsys):
    bundle, aggregates, length, _ = owner
    with ContractServer() as server:
        server.add_job(make_plan(1, bundle), aggregates)
        argv = ["--url", server.url, "--api-key", "wrong", "key-agent", "--keystore", str(bundle.keystore)]
        assert cli_main(argv) == 1  # a refused key stops even a polling agent
        assert "401 not_authenticated" in capsys.readouterr().err

        # A key file holding only the public context is refused (by bundle id, without its content).
        public = (bundle.folder / "context.bin").read_bytes()
        (bundle.keystore / f"{bundle.manifest['bundle_id']}.secret").write_bytes(public)
        argv = ["--url", server.url, "--api-key", API_KEY, "key-agent", "--once", "--keystore", str(bundle.keystore)]
        assert cli_main(argv) == 1
        assert server.released == {} and server.fetches == []
    err = capsys.readouterr().err
    assert f"the key file of bundle {bundle.manifest['bundle_id']} cannot be used" in err


def test_a_signal_during_a_release_lets_that_job_finish_and_stops_before_the_next(owner, capsys):
    bundle, aggregates, length, _ = owner
    main_thread = threading.main_thread().ident
    with ContractServer() as server:
        for job in (1, 2, 3):
            server.add_job(make_plan(job, bundle), aggregates)
        # Ctrl-C arrives while the agent waits for the server's answer to job 1's release.
        server.on_release = lambda job: signal.pthread_kill(main_thread, signal.SIGINT)
        argv = ["--url", server.url, "--api-key", API_KEY, "key-agent", "--keystore", str(bundle.keystore)]
        assert cli_main(argv) == 0
        assert sorted(server.released) == [1]
    err = capsys.readouterr().err
    assert "released job 1 (mean of age)" in err
    assert err.rstrip().endswith("key agent stopped")
    assert "Traceback" not in err


def start_agent(server: ContractServer, bundle, interval: float) -> subprocess.Popen:
    env = {**os.environ, "CLOAKROOM_URL": server.url, "CLOAKROOM_API_KEY": API_KEY}
    env["CLOAKROOM_KEYSTORE"] = str(bundle.keystore)  # the default keystore comes from the environment
    return subprocess.Popen(
        [sys.executable, "-m", "cloakroom_client.cli", "key-agent", "--interval", str(interval)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_the_polling_agent_retries_a_failed_release_with_the_same_noise_and_stops_on_sigint(owner):
    bundle, aggregates, length, truth = owner
    with ContractServer() as server:
        server.add_job(make_plan(1, bundle), aggregates)
        server.add_job(make_plan(4, bundle), aggregates)
        server.fail_release[4] = 2
        agent = start_agent(server, bundle, interval=0.2)
        try:
            wait_for(lambda: 4 in server.released)
            # A job added while the agent runs is picked up by a later poll.
            server.add_job(make_plan(7, bundle), aggregates)
            wait_for(lambda: 7 in server.released)
            agent.send_signal(signal.SIGINT)
            out, err = agent.communicate(timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()
    assert agent.returncode == 0
    assert err.rstrip().endswith("key agent stopped")
    assert out == ""
    # Three attempts for job 4 posted the very same noisy values: no fresh noise for a retry.
    attempts = [(values, status) for job, values, status in server.posts if job == 4]
    assert [status for _, status in attempts] == [500, 500, 200]
    assert attempts[0][0] == attempts[1][0] == attempts[2][0]
    assert err.count("job 4: release failed: 500") == 1  # a repeated error is logged once
    assert "released job 4 (mean of age)" in err and "released job 7 (mean of age)" in err
    assert sorted(server.released) == [1, 4, 7]
    assert_nothing_secret_in(err, bundle, truth)


def test_sigterm_stops_the_agent_during_its_sleep_at_once(owner):
    bundle, aggregates, length, _ = owner
    with ContractServer() as server:
        server.add_job(make_plan(1, bundle), aggregates)
        agent = start_agent(server, bundle, interval=600)
        try:
            wait_for(lambda: 1 in server.released)
            time.sleep(0.5)  # the agent is now asleep until its next poll, ten minutes away
            sent = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            out, err = agent.communicate(timeout=30)
            elapsed = time.monotonic() - sent
        finally:
            if agent.poll() is None:
                agent.kill()
    assert agent.returncode == 0
    assert elapsed < 10
    assert err.rstrip().endswith("key agent stopped") and "Traceback" not in err


def test_the_plan_fingerprint_changes_with_what_is_released(bundle):
    plan = make_plan(1, bundle)
    assert release_spec_fingerprint(plan) == release_spec_fingerprint(json.loads(json.dumps(plan)))
    changed = make_plan(1, bundle)
    changed["components"][1]["terms"] = [["a0", 2.0]]
    assert release_spec_fingerprint(changed) != release_spec_fingerprint(plan)


def test_release_job_through_the_client_reuses_drawn_values_and_refuses_a_changed_plan(owner):
    from cloakroom_client import Client, CloakroomError
    from cloakroom_client.protocol.errors import ReleaseError
    from cloakroom_client.release import release_job

    bundle, aggregates, length, _ = owner
    secret = load_secret_context(bundle.manifest["bundle_id"], bundle.keystore)
    with ContractServer() as server:
        plan = make_plan(3, bundle)
        server.add_job(plan, aggregates)
        server.fail_release[3] = 1
        client = Client(server.url, API_KEY)
        assert [p["job"] for p in client.awaiting_jobs()] == [3]
        assert client.he_job(3) == plan
        assert client.aggregate_bytes(3, "a0") == aggregates["a0"]
        with pytest.raises(CloakroomError) as info:
            client.aggregate_bytes(3, "nope")
        assert info.value.status == 404 and info.value.code == "not_found"

        drawn: dict = {}
        with pytest.raises(CloakroomError) as info:
            release_job(client, plan, secret, rng=1, manifest=bundle.manifest, drawn=drawn)
        assert info.value.status == 500
        first = server.posts[-1][1]
        assert drawn[3][1] == first

        # The same job with different terms would combine the same noise differently: refused.
        changed = json.loads(json.dumps(plan))
        changed["components"][1]["terms"] = [["a0", 2.0]]
        with pytest.raises(ReleaseError, match="plan of job 3 changed"):
            release_job(client, changed, secret, manifest=bundle.manifest, drawn=drawn)

        released = release_job(
            client, plan, secret, manifest=bundle.manifest, drawn=drawn
        )  # no rng: the drawn values are reused
        assert released.values == first and released.job["status"] == "released"
        assert server.released[3] == first and drawn == {}
        with pytest.raises(CloakroomError) as info:
            client.he_job(3)
        assert info.value.status == 409 and info.value.code == "job_not_awaiting_key"
        with pytest.raises(CloakroomError) as info:
            client.release(3, first)
        assert info.value.code == "job_not_awaiting_key"
