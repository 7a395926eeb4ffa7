"""The server's HE engine: aggregates over ciphertexts streamed from a real bundle, decrypted by the key
holder and compared with numpy on the plaintext, within the CKKS error bound the engine states."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tenseal as ts

from cloakroom_client import he
from cloakroom_client.protocol import ckks
from compute.engines import he as engine

ROWS = 5000
SCHEMA = [
    {"name": "x", "kind": "numeric", "lower": -50, "upper": 50},
    {"name": "y", "kind": "numeric", "lower": 0, "upper": 10},
    {"name": "ward", "kind": "categorical", "categories": ["a", "b"]},
    {"name": "flag", "kind": "boolean"},
]


def make_bundle(root: Path, job_classes: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "x": np.round(rng.normal(5, 30, ROWS), 3),  # a good share beyond [-50, 50], to be clipped
            "y": np.round(rng.uniform(0, 12, ROWS), 3),
            "ward": rng.choice(["a", "b"], ROWS, p=[0.7, 0.3]),
            "flag": rng.choice(["true", "false"], ROWS),
        }
    )
    frame.to_csv(root / "data.csv", index=False)
    manifest = he.encrypt_csv(
        root / "data.csv", SCHEMA, root / "bundle", job_classes=job_classes, keystore=root / "keys", progress=False
    )
    truth = {
        "x": frame["x"].clip(-50, 50).to_numpy(),
        "y": frame["y"].clip(0, 10).to_numpy(),
        "ward=a": (frame["ward"] == "a").to_numpy(float),
        "flag": (frame["flag"] == "true").to_numpy(float),
    }
    return {
        "root": root,
        "manifest": manifest,
        "truth": truth,
        "context": (root / "bundle" / "context.bin").read_bytes(),
        "secret": he.load_secret_context(manifest["bundle_id"], keystore=root / "keys"),
    }


@pytest.fixture(scope="module")
def sums(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("sums"), ("sum",))


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("products"), ("sum", "product"))


def chunks(bundle: dict, name: str, start: int = 0, stop: int | None = None):
    """A generator reading the column's ciphertext files one at a time, as a worker does."""
    column = next(c for c in bundle["manifest"]["columns"] if c["name"] == name)
    files = column["files"][start:stop]
    return engine.iter_files(bundle["root"] / "bundle" / f["file"] for f in files)


def bound(bundle: dict, aggregate: str, name: str, **kwargs) -> float:
    manifest = bundle["manifest"]
    column = next(c for c in manifest["columns"] if c["name"] == name)
    return engine.ckks_error_bound(
        aggregate,
        manifest["rows"],
        lower=column["lower"],
        upper=column["upper"],
        poly_modulus_degree=manifest["poly_modulus_degree"],
        global_scale_bits=manifest["global_scale_bits"],
        coeff_mod_bit_sizes=manifest["coeff_mod_bit_sizes"],
        **kwargs,
    )


def reveal(bundle: dict, ciphertext: bytes) -> float:
    length = min(bundle["manifest"]["rows"], bundle["manifest"]["slots"])
    return ckks.decrypt_sum(bundle["secret"], ciphertext, length)


@pytest.mark.parametrize("fixture", ["sums", "products"])
@pytest.mark.parametrize("name", ["x", "ward=a", "flag"])
def test_an_encrypted_sum_matches_numpy_within_the_stated_bound(fixture, name, request):
    bundle = request.getfixturevalue(fixture)
    result = engine.encrypted_sum(bundle["context"], chunks(bundle, name))
    truth = math.fsum(bundle["truth"][name])
    limit = bound(bundle, "sum", name)
    assert abs(reveal(bundle, result) - truth) <= limit
    assert limit < 1.0  # the bound is useful: under one unit over 5000 rows at the coarser scale


def test_a_count_from_an_indicator_column_rounds_to_the_exact_count(sums):
    result = engine.encrypted_sum(sums["context"], chunks(sums, "ward=a"))
    assert round(reveal(sums, result)) == int(sums["truth"]["ward=a"].sum())


def test_an_encrypted_sum_of_squares_matches_numpy_within_the_stated_bound(products):
    result = engine.encrypted_sum_of_squares(products["context"], chunks(products, "x"))
    truth = math.fsum(products["truth"]["x"] ** 2)
    limit = bound(products, "sum_of_squares", "x")
    assert abs(reveal(products, result) - truth) <= limit
    assert limit < 1e-3


def test_an_encrypted_dot_product_with_public_weights_matches_numpy_within_the_stated_bound(products):
    weights = np.random.default_rng(5).uniform(-1, 1, ROWS)
    result = engine.encrypted_dot(products["context"], chunks(products, "x"), weights, products["manifest"]["slots"])
    truth = math.fsum(products["truth"]["x"] * weights)
    limit = bound(products, "dot", "x", weight_bound=1.0)
    assert abs(reveal(products, result) - truth) <= limit
    assert limit < 1e-3


def test_weights_that_pick_one_row_decrypt_that_row_which_is_why_release_adds_noise(products):
    row = 4321  # in the second ciphertext; the first one is multiplied by zeros only
    weights = np.zeros(ROWS)
    weights[row] = 1.0
    result = engine.encrypted_dot(products["context"], chunks(products, "x"), weights, products["manifest"]["slots"])
    assert abs(reveal(products, result) - products["truth"]["x"][row]) <= bound(products, "dot", "x", weight_bound=1)


