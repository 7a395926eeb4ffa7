"""Every `cloakroom` command, run as a real process from a fresh virtual environment that holds only the
client (`pip install "./[he]"` of a copy of pyproject.toml and cloakroom_client/, nothing of the server),
against a live gunicorn on PostgreSQL and a Celery worker on Redis.

The environment is built once for the module (about a minute from the machine's package mirror); each
command runs outside the checkout, so nothing but the installed client can be imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cloakroom_client import Client
from cloakroom_client.protocol.escrow import new_kek
from tests.integration.live import (
    REPO_ROOT,
    ProcessPool,
    celery_worker_args,
    run_manage,
    site_env,
    start_web,
    worker_is_ready,
)

pytestmark = pytest.mark.integration

PASSWORD = "a long enough password 123"
DP_METADATA = {
    "title": "Clinic visits",
    "epsilon_cap": "5",
    "price_per_epsilon": "2",
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "region", "kind": "categorical", "categories": ["north", "south"]},
    ],
}
HE_SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "ward", "kind": "categorical", "categories": ["A", "B"]},
]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A new virtual environment with the client and its "he" extra installed, and nothing else."""
    root = tmp_path_factory.mktemp("client-venv")
    source = root / "src"
    source.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(
        REPO_ROOT / "cloakroom_client", source / "cloakroom_client", ignore=shutil.ignore_patterns("__pycache__")
    )
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[he]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return env_dir


