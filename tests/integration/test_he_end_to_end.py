"""HE mode end to end, every part real: the owner CLI encrypts a CSV and publishes it to a gunicorn server
on PostgreSQL; a buyer submits sum, mean, variance, dot-product and regression jobs through the SDK;
Celery worker processes on Redis aggregate the ciphertexts in parts; the owner's key agent, a separate
process with the secret key, releases them. Then every released value is checked against the plaintext
truth, within the DP noise (at a one-in-a-million tail, from the mechanism's scale) plus the stated CKKS
error, and the database, the media folder and every log are scanned for the secret key and for the
un-noised aggregates.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest
import requests

from cloakroom_client import Client, CloakroomError
from cloakroom_client import he as client_he
from cloakroom_client.protocol.escrow import new_kek
from cloakroom_client.upload import publish_bundle
from tests.fixtures.he_bundles import build_bundle, public_bytes, reseal, secret_markers
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

ROWS = 6000  # two ciphertexts per column at N=8192, so jobs run in two parts
PASSWORD = "a long enough password 123"
SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 50},
    {"name": "ward", "kind": "categorical", "categories": ["A", "B"]},
]
# A discrete Laplace variable exceeds TAIL * scale with probability below one in a million, where the
# scale is sensitivity / epsilon widened by the grid (at most 1/1024 more); rounding adds half a step.
TAIL = math.log(1e6) * (1 + 1 / 1024) + 0.01
EXTRACT_ROW = 17


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(20261123)
    age = np.round(rng.uniform(0, 100, ROWS), 1)
    return pd.DataFrame(
        {
            "age": age,
            "bmi": np.round(np.clip(19 + 0.12 * age + rng.normal(0, 3, ROWS), 10, 50), 2),
            "ward": rng.choice(["A", "B"], ROWS),
        }
    )


def _admin_conn():
    return psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("he-e2e")
    db_name = f"cloakroom_he_e2e_{uuid.uuid4().hex[:10]}"
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
        CLOAKROOM_HE_PART_CHUNKS="1",
        # Small enough that a padded ciphertext goes over it, large enough for a real N=8192 context.
        CLOAKROOM_MAX_BUNDLE_FILE_BYTES=str(3 * 1024 * 1024),
        # Key escrow: this test's one worker also consumes the keys queue, so it gets the private half.
        CLOAKROOM_KEK_PRIVATE_KEY=kek_private,
        CLOAKROOM_KEK_PUBLIC_KEY=kek_public,
    )
    result = run_manage(["migrate", "--noinput"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("he-e2e-logs"))
    try:
        url = start_web(pool, env)
        worker = pool.start(
            "celery-worker",
            celery_worker_args(queues=f"he-{tag},keys-{tag},default", name=f"he-{tag}", concurrency=2),
            env,
        )
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
        yield {"url": url, "env": env, "pool": pool, "root": root, "db": db_name}
    finally:
        pool.stop_all()
        print(pool.logs())
        with _admin_conn() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _cli(args: list[str], *, env: dict, api_key: str | None = None) -> subprocess.CompletedProcess:
    full_env = {**env}
    if api_key:
        full_env["CLOAKROOM_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "cloakroom_client.cli", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _numbers(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"-?\d+\.\d+(?:[eE][+-]?\d+)?", text)]


def test_owner_cli_buyer_sdk_workers_and_key_agent_release_noisy_values_and_leak_nothing(stack):
    url, env, pool, root = stack["url"], stack["env"], stack["pool"], stack["root"]
    frame = _frame()
    csv_path = root / "owner" / "admissions.csv"
    csv_path.parent.mkdir()
    frame.to_csv(csv_path, index=False)
    (root / "owner" / "schema.json").write_text(json.dumps(SCHEMA))
    keystore = root / "owner" / "keys"
    (root / "owner" / "metadata.json").write_text(
        json.dumps(
            {
                "title": "Admissions (encrypted)",
                "description": "Ages, BMI and wards, encrypted on the owner's machine.",
                "epsilon_cap": "20",
                "price_per_epsilon": "5.00",
                "row_count_public": True,
            }
        )
    )
    Client.signup(url, username="olga", email="olga@example.org", password=PASSWORD, roles=["owner"])
    Client.signup(url, username="bram", email="bram@example.org", password=PASSWORD, roles=["buyer"])
    owner_key = Client.create_api_key(url, username="olga", password=PASSWORD)
    buyer = Client(url, Client.create_api_key(url, username="bram", password=PASSWORD))
    cli_env = {**env, "CLOAKROOM_URL": url}

    # 1. The owner encrypts and publishes with the CLI; the secret key stays in the local keystore.
    done = _cli(
        [
            "he",
            "encrypt",
            str(csv_path),
            "--schema",
            str(root / "owner" / "schema.json"),
            "--out",
            str(root / "owner" / "bundle"),
            "--job-classes",
            "sum,product",
            "--keystore",
            str(keystore),
            "--no-progress",
        ],
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    published = _cli(
        [
            "he",
            "publish",
            str(root / "owner" / "bundle"),
            "--metadata",
            str(root / "owner" / "metadata.json"),
            "--no-progress",
            "--keystore",
            str(keystore),
        ],
        env=cli_env,
        api_key=owner_key,
    )
    assert published.returncode == 0, published.stderr
    dataset = json.loads(published.stdout)
    assert dataset["bundle_status"] == "ready"
    # `he publish` puts the dataset on sale itself; publishing it again is refused and changes nothing.
    assert dataset["status"] == "published"
    again = _cli(["publish", str(dataset["id"])], env=cli_env, api_key=owner_key)
    assert again.returncode != 0 and "already published" in again.stderr, again.stderr

    # 2. The buyer buys and submits jobs through the SDK.
    purchase = buyer.buy(dataset["id"], "10")
    age, bmi = frame["age"].to_numpy(), frame["bmi"].to_numpy()
    ward_a = (frame["ward"] == "A").to_numpy().astype(float)
    weights = np.round(np.random.default_rng(4).uniform(0, 1, ROWS), 3)
    jobs = {
        "sum": buyer.submit(purchase["id"], {"aggregate": "sum", "column": "age"}, epsilon="1"),
        "mean": buyer.submit(purchase["id"], {"aggregate": "mean", "column": "bmi"}, epsilon="1"),
        "variance": buyer.submit(purchase["id"], {"aggregate": "variance", "column": "age"}, epsilon="1"),
        "dot": buyer.submit(
            purchase["id"], {"aggregate": "dot", "column": "age", "weights": weights.tolist()}, epsilon="1"
        ),
        "regression": buyer.submit(
            purchase["id"],
            {
                "aggregate": "regression",
                "columns": ["age"],
                "target": "bmi",
                "filter": {"column": "ward", "category": "A"},
            },
            epsilon="2",
        ),
        # The single-row extraction attempt: weight one on one row, zero elsewhere.
        "extract": buyer.submit(
            purchase["id"],
            {"aggregate": "dot", "column": "age", "weights": {"indexes": [EXTRACT_ROW], "values": [1]}},
            epsilon="1",
        ),
    }
    ids = {name: job["id"] for name, job in jobs.items()}

    def status(name: str) -> str:
        return buyer.job(ids[name])["status"]

    pool.wait_until(
        "every job to wait for the key",
        lambda: all(status(n) == "awaiting_key" for n in ids),
        timeout=180,
        interval=0.5,
    )
    progress = buyer.job(ids["sum"])["progress"]
    assert progress == {"done": 2, "total": 2}

    # 3. The owner's key agent, a process of its own, releases them.
    agent = pool.start(
        "key-agent",
        [sys.executable, "-m", "cloakroom_client.cli", "key-agent", "--keystore", str(keystore), "--interval", "0.5"],
        {**cli_env, "CLOAKROOM_API_KEY": owner_key},
    )
    pool.wait_until(
        "the key agent to release every job",
        lambda: all(status(n) == "released" for n in ids),
        timeout=120,
        interval=0.5,
    )
    agent.popen.send_signal(signal.SIGINT)
    assert agent.popen.wait(timeout=30) == 0, agent.log()
    assert "key agent stopped" in agent.log() and "Traceback" not in agent.log()
    for job_id in ids.values():
        assert f"released job {job_id}" in agent.log()

    released = {name: buyer.job(job_id) for name, job_id in ids.items()}
    ckks = {name: job["receipt"]["ckks"]["error_bound"] for name, job in released.items()}

    def value(name: str) -> float:
        return released[name]["result"]["groups"][0]["value"]

    # 4. Every value within the DP noise (one-in-a-million tail of its scale) plus the CKKS error.
    # A row of age in [0, 100] replaced in place moves the sum by at most 100; epsilon 1.
    assert 100.0 <= released["sum"]["receipt"]["noise_scale"] <= 100.0 * (1 + 1 / 1024)
    assert abs(value("sum") - age.sum()) <= 100 * TAIL + ckks["sum"]

    n = ROWS
    t_count, t_sum = 2 * TAIL, 40 / 0.5 * TAIL  # epsilon 1/2 each; the centred sum moves by 50 - 10
    m = bmi.mean() - 30
    assert abs(value("mean") - bmi.mean()) <= (t_sum + abs(m) * t_count) / (n - t_count) + ckks["mean"]

    r = 50.0
    t_c, t_1, t_2 = 3 * TAIL, 3 * 2 * r * TAIL, 3 * r * r * TAIL  # epsilon 1/3 each
    dq = (t_2 + r * r * t_c) / (n - t_c)
    dm = (t_1 + r * t_c) / (n - t_c)
    assert abs(value("variance") - age.var()) <= dq + dm * (2 * r + dm) + ckks["variance"]

    w_bound = float(np.abs(weights).max())
    assert w_bound * 100 <= released["dot"]["receipt"]["noise_scale"] <= w_bound * 100 * (1 + 1 / 1024)
    assert abs(value("dot") - float(weights @ age)) <= w_bound * 100 * TAIL + ckks["dot"]

    truths = {
        "n": ward_a.sum(),
        "sum(age)": (age * ward_a).sum(),
        "sum(age*age)": (age * age * ward_a).sum(),
        "sum(bmi)": (bmi * ward_a).sum(),
        "sum(age*bmi)": (age * bmi * ward_a).sum(),
    }
    sensitivities = {"n": 1, "sum(age)": 100, "sum(age*age)": 1e4, "sum(bmi)": 50, "sum(age*bmi)": 5e3}
    for group in released["regression"]["result"]["groups"]:
        label = group["key"]["statistic"]
        scale = sensitivities[label] * 5 / 2.0  # epsilon 2 split over five statistics
        assert abs(group["value"] - truths[label]) <= scale * TAIL + ckks["regression"], label
    assert released["regression"]["result"]["regression"]["columns"] == ["intercept", "age"]

    # 5. The extraction attempt was noised to that row's whole range, and charged.
    extract = released["extract"]
    assert 100.0 <= extract["receipt"]["noise_scale"] <= 100.0 * (1 + 1 / 1024)
    assert extract["receipt"]["epsilon_charged"] == "1.000000"
    assert abs(value("extract") - age[EXTRACT_ROW]) <= 100 * TAIL + ckks["extract"]
    assert value("extract") != pytest.approx(age[EXTRACT_ROW], abs=1e-3)
    ledger = buyer.ledger(purchase["id"])
    assert ledger["epsilon_committed"] == "7.000000" and ledger["epsilon_remaining"] == "3.000000"

    # 6. Nothing the platform holds or logged contains the secret key or an un-noised aggregate.
    secret_ctx = client_he.load_secret_context(dataset["bundle_id"], keystore)
    key_path = root / "owner" / "sk.bin"
    secret_ctx.secret_key().data.save(str(key_path))
    key = key_path.read_bytes()
    windows = [key[i : i + 48] for i in range(64, len(key) - 48, max(1, (len(key) - 112) // 16))]
    markers = [*windows, *secret_markers(key)]
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", stack["db"]], capture_output=True, timeout=120
    )
    assert dump.returncode == 0, dump.stderr
    media = [p for p in (root / "media").rglob("*") if p.is_file()]
    assert media, "the bundle should be in the media folder"
    logs = [p.log_path for p in pool.processes]
    haystacks = {"database dump": dump.stdout, **{str(p): p.read_bytes() for p in media + logs}}
    for where, data in haystacks.items():
        assert not any(marker in data for marker in markers), f"secret key material in {where}"

    # The un-noised aggregates: every exact sum the jobs computed under encryption.
    exact = [
        age.sum(),
        (bmi - 30).sum(),
        bmi.sum(),
        ((age - 50) ** 2).sum(),
        (age - 50).sum(),
        float(weights @ age),
        *(v for k, v in truths.items() if k != "n"),
    ]
    # A decrypted aggregate differs from its truth by at most the CKKS bound; a noisy one by the noise,
    # whose scale here is at least 40, so it lands this close with probability below 1e-4 in all.
    close = 2 * max(ckks.values()) + 1e-6
    for where, data in haystacks.items():
        for number in _numbers(data.decode("latin-1")):
            for truth in exact:
                assert abs(number - truth) > close, f"un-noised {truth} in {where}"
    # The agent was stopped on purpose; the pool's other waits check that no process has exited.
    pool.processes.remove(agent)


def _truncate(bundle) -> None:
    path = bundle.file("c000.0000.ct")
    path.write_bytes(path.read_bytes()[:20000])
    reseal(bundle)


def _random_bytes(bundle) -> None:
    path = bundle.file("c000.0000.ct")
    path.write_bytes(os.urandom(path.stat().st_size))
    reseal(bundle)


def _secret_context(bundle) -> None:
    bundle.file("context.bin").write_bytes(bundle.secret_context)
    reseal(bundle)


def _bfv(bundle) -> None:
    import tenseal as ts

    bundle.file("context.bin").write_bytes(public_bytes(ts.context(ts.SCHEME_TYPE.BFV, 4096, plain_modulus=1032193)))
    reseal(bundle)


def _over_the_size_limit(bundle) -> None:
    path = bundle.file("c000.0000.ct")
    path.write_bytes(path.read_bytes() + b"\0" * (3 * 1024 * 1024))
    reseal(bundle)


def _rows_disagree(bundle) -> None:
    bundle.manifest["rows"] = 5000  # three ciphertexts per column at 2048 slots; the bundle has one
    bundle.save_manifest()


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (_truncate, "not a CKKS ciphertext"),
        (_random_bytes, "not a CKKS ciphertext"),
        (_secret_context, "secret key"),
        (_bfv, "CKKS"),
        (_over_the_size_limit, "limit"),
        (_rows_disagree, "need"),
    ],
)
def test_bad_bundles_get_a_400_store_nothing_and_leave_web_and_worker_alive(stack, tmp_path, mutate, words):
    url, pool, root = stack["url"], stack["pool"], stack["root"]
    username = f"owner{uuid.uuid4().hex[:8]}"
    Client.signup(url, username=username, email=f"{username}@example.org", password=PASSWORD, roles=["owner", "buyer"])
    owner = Client(url, Client.create_api_key(url, username=username, password=PASSWORD))
    metadata = {"title": "Bad bundle", "epsilon_cap": "2", "price_per_epsilon": "1.00"}

    bad = build_bundle(tmp_path / "bad", rows=300)
    mutate(bad)
    with pytest.raises(CloakroomError) as caught:
        publish_bundle(owner, bad.folder, metadata, progress=False)
    assert caught.value.status == 400, caught.value.message
    assert words.lower() in caught.value.message.lower(), caught.value.message
    assert bad.secret not in caught.value.message.encode()
    # Nothing of it is kept: no dataset is ready, and no bundle file of it remains in the media folder.
    mine = owner.datasets(mine=True)
    assert all(d["status"] == "draft" for d in mine)
    for dataset in mine:
        assert not [p for p in (root / "media" / "he" / str(dataset["id"])).rglob("*") if p.is_file()]

    # The web server answers and the worker, still the same processes, computes an HE job.
    assert requests.get(f"{url}/api/v1/health/", timeout=5).status_code == 200
    good = build_bundle(tmp_path / "good", rows=300)
    dataset = publish_bundle(owner, good.folder, {**metadata, "title": "Good bundle"}, progress=False)
    assert dataset["status"] == "published"  # publish_bundle published it
    buyer_name = f"buyer{uuid.uuid4().hex[:8]}"
    Client.signup(url, username=buyer_name, email=f"{buyer_name}@example.org", password=PASSWORD, roles=["buyer"])
    buyer = Client(url, Client.create_api_key(url, username=buyer_name, password=PASSWORD))
    purchase = buyer.buy(dataset["id"], "1")
    job = buyer.submit(purchase["id"], {"aggregate": "sum", "column": "age"}, epsilon="0.5")
    pool.wait_until(
        "the worker to compute the job",
        lambda: buyer.job(job["id"])["status"] == "awaiting_key",
        timeout=60,
        interval=0.25,
    )
    assert all(p.alive() for p in pool.processes if p.name in ("gunicorn", "celery-worker"))


def test_an_escrowed_key_lets_the_keys_queue_worker_release_jobs_with_no_key_agent(stack, tmp_path):
    url, env, pool, root = stack["url"], stack["env"], stack["pool"], stack["root"]
    tag = uuid.uuid4().hex[:8]
    for name, roles in ((f"esc-owner-{tag}", ["owner"]), (f"esc-buyer-{tag}", ["buyer"])):
        Client.signup(url, username=name, email=f"{name}@example.org", password=PASSWORD, roles=roles)
    owner_key = Client.create_api_key(url, username=f"esc-owner-{tag}", password=PASSWORD)
    owner = Client(url, owner_key)
    buyer = Client(url, Client.create_api_key(url, username=f"esc-buyer-{tag}", password=PASSWORD))
    bundle = build_bundle(tmp_path / "escrow", rows=300)
    dataset = publish_bundle(
        owner, bundle.folder, {"title": "Escrowed", "epsilon_cap": "2", "price_per_epsilon": "1"}, progress=False
    )
    assert dataset["status"] == "published"  # publish_bundle published it

    escrowed = _cli(
        ["he", "escrow", str(dataset["id"]), "--keystore", str(bundle.keystore)],
        env={**env, "CLOAKROOM_URL": url},
        api_key=owner_key,
    )
    assert escrowed.returncode == 0, escrowed.stderr
    assert json.loads(escrowed.stdout)["key_custody"] == "escrow"
    sealed = (root / "media" / "he" / str(dataset["id"]) / "escrow.sealed").read_bytes()
    assert not any(marker in sealed for marker in secret_markers(bundle.secret))

    purchase = buyer.buy(dataset["id"], "1")
    job = buyer.submit(purchase["id"], {"aggregate": "sum", "column": "age"}, epsilon="1")
    pool.wait_until(
        "the escrow worker to release the job", lambda: buyer.job(job["id"])["status"] == "released", timeout=60
    )
    released = buyer.job(job["id"])
    assert released["receipt"]["mode"] == "he"
    # Age in [0, 120], replaced in place: sensitivity 120, on a grid that costs at most 1/1024 more noise.
    assert 120.0 <= released["receipt"]["noise_scale"] <= 120.0 * (1 + 1 / 1024)
    worker_log = next(p for p in pool.processes if p.name == "celery-worker").log()
    assert f"job {job['id']} released with the escrowed key" in worker_log
