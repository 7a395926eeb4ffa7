"""A real `cloakroom key-agent` process against a server that lies about a job's plan.

The agent rebuilds every plan from the job's query and epsilon and its own copy of the manifest, so
a plan with a lowered sensitivity and scale, a raw ciphertext served as an aggregate (length 1: one
row), component epsilons above the job's, an extra component or a job past the owner's local cap
is refused: nothing is decrypted or posted, and the log says why. The honest plan of the same query
is released by the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cloakroom_client.he import ledger_path, write_policy
from tests.cloakroom_client.cli.test_key_agent_cli import (
    API_KEY,
    ROOT,
    ContractServer,
    assert_nothing_secret_in,
    make_plan,
    served_bundle,
)


@pytest.fixture
def served(bundle):
    return served_bundle(bundle)


def _lowered(plan: dict) -> dict:
    sum_ = plan["components"][1]
    sum_.update(sensitivity=1e-12, scale=1e-12 / sum_["epsilon"], steps=1, granularity=2.0**-50)
    return plan


def _raw_chunk(plan: dict) -> dict:
    plan["aggregates"][0]["length"] = 1  # "sum one slot": the first row of a raw column chunk
    return plan


def _more_epsilon(plan: dict) -> dict:
    for component in plan["components"]:
        component["epsilon"] *= 1000
        component["scale"] /= 1000
    return plan


def _extra_component(plan: dict) -> dict:
    plan["components"].append({**plan["components"][1], "name": "sum2"})
    return plan


LIES = {
    11: (_lowered, "components.sum.sensitivity"),
    12: (_raw_chunk, "aggregates.a0.length"),
    13: (_more_epsilon, "components.count.epsilon"),
    14: (_extra_component, "the server sent 3 components; this job has 2"),
}


def run_agent_once(server: ContractServer, bundle) -> subprocess.CompletedProcess:
    """One pass of a real key-agent process (``--once``): exit 1 when any job was refused or failed."""
    env = {**os.environ, "CLOAKROOM_URL": server.url, "CLOAKROOM_API_KEY": API_KEY}
    env["CLOAKROOM_KEYSTORE"] = str(bundle.keystore)
    return subprocess.run(
        [sys.executable, "-m", "cloakroom_client.cli", "key-agent", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_agent_refuses_every_altered_plan_posts_nothing_for_it_and_releases_the_honest_one(served):
    bundle, aggregates, _, truth = served
    with ContractServer() as server:
        for job, (lie, _) in LIES.items():
            server.add_job(lie(make_plan(job, bundle)), aggregates)
        server.add_job(make_plan(20, bundle), aggregates)
        done = run_agent_once(server, bundle)
    err = done.stderr
    assert done.returncode == 1, err  # the refused jobs count as failures
    assert sorted(server.released) == [20]
    assert [job for job, _, _ in server.posts] == [20]
    # Nothing of an altered job was even downloaded: the plans are checked before any decryption.
    assert {job for job, _ in server.fetches} == {20}
    for job, (_, words) in LIES.items():
        line = next(line for line in err.splitlines() if f"job {job}:" in line)
        assert "differs from the key holder's own plan" in line and words in line, line
    assert_nothing_secret_in(err, bundle, truth)
    # The honest release was recorded in the agent's own ledger, once.
    path = ledger_path(bundle.manifest["bundle_id"], bundle.keystore)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["job"] for e in entries] == [20] and entries[0]["epsilon"] == "0.0002"


def test_the_honest_plan_of_each_lie_is_released_by_the_same_agent(served):
    bundle, aggregates, _, _ = served
    with ContractServer() as server:
        for job in LIES:
            server.add_job(make_plan(job, bundle), aggregates)
        done = run_agent_once(server, bundle)
    assert done.returncode == 0, done.stderr
    assert sorted(server.released) == sorted(LIES)


def test_the_agent_refuses_to_pass_the_owners_local_cap_whatever_the_server_says(served):
    bundle, aggregates, _, _ = served
    # The owner's cap, recorded on the owner's machine: room for two jobs of epsilon 0.0002, not three.
    write_policy(bundle.manifest["bundle_id"], "0.0005", bundle.keystore)
    with ContractServer() as server:
        for job in (1, 2, 3):
            server.add_job(make_plan(job, bundle), aggregates)
        first = run_agent_once(server, bundle)
        # A later agent process reads the same ledger: still no room for job 3.
        second = run_agent_once(server, bundle)
    assert sorted(server.released) == [1, 2]
    assert [job for job, _, _ in server.posts] == [1, 2]
    words = "job 3: release refused: releasing job 3 (epsilon 0.0002) would pass the owner's cap of 0.0005"
    assert first.returncode == 1 and words in first.stderr
    assert second.returncode == 1 and words in second.stderr
