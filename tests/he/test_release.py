"""The key holder's release: the noise samplers (statistically, fixed seeds, tolerances derived from
each mechanism's moments), plan checks, and noisy values computed from real TenSEAL aggregates.
No database is needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import he, noise
from cloakroom_client.release import ReleaseError, check_plan, noisy_values
from compute.engines.he import ckks_error_bound, encrypted_sum

N = 20_000
Z = 4.5  # standard errors allowed in every statistical check
EPSILONS = (0.1, 1.0, 5.0)
SENSITIVITIES = (1.0, 25.0)
TAIL = 1e-4  # the noise bound used below is its 99.99% quantile


# -- the samplers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
def test_laplace_draws_have_the_mean_and_variance_of_laplace(epsilon, sensitivity):
    b = sensitivity / epsilon
    draws = noise.laplace(np.random.default_rng(20240601), b, size=N)
    assert draws.shape == (N,) and draws.dtype == float
    # Mean 0, standard error sqrt(2 b^2 / n).
    assert abs(draws.mean()) <= Z * math.sqrt(2 * b**2 / N)
    # Var = 2 b^2; the sample variance has variance (mu4 - sigma^4) / n with mu4 = 24 b^4 for Laplace.
    sigma2 = 2 * b**2
    se_var = math.sqrt((24 * b**4 - sigma2**2) / N)
    assert abs(draws.var(ddof=1) - sigma2) <= Z * se_var
    # The scale is really b: half the draws fall within b ln 2 of 0 (binomial standard error).
    inside = np.mean(np.abs(draws) <= b * math.log(2))
    assert abs(inside - 0.5) <= Z * math.sqrt(0.25 / N)


def geometric_moments(p: float) -> tuple[float, float]:
    """Variance and fourth moment of the two-sided geometric, summing its pmf numerically."""
    k_max = math.ceil(math.log(1e-25) / math.log(p)) if p > 0 else 0
    k = np.arange(-k_max, k_max + 1, dtype=float)
    pmf = (1 - p) / (1 + p) * p ** np.abs(k)
    assert math.isclose(pmf.sum(), 1.0, rel_tol=1e-12)
    return float(np.sum(k**2 * pmf)), float(np.sum(k**4 * pmf))


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
def test_two_sided_geometric_draws_have_its_law(epsilon, sensitivity):
    p = math.exp(-epsilon / sensitivity)
    draws = noise.two_sided_geometric(np.random.default_rng(777), epsilon, sensitivity, size=N)
    assert draws.dtype == np.int64 and draws.shape == (N,)

    variance, mu4 = geometric_moments(p)
    assert math.isclose(variance, 2 * p / (1 - p) ** 2, rel_tol=1e-9)  # the closed form, checked numerically
    assert abs(draws.mean()) <= Z * math.sqrt(variance / N)
    se_var = math.sqrt((mu4 - variance**2) / N)
    assert abs(draws.var(ddof=1) - variance) <= Z * se_var

    p0 = (1 - p) / (1 + p)
    observed = np.mean(draws == 0)
    assert abs(observed - p0) <= Z * math.sqrt(p0 * (1 - p0) / N)


def test_a_single_draw_is_a_plain_number():
    rng = np.random.default_rng(1)
    assert type(noise.laplace(rng, 2.0)) is float
    assert type(noise.two_sided_geometric(rng, 1.0, 1.0)) is int


def test_a_huge_epsilon_over_sensitivity_gives_no_geometric_noise():
    # p = exp(-1000) underflows to 0: the law is the point mass at 0.
    assert noise.two_sided_geometric(np.random.default_rng(1), 1000.0, 1.0) == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_the_samplers_refuse_a_scale_that_is_not_finite_and_positive(bad):
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="scale"):
        noise.laplace(rng, bad)
    with pytest.raises(ValueError, match="epsilon"):
        noise.two_sided_geometric(rng, bad, 1.0)
    with pytest.raises(ValueError, match="sensitivity"):
        noise.two_sided_geometric(rng, 1.0, bad)


def test_the_default_generator_is_seeded_from_the_os_csprng(monkeypatch):
    # Two default generators draw different streams...
    assert noise.default_rng().integers(2**62) != noise.default_rng().integers(2**62)
    # ...because the seed is 128 bits from `secrets`.
    asked = []

    def randbits(k):
        asked.append(k)
        return 12345

    monkeypatch.setattr(noise.secrets, "randbits", randbits)
    assert noise.default_rng().random() == np.random.default_rng(12345).random()
    assert asked == [128]


# -- plans -------------------------------------------------------------------------------------------

BUNDLE_ID = "0123456789abcdef0123456789abcdef"


def plan_for(**changes) -> dict:
    """The contract's example plan, with components replaced by keyword."""
    plan = {
        "job": 12,
        "dataset": 3,
        "bundle_id": BUNDLE_ID,
        "query": {"aggregate": "mean", "column": "bmi"},
        "epsilon": "0.500000",
        "aggregates": [{"name": "a0", "length": 2048, "url": "/api/v1/he/jobs/12/aggregates/a0/"}],
        "components": [
            {
                "name": "count",
                "terms": [],
                "offset": 1000.0,
                "mechanism": "geometric",
                "epsilon": 0.25,
                "sensitivity": 1.0,
                "scale": 4.0,
            },
            {
                "name": "sum",
                "terms": [["a0", 1.0]],
                "offset": -25000.0,
                "mechanism": "laplace",
                "epsilon": 0.25,
                "sensitivity": 25.0,
                "scale": 100.0,
            },
        ],
        "created_at": "2025-01-01T00:00:00Z",
    }
    for name, fields in changes.items():
        component = next(c for c in plan["components"] if c["name"] == name)
        component.update(fields)
    return plan


