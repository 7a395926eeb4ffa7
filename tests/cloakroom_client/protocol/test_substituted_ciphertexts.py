"""The key holder checks what each served ciphertext went through before decrypting it.

A server that serves, under the name of a plain sum, a column chunk multiplied by a slot mask that is
2000 on one row and 0 elsewhere would otherwise get that row back from the noisy "sum" divided by
2000. The aggregate's level (the primes it lost to rescaling) tells that it went through a
multiplication its plan does not have, so it is refused before decryption; a ciphertext added to
itself many times keeps its level, but the value released is clamped to what the declared bounds
allow, so it cannot be pushed past them.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import tenseal as ts

from cloakroom_client import he
from cloakroom_client.protocol import he_plan
from cloakroom_client.protocol.errors import ReleaseError
from cloakroom_client.protocol.release import noisy_values

ROWS = 2500
SCHEMA = [{"name": "bmi", "kind": "numeric", "lower": 10, "upper": 60}, {"name": "smoker", "kind": "boolean"}]


@pytest.fixture(scope="module")
def owned(tmp_path_factory):
    root = tmp_path_factory.mktemp("substitution")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"bmi": np.round(rng.uniform(15, 45, ROWS), 2), "smoker": rng.choice(["yes", "no"], ROWS)})
    frame.to_csv(root / "data.csv", index=False)
    manifest = he.encrypt_csv(root / "data.csv", SCHEMA, root / "bundle", keystore=root / "keys", progress=False)
    public = ts.context_from((root / "bundle" / "context.bin").read_bytes())
    secret = he.load_secret_context(manifest["bundle_id"], root / "keys")
    chunk = (root / "bundle" / manifest["columns"][0]["files"][0]["file"]).read_bytes()
    return manifest, public, secret, chunk, frame


def served(manifest: dict) -> dict:
    p = he_plan.plan({"aggregate": "sum", "column": "bmi"}, manifest, 1.0)
    return {
        "job": 1,
        "dataset": 1,
        "bundle_id": manifest["bundle_id"],
        "query": p.query,
        "epsilon": "1.000000",
        "delta": "0",
        "aggregates": p.key_aggregates(),
        "components": p.key_components(),
    }


def test_a_chunk_times_a_slot_mask_served_as_a_sum_is_refused_before_decryption(owned):
    manifest, public, secret, chunk, _ = owned
    mask = [0.0] * manifest["slots"]
    mask[5] = 2000.0
    masked = (ts.ckks_vector_from(public, chunk) * mask).serialize()
    with pytest.raises(ReleaseError, match=r"aggregate 'a0': the ciphertext went through 1 multiplication\(s\)"):
        noisy_values(served(manifest), {"a0": masked}, secret, random.Random(1), manifest=manifest)


def test_the_honest_sum_of_the_same_chunk_is_released(owned):
    manifest, public, secret, chunk, frame = owned
    out = noisy_values(served(manifest), {"a0": chunk}, secret, random.Random(1), manifest=manifest)
    # One chunk of 2048 slots holds the first 2048 rows (N=4096 for sums): their sum plus the noise,
    # whose scale is 50 / 1 (within 1/1024), beyond 20 scales with probability below 1e-8.
    assert abs(out["sum"] - frame["bmi"][: manifest["slots"]].sum()) < 20 * 50 * (1 + 1 / 1024) + 1


def test_a_sum_added_to_itself_cannot_push_the_release_past_the_declared_bounds(owned):
    manifest, public, secret, chunk, _ = owned
    vector = ts.ckks_vector_from(public, chunk)
    scaled = vector
    for _ in range(99):
        scaled = scaled + vector  # 100 x the chunk's sum, at the level and scale of a plain sum
    out = noisy_values(served(manifest), {"a0": scaled.serialize()}, secret, random.Random(1), manifest=manifest)
    # bmi is declared in [10, 60] over 2500 rows: at most 150000, plus the noise (20 scales).
    assert out["sum"] <= ROWS * 60 + 20 * 50 * (1 + 1 / 1024) + 1
