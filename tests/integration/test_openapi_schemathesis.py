"""Schemathesis against a live gunicorn: the OpenAPI document (GET /api/v1/schema/) is the API.

One gunicorn (two workers) on this test's PostgreSQL database, with rate limits and credential
lockouts far above what the run sends (429 is documented on every operation all the same). Celery
runs eagerly in the web process, so a submitted job is released at once and the run reads real
results and receipts without a worker process. The site holds a small world: a published DP dataset
and a draft, an HE dataset with its bundle half uploaded, a buyer with a purchase and four released
jobs, and the escrow key configured.

Schemathesis (the CLI, ``python -m schemathesis.cli run``) is run with a fixed seed,
``--max-examples 25`` per operation and ``--checks all``: every phase that applies (coverage,
fuzzing, stateful; the document has no examples), and every check:

* not_a_server_error, status_code_conformance, content_type_conformance,
  response_schema_conformance, response_headers_conformance: each answer is documented, in the
  documented shape, with the documented headers (Retry-After, WWW-Authenticate,
  Content-Disposition).
* negative_data_rejection and positive_data_acceptance: what the document calls invalid is refused
  with a 4xx, what it calls valid is read. Positive acceptance also allows a 400 on the few
  operations whose acceptance depends on data the document cannot state, and only there: sign-up
  (Django's password validators reject common passwords and ones like the user name, and a name may
  be taken), job submission, estimates and queries on fake data (a query must name the dataset's
  declared columns, kinds and categories), and, for the owner, uploads (the file must match the declared
  columns), HE manifests (their parameters, row count and file list must agree), bundle files (their
  length and sha256 must be the manifest's) and escrowed keys (sealed to the platform's key). Every
  other check still runs on those operations, negative data included.
* missing_required_header, unsupported_method, allow_header_conformance, use_after_free,
  ensure_resource_availability, ignored_auth: the stateful checks and the authentication probes.
* object_level_authorization: the buyer and the owner are peers (a Web Fuzzing Commons auth file),
  so every object one of them reads is read again as the other, which must be refused.

``max_response_time`` is the one check ``all`` leaves off (it needs a limit, and response times on a
shared two-CPU machine say nothing about the API). Warnings that mean part of the document was not
tested (an unresolvable reference, an unsupported regex, a filter matching nothing, throttling)
fail the run too.

Three runs, each over its own site: the buyer's Bearer key over the whole document except the
revocation of API keys; the owner's key over the dataset and HE operations; and key revocation as a
third account over HTTP Basic. Revoking keys as the buyer would, sooner or later, revoke the key
the run authenticates with and turn the rest of it into 401s; as the third account it revokes that
account's own keys (204, then 204 again) and finds everyone else's missing (404).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.integration.live import ProcessPool, live_database_url, run_manage, site_env, start_web

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, reset_sequences=True)]

PASSWORD = "correct horse battery 42"
TIMEOUT = 30
SEED = 20261202
EXAMPLES = 25
# The run may take a few minutes on two CPUs; a hung run is cut off well before that adds up.
RUN_TIMEOUT = 240

HIGH_LIMITS = {
    "CLOAKROOM_RATE_ANON": "100000/min",
    "CLOAKROOM_RATE_USER": "100000/min",
    "CLOAKROOM_RATE_JOB_SUBMIT": "100000/min",
    "CLOAKROOM_RATE_DUMMY_QUERY": "100000/min",
    "CLOAKROOM_LOGIN_FAILURE_LIMIT": "100000",
    "CLOAKROOM_API_KEY_FAILURE_LIMIT": "100000",
}
# Statuses a schema-valid request may get by default, and with a 400 on the operations whose
# acceptance depends on what the document cannot state (see the module docstring).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ACCEPTED_OR_400 = [*ACCEPTED, "400"]
DEPENDS_ON_DATA = [
    "POST /api/v1/auth/signup/",
    "POST /api/v1/jobs/",
    "POST /api/v1/jobs/estimate/",
    "POST /api/v1/datasets/{dataset_id}/dummy-query/",
    "POST /api/v1/datasets/",
    "POST /api/v1/datasets/he/",
    "PUT /api/v1/datasets/{dataset_id}/bundle/files/{name}",
    "PUT /api/v1/datasets/{dataset_id}/escrow/",
    # Whether a dataset may found or join an ensemble, and whether a table fits its features, depends on
    # the declarations and the file's content, which the document cannot state.
    "POST /api/v1/ensembles/",
    "POST /api/v1/ensembles/{ensemble_id}/members/",
    "POST /api/v1/ensembles/{ensemble_id}/jobs/",
]
FAIL_ON_WARNINGS = [
    "unresolvable_reference",
    "unsupported_regex",
    "unmatched_filter",
    "rate_limited",
    "missing_deserializer",
    "base_url_mismatch",
    "method_not_allowed",
]
KEY_REVOCATION = "v1_api_keys_destroy"

CSV = "age,income,region,smoker\n" + "".join(
    f"{20 + i % 50},{1000 * i},{['north', 'south', 'east', 'west'][i % 4]},{'true' if i % 3 else 'false'}\n"
    for i in range(40)
)
METADATA = {
    "title": "Schemathesis survey",
    "description": "Forty rows for the OpenAPI conformance run.",
    "mode": "dp",
    "epsilon_cap": "1000",
    "delta_cap": "0.01",
    "price_per_epsilon": "0.01",
    "row_count_public": True,
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 18, "upper": 90},
        {"name": "income", "kind": "numeric", "lower": 0, "upper": 250000},
        {"name": "region", "kind": "categorical", "categories": ["north", "south", "east", "west"]},
        {"name": "smoker", "kind": "boolean"},
    ],
}
QUERIES = [
    {"aggregate": "count", "group_by": ["region"]},
    {"aggregate": "histogram", "column": "age", "bins": 4},
    {"aggregate": "quantile", "column": "income", "quantiles": [0.5]},
    {"aggregate": "mean", "column": "age", "filters": [{"column": "smoker", "op": "eq", "value": True}]},
]


@dataclass
class Site:
    url: str
    root: Path
    keys: dict[str, str] = field(default_factory=dict)


def _expect(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, f"{response.request.method} {response.url}: {response.text}"
    return response.json() if response.content else {}


def _build_world(site: Site) -> None:
    url = site.url
    for name, roles in (("st-buyer", ["buyer"]), ("st-owner", ["owner"]), ("st-keyring", ["buyer"])):
        _expect(
            requests.post(
                f"{url}/api/v1/auth/signup/",
                json={"username": name, "email": f"{name}@example.org", "password": PASSWORD, "roles": roles},
                timeout=TIMEOUT,
            ),
            201,
        )
    # The keyring account's keys first, so that they have the ids a generated key_id hits most.
    for i in range(3):
        _expect(
            requests.post(
                f"{url}/api/v1/api-keys/", json={"name": f"spare {i}"}, auth=("st-keyring", PASSWORD), timeout=TIMEOUT
            ),
            201,
        )
    for name in ("st-buyer", "st-owner"):
        created = requests.post(
            f"{url}/api/v1/api-keys/", json={"name": "schemathesis"}, auth=(name, PASSWORD), timeout=TIMEOUT
        )
        site.keys[name] = _expect(created, 201)["key"]
    buyer = {"Authorization": f"Bearer {site.keys['st-buyer']}"}
    owner = {"Authorization": f"Bearer {site.keys['st-owner']}"}

    def upload(metadata: dict) -> dict:
        return _expect(
            requests.post(
                f"{url}/api/v1/datasets/",
                headers=owner,
                files={"file": ("survey.csv", CSV)},
                data={"metadata": json.dumps(metadata)},
                timeout=TIMEOUT,
            ),
            201,
        )

    dataset = upload(METADATA)
    _expect(requests.post(f"{url}/api/v1/datasets/{dataset['id']}/publish/", headers=owner, timeout=TIMEOUT), 200)
    upload({**METADATA, "title": "A draft"})
    ensemble = {
        "title": "Schemathesis ensemble",
        "dataset": dataset["id"],
        "price_per_label": "0.01",
        "label": "smoker",
    }
    _expect(requests.post(f"{url}/api/v1/ensembles/", headers=owner, json=ensemble, timeout=TIMEOUT), 201)
    purchase = _expect(
        requests.post(
            f"{url}/api/v1/purchases/", headers=buyer, json={"dataset": dataset["id"], "epsilon": "50"}, timeout=TIMEOUT
        ),
        201,
    )
    for query in QUERIES:
        body = {"purchase": purchase["id"], "query": query, "epsilon": "0.5"}
        _expect(requests.post(f"{url}/api/v1/jobs/", headers=buyer, json=body, timeout=TIMEOUT), 202)
    released = _expect(requests.get(f"{url}/api/v1/jobs/?status=released", headers=buyer, timeout=TIMEOUT), 200)
    assert released["count"] == len(QUERIES), released

    # An HE draft whose bundle is half uploaded (the manifest's files are one byte each).
    digest = hashlib.sha256(b"x").hexdigest()
    manifest = {
        "format": "cloakroom-he-bundle",
        "version": 1,
        "bundle_id": uuid.uuid4().hex,
        "scheme": "ckks",
        "job_classes": ["sum"],
        "poly_modulus_degree": 4096,
        "coeff_mod_bit_sizes": [40, 20, 40],
        "global_scale_bits": 20,
        "slots": 2048,
        "rows": 10,
        "context": {"file": "context.bin", "bytes": 1, "sha256": digest},
        "columns": [
            {
                "name": "age",
                "source": "age",
                "kind": "numeric",
                "lower": 0,
                "upper": 100,
                "files": [{"file": "c000.0000.ct", "bytes": 1, "sha256": digest}],
            }
        ],
    }
    he_dataset = _expect(
        requests.post(
            f"{url}/api/v1/datasets/he/",
            headers=owner,
            json={"title": "HE draft", "epsilon_cap": "10", "price_per_epsilon": "1", "manifest": manifest},
            timeout=TIMEOUT,
        ),
        201,
    )
    _expect(
        requests.put(
            f"{url}/api/v1/datasets/{he_dataset['id']}/bundle/files/context.bin",
            headers={**owner, "Content-Type": "application/octet-stream"},
            data=b"x",
            timeout=TIMEOUT,
        ),
        201,
    )


@pytest.fixture
def site(tmp_path):
    from cloakroom_client.protocol.escrow import new_kek

    prefix = f"oas-{uuid.uuid4().hex[:8]}"
    redis_url = _redis_url()
    env = site_env(
        tmp_path,
        prefix,
        DATABASE_URL=live_database_url(),
        REDIS_URL=redis_url,
        CLOAKROOM_CACHE_URL=redis_url,
        CLOAKROOM_CACHE_PREFIX=prefix,
        CELERY_TASK_ALWAYS_EAGER="true",
        CLOAKROOM_KEK_PUBLIC_KEY=new_kek()[1],
        **HIGH_LIMITS,
    )
    collected = run_manage(["collectstatic", "--noinput"], env)
    assert collected.returncode == 0, collected.stderr
    pool = ProcessPool(log_dir=tmp_path)
    try:
        url = start_web(pool, env)
        site = Site(url=url, root=tmp_path)
        _build_world(site)
        yield site
    finally:
        pool.stop_all()
        _forget_counters(redis_url, prefix)
        # pytest shows this output only for a failing test, which is when the logs are wanted.
        print(pool.logs()[-20000:])


def _redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def _forget_counters(redis_url: str, prefix: str) -> None:
    import redis

    store = redis.Redis.from_url(redis_url)
    for key in store.scan_iter(f"{prefix}:*"):
        store.delete(key)


def _config(site: Site, name: str, *, user: str | None = None, peer: str | None = None) -> Path:
    """A schemathesis.toml: the warnings that fail the run, the positive-acceptance allowances and,
    given a ``user``, the WFC auth file with that user pinned and ``peer`` for the object-level probes."""
    lines = ["[warnings]", f"fail-on = {json.dumps(FAIL_ON_WARNINGS)}"]
    if user is not None:
        auth = site.root / "wfc-auth.json"
        entries = [
            {"name": who, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}]}
            for who, key in site.keys.items()
        ]
        auth.write_text(json.dumps({"auth": entries}))
        lines += [
            "",
            "[auth.wfc]",
            f"path = {json.dumps(str(auth))}",
            f"user = {json.dumps(user)}",
            f"peers = {json.dumps([user, peer])}",
        ]
    for operation in DEPENDS_ON_DATA:
        lines += [
            "",
            "[[operations]]",
            f"include-name = {json.dumps(operation)}",
            f"checks.positive_data_acceptance.expected-statuses = {json.dumps(ACCEPTED_OR_400)}",
        ]
    path = site.root / f"schemathesis-{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _schemathesis(site: Site, name: str, *args: str, config: Path) -> dict:
    """Run the CLI over the live schema; returns its JSON report, with its output under "output"."""
    report = site.root / f"report-{name}.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{site.url}/api/v1/schema/",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *args,
    ]
    done = subprocess.run(
        command, cwd=site.root, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    assert report.is_file(), f"schemathesis wrote no report (exit code {done.returncode}):\n{output}"
    result = json.loads(report.read_text())
    result["output"], result["returncode"] = output, done.returncode
    print(f"schemathesis {name}: {_summary(result)}")
    return result


def _summary(result: dict) -> str:
    cases = result["test_cases"]
    return (
        f"{result['operations']['tested']} operations, {cases['generated']} cases, "
        f"{cases['unique_failures']} unique failures, {len(result['errors'])} errors, "
        f"{result['running_time']:.0f}s"
    )


def _assert_clean(result: dict) -> None:
    assert result["returncode"] == 0 and result["exit_code"] == 0 and not result["failures"], (
        f"{_summary(result)}\n{result['output']}"
    )
    assert not result["errors"], result["output"]
    assert result["complete"], result["output"]


def test_the_buyer_finds_the_whole_api_as_documented(site):
    result = _schemathesis(
        site,
        "buyer",
        "--exclude-operation-id",
        KEY_REVOCATION,
        config=_config(site, "buyer", user="st-buyer", peer="st-owner"),
    )
    _assert_clean(result)
    assert result["operations"]["tested"] == result["operations"]["total"] - 1
    # The run authenticated as the buyer all along: its key still works.
    me = requests.get(
        f"{site.url}/api/v1/me/", headers={"Authorization": f"Bearer {site.keys['st-buyer']}"}, timeout=TIMEOUT
    )
    assert me.status_code == 200 and me.json()["username"] == "st-buyer"


def test_the_owner_finds_the_dataset_and_he_operations_as_documented(site):
    result = _schemathesis(
        site,
        "owner",
        "--include-tag",
        "datasets",
        "--include-tag",
        "he",
        config=_config(site, "owner", user="st-owner", peer="st-buyer"),
    )
    _assert_clean(result)
    assert result["operations"]["tested"] == 19


def test_revoking_api_keys_is_as_documented(site):
    result = _schemathesis(
        site,
        "keyring",
        "--include-operation-id",
        KEY_REVOCATION,
        "--auth",
        f"st-keyring:{PASSWORD}",
        config=_config(site, "keyring"),
    )
    _assert_clean(result)
    assert result["operations"]["tested"] == 1
    # Nobody else's key was revoked.
    for name, key in site.keys.items():
        me = requests.get(f"{site.url}/api/v1/me/", headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)
        assert me.status_code == 200, name