def test_the_contracts_example_plan_passes():
    check_plan(plan_for())


def test_a_scale_equal_to_sensitivity_over_epsilon_up_to_rounding_passes():
    check_plan(plan_for(sum={"epsilon": 0.3, "sensitivity": 25.0, "scale": 25.0 / 0.3 * (1 - 1e-12)}))
    check_plan(plan_for(sum={"scale": 1e6}))  # more noise than needed is the owner's gain


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"sum": {"terms": [["a9", 1.0]]}}, ["component 'sum'", "'a9'", "not in the plan"]),
        ({"sum": {"terms": [["a0", math.nan]]}}, ["component 'sum'", "coefficient"]),
        ({"sum": {"offset": math.inf}}, ["component 'sum'", "offset"]),
        ({"sum": {"scale": math.inf}}, ["component 'sum'", "scale", "finite"]),
        ({"sum": {"scale": math.nan}}, ["component 'sum'", "scale", "finite"]),
        ({"sum": {"scale": 0.0}}, ["component 'sum'", "scale", "> 0"]),
        ({"sum": {"scale": -100.0}}, ["component 'sum'", "scale"]),
        ({"sum": {"scale": "lots"}}, ["component 'sum'", "scale"]),
        ({"sum": {"scale": True}}, ["component 'sum'", "scale"]),
        ({"count": {"epsilon": 0}}, ["component 'count'", "epsilon"]),
        ({"count": {"epsilon": math.inf}}, ["component 'count'", "epsilon"]),
        ({"count": {"sensitivity": None}}, ["component 'count'", "sensitivity"]),
        ({"count": {"mechanism": "gaussian"}}, ["component 'count'", "unknown mechanism", "'gaussian'"]),
        ({"sum": {"mechanism": None}}, ["component 'sum'", "unknown mechanism"]),
        ({"sum": {"scale": 99.0}}, ["component 'sum'", "scale 99", "sensitivity / epsilon", "less noise"]),
        ({"count": {"scale": 3.9}}, ["component 'count'", "less noise"]),
    ],
)
def test_check_plan_refuses_a_bad_component_and_names_it(changes, words):
    with pytest.raises(ReleaseError) as info:
        check_plan(plan_for(**changes))
    for word in words:
        assert word in str(info.value)


def test_a_smaller_epsilon_with_the_same_scale_is_refused():
    # epsilon 0.2 at sensitivity 1 needs scale >= 5; the plan still says 4.
    with pytest.raises(ReleaseError, match="component 'count'.*less noise"):
        check_plan(plan_for(count={"epsilon": 0.2}))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p: p.update(job="12"), ["'job'"]),
        (lambda p: p.update(bundle_id="../../etc/passwd"), ["bundle_id"]),
        (lambda p: p.update(components=[]), ["components"]),
        (lambda p: p["aggregates"].append({"name": "a0", "length": 5}), ["aggregate 'a0'", "twice"]),
        (lambda p: p["aggregates"][0].update(length=0), ["aggregate 'a0'", "length"]),
        (lambda p: p["components"].append(dict(p["components"][0])), ["component 'count'", "twice"]),
        (lambda p: p["components"][1].update(terms=[["a0"]]), ["component 'sum'", "pair"]),
    ],
)
def test_check_plan_refuses_a_malformed_plan(mutate, words):
    plan = plan_for()
    mutate(plan)
    with pytest.raises(ReleaseError) as info:
        check_plan(plan)
    for word in words:
        assert word in str(info.value)