def _admin_conn():
    return psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-stack")
    db_name = f"cloakroom_cli_{uuid.uuid4().hex[:10]}"
    with _admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    redis_url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    assert redis_url and redis_url.startswith("redis"), "this test needs Redis (set REDIS_URL)"
    tag = uuid.uuid4().hex[:8]
    kek_private, kek_public = new_kek()
    env = site_env(
        root,
        tag,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CLOAKROOM_KEK_PRIVATE_KEY=kek_private,
        CLOAKROOM_KEK_PUBLIC_KEY=kek_public,
    )
    result = run_manage(["migrate", "--noinput"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("cli-logs"))
    try:
        url = start_web(pool, env)
        worker = pool.start(
            "celery-worker",
            celery_worker_args(
                queues=f"dp-{tag},he-{tag},keys-{tag},ml-{tag},default", name=f"cli-{tag}", concurrency=2
            ),
            env,
        )
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
        yield url
    finally:
        pool.stop_all()
        print(pool.logs())
        with _admin_conn() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


class Terminal:
    """One user's shell: the fresh environment's `cloakroom`, a home of its own, run outside the checkout."""

    def __init__(self, venv: Path, url: str, home: Path):
        self.venv, self.url, self.home = venv, url, home
        home.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.home),
            "CLOAKROOM_URL": self.url,
            "LANG": "C.UTF-8",
        }
        done = subprocess.run(
            [str(self.venv / "bin" / "cloakroom"), *args],
            cwd=self.home,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert done.returncode == 0, f"cloakroom {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args).stdout)

    def login(self, username: str) -> None:
        self.run("login", "--username", username, "--password-stdin", stdin=PASSWORD + "\n")


def _people(url: str, tag: str) -> tuple[str, str]:
    owner, buyer = f"owner-{tag}", f"buyer-{tag}"
    for name, roles in ((owner, ["owner"]), (buyer, ["buyer"])):
        Client.signup(url, username=name, email=f"{name}@example.org", password=PASSWORD, roles=roles)
    return owner, buyer


def test_the_environment_holds_the_client_and_nothing_of_the_server(venv):
    probe = "import importlib.util as u; print([m for m in ('django', 'celery', 'compute') if u.find_spec(m)])"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd="/", capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    helped = subprocess.run([str(venv / "bin" / "cloakroom"), "--help"], cwd="/", capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    for command in (
        "login",
        "estimate",
        "query",
        "dummy-query",
        "dummy-table",
        "jobs",
        "result",
        "datasets",
        "buy",
        "he",
        "key-agent",
    ):
        assert command in helped.stdout


def test_a_buyer_estimates_runs_lists_and_downloads_from_the_terminal(venv, stack, tmp_path):
    url, tag = stack, uuid.uuid4().hex[:8]
    owner_name, buyer_name = _people(url, tag)
    owner = Terminal(venv, url, tmp_path / "owner")
    owner.login(owner_name)
    rows = "".join(f"{20 + i % 60},{'north' if i % 3 else 'south'}\n" for i in range(300))
    (owner.home / "visits.csv").write_text("age,region\n" + rows)
    (owner.home / "meta.json").write_text(json.dumps(DP_METADATA))
    draft = owner.json("upload", "visits.csv", "--metadata", "meta.json")
    assert owner.json("publish", str(draft["id"]))["status"] == "published"

    buyer = Terminal(venv, url, tmp_path / "buyer")
    buyer.login(buyer_name)
    buyer.login(buyer_name)  # a second run reuses the saved key
    book = buyer.home / ".cloakroom" / "credentials.json"
    assert oct(book.stat().st_mode & 0o777) == "0o600"
    key = json.loads(book.read_text())["servers"][url]["users"][buyer_name]["key"]
    assert len([k for k in Client(url, key)._request("GET", "api-keys/") if not k.get("revoked_at")]) == 1
    assert buyer.json("me")["username"] == buyer_name
    assert "Clinic visits" in buyer.run("datasets").stdout
    purchase = buyer.json("buy", str(draft["id"]), "2")

    shown = buyer.run("estimate", str(purchase["id"]), "-a", "count", "-g", "region", "--epsilon", "0.5").stdout
    assert shown.startswith(f"count by region on purchase {purchase['id']}\n")
    assert "noise_scale" in shown and "price" in shown
    estimate = buyer.json("estimate", str(purchase["id"]), "-a", "count", "-g", "region", "--epsilon", "0.5", "--json")
    assert Decimal(estimate["epsilon"]) == Decimal("0.5") and estimate["affordable"] is True

    ran = buyer.run("query", str(purchase["id"]), "-a", "count", "-g", "region", "--epsilon", "0.5")
    lines = ran.stdout.splitlines()
    assert lines[0].split() == ["region", "value", "ci95_low", "ci95_high"]
    assert [line.split()[0] for line in lines[2:4]] == ["north", "south"]
    counts = {line.split()[0]: float(line.split()[1]) for line in lines[2:4]}
    assert abs(counts["north"] - 200) < 40 and abs(counts["south"] - 100) < 40
    assert "epsilon charged 0.5" in lines[4]
    assert "released" in ran.stderr and ran.stderr.endswith("\n")  # the progress line, ended

    job = buyer.json(
        "query", str(purchase["id"]), "--query", '{"aggregate": "mean", "column": "age"}', "--epsilon", "0.5", "--json"
    )
    assert job["status"] == "released" and job["result"]["aggregate"] == "mean"
    listed = buyer.run("jobs").stdout.splitlines()
    assert listed[0].split()[:3] == ["id", "status", "dataset"]
    assert str(job["id"]) == listed[2].split()[0] and "mean of age" in listed[2]
    assert [j["id"] for j in buyer.json("jobs", "--json", "--status", "released")][0] == job["id"]

    table = buyer.run("result", str(job["id"])).stdout.splitlines()
    assert table[0].split() == ["value", "ci95_low", "ci95_high"]
    csv_text = buyer.run("result", str(job["id"]), "--csv").stdout
    assert csv_text.splitlines()[0] == "value,ci95_low,ci95_high"
    buyer.run("result", str(job["id"]), "--json", "-o", "job.json")
    assert json.loads((buyer.home / "job.json").read_text())["receipt"]["job"] == job["id"]
    assert buyer.json("purchases")[0]["epsilon_remaining"] == "1.000000"

    refused = buyer.run("query", str(purchase["id"]), "-a", "mean", "-c", "nope", "--epsilon", "0.1", ok=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    missing = buyer.run("result", "999999", ok=False)
    assert missing.returncode == 1 and "error:" in missing.stderr

    buyer.run("logout")
    assert buyer.run("me", ok=False).returncode == 1  # the key is revoked and forgotten
    assert Client(url, key).session.get(f"{url}/api/v1/me/").status_code == 401


def test_an_owner_encrypts_publishes_and_escrows_and_a_buyer_queries_the_he_dataset(venv, stack, tmp_path):
    url, tag = stack, uuid.uuid4().hex[:8]
    owner_name, buyer_name = _people(url, tag)
    owner = Terminal(venv, url, tmp_path / "owner")
    owner.login(owner_name)
    rng = np.random.default_rng(5)
    lines = [f"{rng.uniform(0, 100):.1f},{rng.choice(['A', 'B'])}" for _ in range(200)]
    (owner.home / "ages.csv").write_text("age,ward\n" + "\n".join(lines) + "\n")
    (owner.home / "schema.json").write_text(json.dumps(HE_SCHEMA))
    (owner.home / "meta.json").write_text(
        json.dumps({"title": "Ward ages", "epsilon_cap": "3", "price_per_epsilon": "1"})
    )
    encrypted = owner.run("he", "encrypt", "ages.csv", "--schema", "schema.json", "--out", "bundle")
    assert "bundle id:" in encrypted.stdout and encrypted.stderr.endswith("\n")
    dataset = owner.json("he", "publish", "bundle", "--metadata", "meta.json")
    assert dataset["status"] == "published"
    assert owner.json("he", "escrow", str(dataset["id"]))["key_custody"] == "escrow"
    assert owner.run("key-agent", "--once").returncode == 0  # nothing waits for the owner's own key

    buyer = Terminal(venv, url, tmp_path / "buyer")
    buyer.login(buyer_name)
    purchase = buyer.json("buy", str(dataset["id"]), "1")
    ran = buyer.run("query", str(purchase["id"]), "-a", "sum", "-c", "age", "--epsilon", "1", "--timeout", "120")
    assert ran.stdout.splitlines()[0].split()[-3:] == ["value", "ci95_low", "ci95_high"]
    assert "released" in ran.stderr and ran.stderr.endswith("\n")
    owner.run("he", "escrow", str(dataset["id"]), "--revoke")
