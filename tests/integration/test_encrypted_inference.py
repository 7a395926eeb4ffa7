"""Encrypted inference end to end, every part real: an owner uploads a DP table to gunicorn on
PostgreSQL, a buyer trains a logistic regression on a Celery worker (queue dp) and publishes it, and a
third account's client process (`cloakroom predict`) encrypts 200 rows with a fresh CKKS key, has the
worker (queue he) score the ciphertexts, and decrypts. Its labels are the plaintext model's, it paid the
price per row to the publisher, and a scan of the database, the private storage and every log finds
none of the rows' feature values and none of their scores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pytest

from cloakroom_client import Client
from cloakroom_client import models as sdk_models
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
SCHEMA = [
    {"name": "size", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "density", "kind": "numeric", "lower": 0, "upper": 10},
    {"name": "site", "kind": "categorical", "categories": ["left", "right"]},
    {"name": "malignant", "kind": "boolean"},
]
ROWS = 200


def _admin_conn():
    return psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference-e2e")
    db_name = f"cloakroom_inference_{uuid.uuid4().hex[:10]}"
    with _admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    redis_url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    assert redis_url and redis_url.startswith("redis"), "this test needs Redis (set REDIS_URL)"
    tag = uuid.uuid4().hex[:8]
    env = site_env(
        root,
        tag,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
    )
    result = run_manage(["migrate", "--noinput"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("inference-e2e-logs"))
    try:
        url = start_web(pool, env)
        worker = pool.start(
            "celery-worker", celery_worker_args(queues=f"dp-{tag},he-{tag},default", name=f"inf-{tag}"), env
        )
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
        yield {"url": url, "env": env, "pool": pool, "root": root, "db": db_name}
    finally:
        pool.stop_all()
        print(pool.logs())
        with _admin_conn() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Six decimals, so that a value found in a haystack is that value, not a coincidence.
    size = np.round(rng.uniform(0, 100, n), 6)
    density = np.round(rng.uniform(0, 10, n), 6)
    return pd.DataFrame(
        {
            "size": size,
            "density": density,
            "site": rng.choice(["left", "right"], n),
            "malignant": (size / 10 + density + rng.normal(0, 1, n)) > 10,
        }
    )


def test_a_client_process_predicts_on_encrypted_rows_and_the_platform_keeps_nothing_in_the_clear(stack):
    url, env, pool, root = stack["url"], stack["env"], stack["pool"], stack["root"]
    for name, roles in (("olga", ["owner"]), ("bram", ["buyer"]), ("cleo", ["buyer"])):
        Client.signup(url, username=name, email=f"{name}@example.org", password=PASSWORD, roles=roles)
    owner = Client(url, Client.create_api_key(url, username="olga", password=PASSWORD))
    trainer = Client(url, Client.create_api_key(url, username="bram", password=PASSWORD))
    client_key = Client.create_api_key(url, username="cleo", password=PASSWORD)
    client = Client(url, client_key)

    # 1. The owner's table; the buyer trains on it (queue dp) and publishes the model.
    (root / "owner").mkdir()
    _table(800, 1).to_csv(root / "owner" / "tumours.csv", index=False)
    meta = {"title": "Tumours", "epsilon_cap": "20", "price_per_epsilon": "1", "columns": SCHEMA}
    dataset = owner.upload(str(root / "owner" / "tumours.csv"), meta)
    owner.publish(dataset["id"])
    purchase = trainer.buy(dataset["id"], "10")
    model = {"type": "logistic_regression", "features": ["size", "density", "site"], "label": "malignant"}
    job = trainer.wait(trainer.train(purchase["id"], model, epsilon="8"), timeout=120, progress=False)
    assert job["status"] == "released", job
    listing = trainer.publish_model(job["id"], title="Tumour diagnosis", price_per_prediction="0.05")
    assert listing["dp"] is True
    doc = trainer.model_file(job["id"])
    before = {"cleo": Decimal(client.me()["credits"]), "bram": Decimal(trainer.me()["credits"])}

    # 2. Another account's client process encrypts, predicts and decrypts with the CLI.
    rows = _table(ROWS, 2).drop(columns=["malignant"])
    (root / "client").mkdir()
    rows.to_csv(root / "client" / "rows.csv", index=False)
    out = root / "client" / "scores.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloakroom_client.cli",
            "predict",
            str(listing["id"]),
            str(root / "client" / "rows.csv"),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**env, "CLOAKROOM_URL": url, "CLOAKROOM_API_KEY": client_key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "prediction" in done.stderr and "ready" in done.stderr  # the progress line
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["score_True", "probability_True", "prediction"]
    assert len(scores) == ROWS

    # 3. The labels are the plaintext model's; the client paid 200 x 0.05 to the publisher.
    plain = sdk_models.scores(doc, sdk_models.design_matrix(doc, rows))[:, 0]
    assert np.max(np.abs(scores["score_True"].to_numpy() - plain)) < 1e-3
    assert scores["prediction"].tolist() == (plain > 0).tolist()
    assert Decimal(client.me()["credits"]) == before["cleo"] - Decimal("10.00")
    assert Decimal(trainer.me()["credits"]) == before["bram"] + Decimal("10.00")

    # 4. Nothing the platform holds or logged has a feature value or a score of those rows in the clear.
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-d", stack["db"]], capture_output=True, timeout=120
    )
    assert dump.returncode == 0, dump.stderr
    media = [p for p in (root / "media").rglob("*") if p.is_file()]
    assert not [p for p in media if "predictions" in p.parts], "the prediction's files should be gone"
    logs = [p.log_path for p in pool.processes]
    haystacks = {"database dump": dump.stdout, **{str(p): p.read_bytes() for p in media + logs}}
    features = [repr(float(v)).encode() for v in [*rows["size"], *rows["density"]]]
    features = [f for f in features if len(f) >= 8]  # values with enough digits to mean something
    assert len(features) > 300
    # A score as any leak would spell it: its first eight decimals (truncated, not rounded).
    secrets_ = features + [f"{s:.12f}"[:-4].encode() for s in plain]
    for where, data in haystacks.items():
        found = [s for s in secrets_ if s in data]
        assert not found, f"{found[:3]} in {where}"


KINDS = {
    "logistic_regression": {"features": ["size", "density", "site"], "label": "malignant"},
    "linear_regression": {"features": ["density", "site", "malignant"], "label": "size"},
    "naive_bayes": {"features": ["size", "density"], "label": "site"},
    "random_forest": {"features": ["size", "density", "site"], "label": "malignant", "params": {"n_trees": 3}},
    "kmeans": {"features": ["size", "density"], "params": {"k": 3, "iterations": 2}},
    "pca": {"features": ["size", "density", "site"]},
}


def test_a_training_job_of_each_model_kind_is_released_through_the_worker_and_charged_once(stack):
    # Issue 15's "done when": through the real worker (queue dp), each model type is released with its
    # receipt and one reserve and one commit in the ledger, and its model file rebuilds in plain
    # scikit-learn (the SDK) and predicts what its parameters say.
    url, root = stack["url"], stack["root"]
    for name, roles in (("odile", ["owner"]), ("theo", ["buyer"])):
        Client.signup(url, username=name, email=f"{name}@example.org", password=PASSWORD, roles=roles)
    owner = Client(url, Client.create_api_key(url, username="odile", password=PASSWORD))
    trainer = Client(url, Client.create_api_key(url, username="theo", password=PASSWORD))
    (root / "kinds").mkdir()
    table = _table(600, 3)
    table.to_csv(root / "kinds" / "tumours.csv", index=False)
    meta = {"title": "Tumours, all kinds", "epsilon_cap": "40", "price_per_epsilon": "1", "columns": SCHEMA}
    dataset = owner.upload(str(root / "kinds" / "tumours.csv"), meta)
    owner.publish(dataset["id"])
    purchase = trainer.buy(dataset["id"], "30")
    jobs = {kind: trainer.train(purchase["id"], {"type": kind, **body}, epsilon="4") for kind, body in KINDS.items()}
    frame = table
    for kind, submitted in jobs.items():
        job = trainer.wait(submitted, timeout=180, progress=False)
        assert job["status"] == "released", (kind, job)
        assert job["receipt"]["training"]["parts"] and job["receipt"]["epsilon_charged"] == "4.000000", kind
        doc = trainer.model_file(job["id"])
        estimator = sdk_models.estimator(doc)
        x = sdk_models.design_matrix(doc, frame)
        if kind in ("logistic_regression", "linear_regression"):
            expected = sdk_models.scores(doc, x)
            got = estimator.decision_function(x) if kind == "logistic_regression" else estimator.predict(x)
            np.testing.assert_allclose(np.ravel(got), np.ravel(expected), atol=1e-9)
        elif kind == "pca":
            model = doc["model"]
            expected = (x.to_numpy(dtype=float) - np.array(model["mean"])) @ np.array(model["components"]).T
            np.testing.assert_allclose(estimator.transform(x), expected, atol=1e-9)
        elif kind == "kmeans":
            centres = np.array(doc["model"]["centres"])
            distances = ((x.to_numpy(dtype=float)[:, None, :] - centres[None]) ** 2).sum(axis=2)
            assert estimator.predict(x).tolist() == distances.argmin(axis=1).tolist()
        else:
            assert len(estimator.predict(x)) == len(frame) and set(estimator.predict(x)) <= set(doc["model"]["classes"])
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{stack['db']}") as conn:
        ledger = conn.execute(
            "SELECT job_id, kind, count(*) FROM marketplace_ledgerentry WHERE job_id = ANY(%s) GROUP BY job_id, kind",
            ([j["id"] for j in jobs.values()],),
        ).fetchall()
    assert sorted((kind, count) for _, kind, count in ledger) == sorted([("commit", 1), ("reserve", 1)] * len(KINDS))