def test_a_refused_plan_decrypts_nothing():
    asked = []
    with pytest.raises(ReleaseError, match="less noise"):
        noisy_values(plan_for(sum={"scale": 1.0}), lambda name: asked.append(name) or b"", secret_context=None)
    assert asked == []


# -- release with real TenSEAL ---------------------------------------------------------------------

ROWS = 2500  # two ciphertexts per column at 2048 slots, so the aggregate really adds ciphertexts
SCHEMA = [
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 60},
    {"name": "smoker", "kind": "boolean"},
]


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    """A CSV encrypted with the owner's own code, the aggregates the server would compute from its
    chunks, and the plaintext truth."""
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"bmi": np.round(rng.uniform(15, 45, ROWS), 2), "smoker": rng.choice(["yes", "no"], ROWS, p=[0.3, 0.7])}
    )
    frame.to_csv(root / "data.csv", index=False)
    manifest = he.encrypt_csv(root / "data.csv", SCHEMA, root / "bundle", keystore=root / "keys", progress=False)
    public = (root / "bundle" / "context.bin").read_bytes()
    aggregates = {}
    for name, column in zip(("a0", "a1"), manifest["columns"]):
        assert len(column["files"]) == 2
        chunks = [(root / "bundle" / f["file"]).read_bytes() for f in column["files"]]
        aggregates[name] = encrypted_sum(public, chunks)
    secret = he.load_secret_context(manifest["bundle_id"], root / "keys")
    truth = {"a0": float(frame["bmi"].sum()), "a1": float((frame["smoker"] == "yes").sum())}
    tolerance = {
        "a0": ckks_error_bound(
            "sum",
            ROWS,
            lower=10,
            upper=60,
            poly_modulus_degree=4096,
            global_scale_bits=20,
            coeff_mod_bit_sizes=[40, 20, 40],
        ),
        "a1": ckks_error_bound(
            "sum",
            ROWS,
            lower=0,
            upper=1,
            poly_modulus_degree=4096,
            global_scale_bits=20,
            coeff_mod_bit_sizes=[40, 20, 40],
        ),
    }
    return manifest, aggregates, secret, truth, tolerance


def he_plan(manifest) -> dict:
    length = min(manifest["rows"], manifest["slots"])
    return {
        "job": 7,
        "dataset": 1,
        "bundle_id": manifest["bundle_id"],
        "query": {"aggregate": "mean", "column": "bmi"},
        "epsilon": "1.000000",
        "aggregates": [
            {"name": "a0", "length": length, "url": "/api/v1/he/jobs/7/aggregates/a0/"},
            {"name": "a1", "length": length, "url": "/api/v1/he/jobs/7/aggregates/a1/"},
        ],
        "components": [
            # A count of smokers with an offset (geometric, an integer) ...
            {
                "name": "count",
                "terms": [["a1", 1.0]],
                "offset": 1000.0,
                "mechanism": "geometric",
                "epsilon": 0.5,
                "sensitivity": 1.0,
                "scale": 2.0,
            },
            # ... a sum centred by an offset (Laplace) ...
            {
                "name": "sum",
                "terms": [["a0", 1.0]],
                "offset": -30.0 * ROWS,
                "mechanism": "laplace",
                "epsilon": 0.25,
                "sensitivity": 60.0,
                "scale": 240.0,
            },
            # ... and a combination of both aggregates.
            {
                "name": "mix",
                "terms": [["a0", 0.5], ["a1", -2.0]],
                "offset": 3.0,
                "mechanism": "laplace",
                "epsilon": 0.25,
                "sensitivity": 32.0,
                "scale": 128.0,
            },
        ],
    }


def laplace_bound(scale: float) -> float:
    return scale * math.log(1 / TAIL)  # P(|X| > t) = exp(-t / b)


def geometric_bound(epsilon: float, sensitivity: float) -> int:
    p = math.exp(-epsilon / sensitivity)
    return math.ceil(math.log(TAIL * (1 + p) / 2) / math.log(p)) - 1  # P(|G| > k) = 2 p^(k+1) / (1 + p)


def test_noisy_values_are_the_truth_plus_noise_of_the_plans_size(encrypted):
    manifest, aggregates, secret, truth, tol = encrypted
    plan = he_plan(manifest)
    values = noisy_values(plan, aggregates, secret, rng=np.random.default_rng(2024))
    assert set(values) == {"count", "sum", "mix"}

    count_truth = 1000 + truth["a1"]
    assert isinstance(values["count"], int)
    assert abs(values["count"] - count_truth) <= geometric_bound(0.5, 1.0) + tol["a1"] + 0.5

    sum_truth = truth["a0"] - 30.0 * ROWS
    assert isinstance(values["sum"], float)
    assert abs(values["sum"] - sum_truth) <= laplace_bound(240.0) + tol["a0"]
    # Noise was really added: it is far larger than the CKKS error (deterministic with this seed).
    assert abs(values["sum"] - sum_truth) > 10 * tol["a0"]

    mix_truth = 3.0 + 0.5 * truth["a0"] - 2.0 * truth["a1"]
    assert abs(values["mix"] - mix_truth) <= laplace_bound(128.0) + 0.5 * tol["a0"] + 2 * tol["a1"]


