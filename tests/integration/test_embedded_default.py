"""The zero-setup default, end to end: SQLite and Kombu's filesystem broker under CLOAKROOM_VAR_DIR,
a real gunicorn and a real Celery worker, driven through real HTTP requests.

No DATABASE_URL, REDIS_URL or CELERY_BROKER_URL reaches these processes, so this is exactly what a
newcomer gets before configuring anything.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests
from cryptography.fernet import Fernet

from tests.integration.live import (
    ProcessPool,
    celery_worker_args,
    clean_env,
    run_manage,
    start_web,
    worker_is_ready,
)

pytestmark = pytest.mark.integration

PASSWORD = "a long and unguessable passphrase 1842"
HTTP_TIMEOUT = 30

CSV = (
    "age,income,region,smoker\n"
    "34,52000.5,north,true\n"
    "41,61000,south,false\n"
    "29,38000,north,false\n"
    "57,72000.25,east,true\n"
)
METADATA = {
    "title": "Embedded default survey",
    "description": "Four rows that exist only to prove the zero-setup default works.",
    "mode": "dp",
    "epsilon_cap": "3",
    "delta_cap": "0",
    "price_per_epsilon": "12.50",
    "row_count_public": True,
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 18, "upper": 90},
        {"name": "income", "kind": "numeric", "lower": 0, "upper": 250000},
        {"name": "region", "kind": "categorical", "categories": ["north", "south", "east", "west"]},
        {"name": "smoker", "kind": "boolean"},
    ],
}


@dataclass
class EmbeddedStack:
    base_url: str
    env: dict[str, str]
    var_dir: Path
    pool: ProcessPool

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("embedded-var")
    log_dir = tmp_path_factory.mktemp("embedded-logs")
    env = clean_env(
        CLOAKROOM_VAR_DIR=str(var_dir),
        SECRET_KEY=secrets.token_urlsafe(50),
        CLOAKROOM_DATA_KEYS=Fernet.generate_key().decode(),
        CLOAKROOM_SIGNUP_CREDITS="500",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        result = run_manage(command, env)
        assert result.returncode == 0, f"manage.py {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"

    pool = ProcessPool(log_dir=log_dir)
    try:
        worker = pool.start("celery-worker", celery_worker_args(queues="default,dp,he,keys,ml", name="embedded"), env)
        base_url = start_web(pool, env) + "/"
        web = next(p for p in pool.processes if p.name == "gunicorn")
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
        assert web.alive()
        yield EmbeddedStack(base_url=base_url, env=env, var_dir=var_dir, pool=pool)
    finally:
        pool.stop_all()
        # pytest shows this output only for a failing test, which is when the logs are wanted.
        print(pool.logs())


def signup(stack: EmbeddedStack, username: str, roles: list[str]) -> None:
    response = requests.post(
        stack.url("/api/v1/auth/signup/"),
        json={"username": username, "email": f"{username}@example.org", "password": PASSWORD, "roles": roles},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text


def api_key(stack: EmbeddedStack, username: str) -> dict[str, str]:
    response = requests.post(
        stack.url("/api/v1/api-keys/"), json={"name": "it"}, auth=(username, PASSWORD), timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def test_the_sqlite_file_and_the_broker_folder_live_under_the_var_dir(stack):
    assert (stack.var_dir / "cloakroom.sqlite3").is_file()
    assert (stack.var_dir / "broker" / "queue").is_dir()
    assert (stack.var_dir / "broker" / "processed").is_dir()
    # The worker declared its exchanges at start-up; their table must not land in the working folder.
    assert list((stack.var_dir / "broker" / "control").glob("*.exchange"))


def test_an_owner_sells_and_a_buyer_buys_over_real_http(stack):
    signup(stack, "owner1", ["owner"])
    signup(stack, "buyer1", ["buyer"])
    owner = api_key(stack, "owner1")
    buyer = api_key(stack, "buyer1")

    created = requests.post(
        stack.url("/api/v1/datasets/"),
        headers=owner,
        data={"metadata": json.dumps(METADATA)},
        files={"file": ("survey.csv", CSV.encode(), "text/csv")},
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["status"] == "draft"

    published = requests.post(
        stack.url(f"/api/v1/datasets/{dataset['id']}/publish/"), headers=owner, timeout=HTTP_TIMEOUT
    )
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"

    bought = requests.post(
        stack.url("/api/v1/purchases/"),
        headers=buyer,
        json={"dataset": dataset["id"], "epsilon": "0.5"},
        timeout=HTTP_TIMEOUT,
    )
    assert bought.status_code == 201, bought.text
    assert Decimal(bought.json()["price"]) == Decimal("6.25")

    # 500 sign-up credits, minus 0.5 epsilon at 12.50 per unit for the buyer, plus it for the owner.
    assert Decimal(
        requests.get(stack.url("/api/v1/me/"), headers=buyer, timeout=HTTP_TIMEOUT).json()["credits"]
    ) == Decimal("493.75")
    assert Decimal(
        requests.get(stack.url("/api/v1/me/"), headers=owner, timeout=HTTP_TIMEOUT).json()["credits"]
    ) == Decimal("506.25")

    purchases = requests.get(stack.url("/api/v1/purchases/"), headers=buyer, timeout=HTTP_TIMEOUT).json()
    assert purchases["count"] == 1
    assert purchases["results"][0]["dataset"] == dataset["id"]
    assert Decimal(purchases["results"][0]["epsilon"]) == Decimal("0.5")

    detail = requests.get(stack.url(f"/api/v1/datasets/{dataset['id']}/"), timeout=HTTP_TIMEOUT).json()
    assert Decimal(detail["epsilon_available"]) == Decimal("2.5")


def test_the_uploaded_file_is_stored_encrypted_under_the_var_dir(stack):
    signup(stack, "owner2", ["owner"])
    owner = api_key(stack, "owner2")
    created = requests.post(
        stack.url("/api/v1/datasets/"),
        headers=owner,
        data={"metadata": json.dumps({**METADATA, "title": "Stored encrypted"})},
        files={"file": ("survey.csv", CSV.encode(), "text/csv")},
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    stored = [p for p in (stack.var_dir / "private").rglob("*") if p.is_file()]
    assert stored, "the upload left no file in the private folder under CLOAKROOM_VAR_DIR"
    for path in stored:
        assert b"north" not in path.read_bytes()


def test_the_openapi_schema_is_served(stack):
    response = requests.get(stack.url("/api/v1/schema/"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert "openapi: 3" in response.text
    assert "/api/v1/purchases/" in response.text


def test_swagger_ui_loads_every_asset_from_this_server(stack):
    response = requests.get(stack.url("/api/docs/"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    assets = re.findall(
        r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", response.text, re.IGNORECASE
    )
    assert any("swagger-ui" in asset for asset in assets), assets
    external = [asset for asset in assets if urlparse(asset).netloc or asset.startswith("//")]
    assert external == [], f"the docs page loads assets from other hosts: {external}"
    for asset in assets:
        fetched = requests.get(stack.url(urljoin("/api/docs/", asset)), timeout=HTTP_TIMEOUT)
        assert fetched.status_code == 200, f"{asset} -> {fetched.status_code}"
        assert fetched.content, f"{asset} is empty"


def test_the_filesystem_broker_worker_processes_a_heartbeat(stack):
    result = run_manage(["wait_for_worker", "--timeout", "60"], stack.env, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{stack.pool.logs()}"
    assert "worker ready" in result.stdout


def test_health_reports_the_database_the_broker_and_the_last_worker_heartbeat(stack):
    result = run_manage(["wait_for_worker", "--timeout", "60"], stack.env, timeout=120)
    assert result.returncode == 0, result.stderr
    response = requests.get(stack.url("/api/v1/health/"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "ok"
    assert body["worker"]["last_seen"] is not None


def test_forty_eight_concurrent_sign_ups_and_submissions_all_succeed_on_sqlite(stack):
    """The demo's SQLite file under concurrent clients: WAL, a busy timeout and IMMEDIATE
    transactions (config/settings) mean no request fails with "database is locked"."""
    from concurrent.futures import ThreadPoolExecutor

    tag = secrets.token_hex(3)
    names = [f"c{tag}-{i}" for i in range(48)]

    def join(name: str) -> int:
        return requests.post(
            stack.url("/api/v1/auth/signup/"),
            json={"username": name, "email": f"{name}@example.org", "password": PASSWORD, "roles": ["owner", "buyer"]},
            timeout=HTTP_TIMEOUT,
        ).status_code

    with ThreadPoolExecutor(max_workers=48) as pool:
        assert list(pool.map(join, names)) == [201] * 48

    owner = api_key(stack, names[0])
    created = requests.post(
        stack.url("/api/v1/datasets/"),
        headers=owner,
        data={"metadata": json.dumps({**METADATA, "title": f"Concurrent {tag}", "epsilon_cap": "20"})},
        files={"file": ("survey.csv", CSV.encode(), "text/csv")},
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    dataset = created.json()["id"]
    requests.post(stack.url(f"/api/v1/datasets/{dataset}/publish/"), headers=owner, timeout=HTTP_TIMEOUT)

    buyers = [api_key(stack, name) for name in names[1:9]]
    purchases = []
    for headers in buyers:
        bought = requests.post(
            stack.url("/api/v1/purchases/"),
            headers=headers,
            json={"dataset": dataset, "epsilon": "1"},
            timeout=HTTP_TIMEOUT,
        )
        assert bought.status_code == 201, bought.text
        purchases.append((headers, bought.json()["id"]))

    def submit(args) -> tuple[int, int | None]:
        (headers, purchase), i = args
        response = requests.post(
            stack.url("/api/v1/jobs/"),
            headers=headers,
            json={"purchase": purchase, "query": {"aggregate": "count"}, "epsilon": f"0.0{i + 1}"},
            timeout=HTTP_TIMEOUT,
        )
        return response.status_code, response.json().get("id")

    work = [(purchases[b], i) for b in range(8) for i in range(6)]
    with ThreadPoolExecutor(max_workers=48) as pool:
        answers = list(pool.map(submit, work))
    assert [status for status, _ in answers] == [202] * 48

    def released() -> bool:
        done = 0
        for (headers, _), _i in work[::6]:
            jobs = requests.get(stack.url("/api/v1/jobs/?status=released"), headers=headers, timeout=HTTP_TIMEOUT)
            done += jobs.json()["count"]
        return done == 48

    stack.pool.wait_until("all 48 jobs to be released", released, timeout=180, interval=1.0)