def test_encrypted_products_of_two_columns_match_numpy_within_the_stated_bound(products):
    result = engine.encrypted_products(products["context"], chunks(products, "x"), chunks(products, "y"))
    truth = math.fsum(products["truth"]["x"] * products["truth"]["y"])
    limit = bound(products, "products", "x", lower_b=0, upper_b=10)
    assert abs(reveal(products, result) - truth) <= limit
    assert limit < 1e-3


def test_a_filtered_product_with_an_indicator_gives_a_per_category_sum(products):
    result = engine.encrypted_products(products["context"], chunks(products, "y"), chunks(products, "ward=a"))
    truth = math.fsum(products["truth"]["y"] * products["truth"]["ward=a"])
    limit = bound(products, "products", "y", lower_b=0, upper_b=1)
    assert abs(reveal(products, result) - truth) <= limit


def test_without_correction_a_multiplied_aggregate_is_off_by_the_nominal_scale_error(products):
    result = engine.encrypted_sum_of_squares(products["context"], chunks(products, "x"))
    truth = math.fsum(products["truth"]["x"] ** 2)
    raw = math.fsum(ts.ckks_vector_from(products["secret"], result).decrypt()[:4096])
    expected = engine.nominal_scale_error(8192, 40, [60, 40, 40, 60])
    assert 1.3e-7 < expected < 1.35e-7
    # TenSEAL's nominal scale inflates every multiplied value by scale / q: measured to 1e-10.
    assert abs((raw - truth) / truth - expected) < 1e-10
    # The key holder's decryption undoes it.
    assert abs(reveal(products, result) - truth) / truth < 1e-10


def test_the_uncorrected_bound_states_the_nominal_scale_error(products):
    corrected = bound(products, "sum_of_squares", "x")
    uncorrected = bound(products, "sum_of_squares", "x", scale_corrected=False)
    assert uncorrected - corrected == pytest.approx(1.3410955923554013e-07 * ROWS * 50**2)


def test_the_engine_recomputes_the_primes_seal_picks(sums, products):
    for bundle in (sums, products):
        manifest = bundle["manifest"]
        primes = engine.seal_primes(manifest["poly_modulus_degree"], manifest["coeff_mod_bit_sizes"])
        assert primes[:-1] == ckks.data_primes(bundle["secret"])
        assert [p.bit_length() for p in primes] == manifest["coeff_mod_bit_sizes"]


def test_the_fresh_noise_behind_the_bound_is_what_tenseal_produces(sums):
    # Two full ciphertexts of x (4096 slots): the per-slot error's deviation should be the constant
    # the bound is built on (0.168 * N / scale), which the bound then doubles.
    decrypted = np.concatenate([ckks.decrypt_vector(sums["secret"], data) for data in chunks(sums, "x", 0, 2)])
    measured = np.std(decrypted - sums["truth"]["x"][:4096])
    model = engine.FRESH_NOISE_PER_DEGREE * 4096 / 2**20
    assert 0.8 * model < measured < 1.2 * model


def test_partial_aggregates_from_two_workers_combine_into_the_whole(sums):
    first = engine.encrypted_sum(sums["context"], chunks(sums, "x", 0, 2))
    second = engine.encrypted_sum(sums["context"], chunks(sums, "x", 2, None))
    combined = engine.encrypted_sum(sums["context"], iter([first, second]))
    assert abs(reveal(sums, combined) - math.fsum(sums["truth"]["x"])) <= bound(sums, "sum", "x")


def test_an_aggregate_cannot_be_decrypted_with_the_public_context(sums):
    result = engine.encrypted_sum(sums["context"], chunks(sums, "x"))
    public = ts.context_from(sums["context"])
    with pytest.raises(ValueError):
        ts.ckks_vector_from(public, result).decrypt()
    with pytest.raises(he.HEError, match="needs the secret context"):
        ckks.decrypt_sum(public, result, 2048)


def test_products_refuse_columns_with_different_numbers_of_ciphertexts(products):
    with pytest.raises(ValueError, match="different numbers of ciphertexts"):
        engine.encrypted_products(products["context"], chunks(products, "x"), chunks(products, "y", 0, 1))


def test_a_dot_product_refuses_weights_that_do_not_cover_the_ciphertexts(products):
    with pytest.raises(ValueError, match="more ciphertexts than the 1"):
        engine.encrypted_dot(products["context"], chunks(products, "x"), np.ones(100), 4096)
    with pytest.raises(ValueError, match="expected 3"):
        engine.encrypted_dot(products["context"], chunks(products, "x"), np.ones(9000), 4096)


def test_an_aggregate_over_no_ciphertexts_is_refused(sums):
    with pytest.raises(ValueError, match="no ciphertexts"):
        engine.encrypted_sum(sums["context"], iter([]))


def test_the_bound_refuses_values_that_would_overflow_the_modulus():
    with pytest.raises(ValueError, match="overflow"):
        engine.ckks_error_bound(
            "sum",
            10**6,
            lower=0,
            upper=1e9,
            poly_modulus_degree=4096,
            global_scale_bits=20,
            coeff_mod_bit_sizes=[40, 20, 40],
        )


def test_the_bound_grows_like_the_square_root_of_the_rows():
    def at(rows: int) -> float:
        return engine.ckks_error_bound(
            "sum",
            rows,
            lower=0,
            upper=1,
            poly_modulus_degree=4096,
            global_scale_bits=20,
            coeff_mod_bit_sizes=[40, 20, 40],
        )

    assert at(2048 * 400) / at(2048 * 4) == pytest.approx(10.0, rel=1e-3)