def test_the_same_seed_gives_the_same_values_and_another_seed_others(encrypted):
    manifest, aggregates, secret, _, _ = encrypted
    plan = he_plan(manifest)
    first = noisy_values(plan, aggregates, secret, rng=np.random.default_rng(99))
    again = noisy_values(plan, lambda name: aggregates[name], secret, rng=np.random.default_rng(99))
    assert first == again
    assert noisy_values(plan, aggregates, secret, rng=99) == first  # a seed works as well
    other = noisy_values(plan, aggregates, secret, rng=np.random.default_rng(100))
    assert other["sum"] != first["sum"] and other["mix"] != first["mix"]
    # Without an rng the noise comes from the OS: two calls differ.
    assert noisy_values(plan, aggregates, secret)["sum"] != noisy_values(plan, aggregates, secret)["sum"]


def test_released_noise_has_the_plans_scale(encrypted):
    """The release wires the plan's parameters into the samplers: over 1000 releases of the same
    job, the spread of the noisy values is that of Laplace(scale) and of the geometric with
    p = exp(-epsilon / sensitivity)."""
    manifest, aggregates, secret, truth, _ = encrypted
    plan = he_plan(manifest)
    plan["components"] = plan["components"][:2]
    rng = np.random.default_rng(31337)
    n = 1000
    draws = [noisy_values(plan, aggregates, secret, rng=rng) for _ in range(n)]
    sums = np.array([d["sum"] for d in draws])
    counts = np.array([d["count"] for d in draws])

    b = 240.0
    assert abs(sums.var(ddof=1) - 2 * b**2) <= Z * math.sqrt(20 * b**4 / n)
    assert abs(sums.mean() - (truth["a0"] - 30.0 * ROWS)) <= Z * math.sqrt(2 * b**2 / n) + 1.0

    p = math.exp(-0.5)
    variance, mu4 = geometric_moments(p)
    assert abs(counts.var(ddof=1) - variance) <= Z * math.sqrt((mu4 - variance**2) / n)


def test_only_the_aggregates_a_component_uses_are_fetched(encrypted):
    manifest, aggregates, secret, _, _ = encrypted
    plan = he_plan(manifest)
    plan["components"] = [plan["components"][1]]  # "sum" uses a0 only
    asked = []

    def fetch(name):
        asked.append(name)
        return aggregates[name]

    assert set(noisy_values(plan, fetch, secret, rng=1)) == {"sum"}
    assert asked == ["a0"]


def test_an_aggregate_that_is_not_a_ciphertext_is_refused_by_name(encrypted):
    manifest, aggregates, secret, _, _ = encrypted
    with pytest.raises(ReleaseError, match="aggregate 'a1': could not be decrypted"):
        noisy_values(he_plan(manifest), {"a0": aggregates["a0"], "a1": b"not a ciphertext"}, secret, rng=1)
    with pytest.raises(ReleaseError, match="aggregate 'a1': no ciphertext"):
        noisy_values(he_plan(manifest), {"a0": aggregates["a0"]}, secret, rng=1)


def test_the_public_context_cannot_release(encrypted):
    manifest, aggregates, secret, _, _ = encrypted
    public = secret.copy()
    public.make_context_public()
    with pytest.raises(ReleaseError, match="could not be decrypted"):
        noisy_values(he_plan(manifest), aggregates, public, rng=1)


def test_no_un_noised_value_leaves_noisy_values(encrypted):
    """The Laplace components returned are noisy: none equals an un-noised aggregate or component
    (to CKKS precision). (A geometric component may legitimately draw 0.)"""
    manifest, aggregates, secret, truth, tol = encrypted
    plan = he_plan(manifest)
    values = noisy_values(plan, aggregates, secret, rng=np.random.default_rng(4))
    unnoised = [truth["a0"], truth["a1"], 1000 + truth["a1"], truth["a0"] - 30.0 * ROWS]
    unnoised.append(3.0 + 0.5 * truth["a0"] - 2.0 * truth["a1"])
    for name in ("sum", "mix"):
        assert all(abs(values[name] - u) > 2 * tol["a0"] for u in unnoised)
