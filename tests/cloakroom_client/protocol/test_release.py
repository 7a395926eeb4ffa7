"""The key holder's release: plan checks, the key holder's own re-planning of a served plan from its
own manifest (a lying server is refused before anything is decrypted), and noisy values computed
from real TenSEAL aggregates, released on their grids with exact discrete noise (statistical checks
use fixed seeds and tolerances derived from each mechanism's exact law). The samplers themselves
are tested in tests/privacy/test_grid_noise.py. No database is needed."""

from __future__ import annotations

import copy
import math
import random
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import he
from cloakroom_client.protocol import he_plan
from cloakroom_client.protocol.errors import ReleaseError
from cloakroom_client.protocol.release import noisy_values
from cloakroom_client.protocol.release_spec import check_release_spec, own_release_spec
from cloakroom_client.release import EpsilonLedger, release_job
from compute.engines.he import ckks_error_bound, encrypted_sum

Z = 4.5  # standard errors allowed in every statistical check
TAIL = 1e-4  # the noise bound used below is the one the noise passes with probability at most this

BUNDLE_ID = "0123456789abcdef0123456789abcdef"
# A bundle's manifest as the key holder keeps it (only what the planner reads): bmi in [10, 60].
EXAMPLE_MANIFEST = {
    "bundle_id": BUNDLE_ID,
    "rows": 1000,
    "slots": 2048,
    "poly_modulus_degree": 4096,
    "coeff_mod_bit_sizes": [40, 20, 40],
    "global_scale_bits": 20,
    "job_classes": ["sum"],
    "columns": [
        {"name": "bmi", "source": "bmi", "kind": "numeric", "lower": 10, "upper": 60},
        {"name": "smoker", "source": "smoker", "kind": "boolean", "lower": 0, "upper": 1},
    ],
}


def served_plan(query: dict, manifest: dict, epsilon: float, *, job: int = 7, paid: float | None = None) -> dict:
    """The plan a server sends for ``query`` at ``epsilon``, built with the shared planner as the server
    builds it; ``paid`` is the job's epsilon the plan states (by default ``epsilon``)."""
    planned = he_plan.plan(query, manifest, epsilon)
    return {
        "job": job,
        "dataset": 1,
        "bundle_id": manifest["bundle_id"],
        "query": planned.query,
        "epsilon": f"{epsilon if paid is None else paid:f}",
        "delta": "0",
        "aggregates": [
            {**a, "url": f"/api/v1/he/jobs/{job}/aggregates/{a['name']}/"} for a in planned.key_aggregates()
        ],
        "components": planned.key_components(),
        "created_at": "2025-01-01T00:00:00Z",
    }


# -- plans -------------------------------------------------------------------------------------------


def plan_for(**changes) -> dict:
    """The served plan of a mean of bmi at epsilon 0.5, with components' fields replaced by keyword."""
    plan = served_plan({"aggregate": "mean", "column": "bmi"}, EXAMPLE_MANIFEST, 0.5, job=12)
    for name, fields in changes.items():
        component = next(c for c in plan["components"] if c["name"] == name)
        component.update(fields)
    return plan


def test_the_served_plan_states_each_components_grid_and_budget():
    plan = plan_for()
    check_release_spec(plan)
    assert plan["delta"] == "0"
    count, total = plan["components"]
    # The count of an unfiltered mean is the manifest's row count, noised on a grid of 2^-10 ...
    assert {k: count[k] for k in ("terms", "offset", "budget", "mechanism", "epsilon", "delta")} == {
        "terms": [],
        "offset": 1000.0,
        "budget": "count",
        "mechanism": "laplace",
        "epsilon": 0.25,
        "delta": 0.0,
    }
    assert (count["sensitivity"], count["granularity"], count["steps"]) == (1.0, 2.0**-10, 1025)
    # ... and the centred sum (offset -mid * rows) has the replace-one sensitivity upper - lower = 50,
    # on a grid of 2^-5 (the largest power of two <= 50 / 1024), 1600 + 1 steps.
    assert (total["terms"], total["offset"], total["budget"]) == ([["a0", 1.0]], -35_000.0, "sum")
    assert (total["sensitivity"], total["granularity"], total["steps"]) == (50.0, 2.0**-5, 1601)
    for c in (count, total):
        assert c["scale"] == c["steps"] * c["granularity"] / c["epsilon"]
        assert c["sensitivity"] / c["epsilon"] <= c["scale"] <= c["sensitivity"] / c["epsilon"] * (1 + 1 / 1024)


def test_a_scale_equal_to_sensitivity_over_epsilon_up_to_rounding_passes():
    check_release_spec(plan_for(sum={"epsilon": 0.3, "sensitivity": 25.0, "scale": 25.0 / 0.3 * (1 - 1e-12)}))
    check_release_spec(plan_for(sum={"scale": 1e6}))  # more noise than needed is the owner's gain


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
        ({"sum": {"scale": 199.0}}, ["component 'sum'", "scale 199", "sensitivity / epsilon", "less noise"]),
        ({"count": {"scale": 3.9}}, ["component 'count'", "less noise"]),
    ],
)
def test_check_plan_refuses_a_bad_component_and_names_it(changes, words):
    with pytest.raises(ReleaseError) as info:
        check_release_spec(plan_for(**changes))
    for word in words:
        assert word in str(info.value)


def test_a_smaller_epsilon_with_the_same_scale_is_refused():
    # epsilon 0.2 at sensitivity 1 needs scale >= 5; the plan still says 4.004.
    with pytest.raises(ReleaseError, match="component 'count'.*less noise"):
        check_release_spec(plan_for(count={"epsilon": 0.2}))


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
        check_release_spec(plan)
    for word in words:
        assert word in str(info.value)


def test_a_refused_plan_decrypts_nothing():
    asked = []
    with pytest.raises(ReleaseError, match="less noise"):
        noisy_values(
            plan_for(sum={"scale": 1.0}),
            lambda name: asked.append(name) or b"",
            secret_context=None,
            manifest=EXAMPLE_MANIFEST,
        )
    assert asked == []


def test_the_own_plan_of_an_honest_served_plan_is_the_shared_planners():
    own = own_release_spec(plan_for(), EXAMPLE_MANIFEST)
    assert own == he_plan.plan({"aggregate": "mean", "column": "bmi"}, EXAMPLE_MANIFEST, 0.5)


# -- release with real TenSEAL ---------------------------------------------------------------------

ROWS = 2500  # two ciphertexts per column at 2048 slots, so the aggregate really adds ciphertexts
SCHEMA = [
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 60},
    {"name": "smoker", "kind": "boolean"},
]
MEAN = {"aggregate": "mean", "column": "bmi"}
SUM = {"aggregate": "sum", "column": "bmi"}
COUNT = {"aggregate": "count", "column": "smoker"}


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    """A CSV encrypted with the owner's own code; the key holder's own copy of the manifest (the one
    ``encrypt_csv`` writes beside the key); each column's aggregate as the server computes it from
    the chunks; the plaintext column sums; and the CKKS error bound of each."""
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(5)  # public test data
    frame = pd.DataFrame(
        {"bmi": np.round(rng.uniform(15, 45, ROWS), 2), "smoker": rng.choice(["yes", "no"], ROWS, p=[0.3, 0.7])}
    )
    frame.to_csv(root / "data.csv", index=False)
    manifest = he.encrypt_csv(root / "data.csv", SCHEMA, root / "bundle", keystore=root / "keys", progress=False)
    own_manifest = he.load_local_manifest(manifest["bundle_id"], root / "keys")
    assert own_manifest == manifest
    public = (root / "bundle" / "context.bin").read_bytes()
    columns = {}
    for column in manifest["columns"]:
        assert len(column["files"]) == 2
        chunks = [(root / "bundle" / f["file"]).read_bytes() for f in column["files"]]
        columns[column["name"]] = encrypted_sum(public, chunks)
    secret = he.load_secret_context(manifest["bundle_id"], root / "keys")
    truth = {"bmi": float(frame["bmi"].sum()), "smoker": float((frame["smoker"] == "yes").sum())}
    params = {"poly_modulus_degree": 4096, "global_scale_bits": 20, "coeff_mod_bit_sizes": [40, 20, 40]}
    tolerance = {
        "bmi": ckks_error_bound("sum", ROWS, lower=10, upper=60, **params),
        "smoker": ckks_error_bound("sum", ROWS, lower=0, upper=1, **params),
    }
    return own_manifest, columns, secret, truth, tolerance


def aggregates_of(plan: he_plan.Plan, columns: dict) -> dict[str, bytes]:
    """The served ciphertext of each aggregate of ``plan`` (all single-column sums here)."""
    assert all(len(a.factors) == 1 and not a.weighted for a in plan.aggregates)
    return {a.name: columns[a.factors[0]] for a in plan.aggregates}


def served(query: dict, encrypted, epsilon: float = 1.0, **kw) -> tuple[dict, he_plan.Plan, dict]:
    manifest, columns, _, _, _ = encrypted
    own = he_plan.plan(query, manifest, epsilon)
    return served_plan(query, manifest, epsilon, **kw), own, aggregates_of(own, columns)


def component_truth(component: he_plan.Component, own: he_plan.Plan, truth: dict, tolerance: dict):
    """The un-noised value of a component and the CKKS error it may carry."""
    column = {a.name: a.factors[0] for a in own.aggregates}
    value = component.offset + sum(coef * truth[column[a]] for a, coef in component.terms)
    error = sum(abs(coef) * tolerance[column[a]] for a, coef in component.terms)
    return value, error


def tail_steps(epsilon: float, steps: int, tail: float = TAIL) -> int:
    """The smallest k with P(|Z| > k) <= tail for the discrete Laplace P(z) ∝ p^|z|, p = exp(-eps/steps):
    P(|Z| > k) = 2 p^(k+1) / (1 + p)."""
    p = math.exp(-epsilon / steps)
    k = math.ceil(math.log(tail * (1 + p) / 2) / math.log(p)) - 1
    assert 2 * p ** (k + 1) / (1 + p) <= tail < 2 * p**k / (1 + p)
    return k


def on_grid(value, g) -> bool:
    return math.isfinite(value) and (Fraction(value) / Fraction(g)).denominator == 1


@pytest.mark.parametrize("query", [MEAN, SUM, COUNT], ids=lambda q: q["aggregate"])
def test_the_honest_plan_releases_values_on_the_grid_within_the_noises_tail_bound(encrypted, query):
    manifest, _, secret, truth, tol = encrypted
    plan, own, aggregates = served(query, encrypted)
    values = noisy_values(plan, aggregates, secret, rng=random.Random(2024), manifest=manifest)
    assert set(values) == {c.name for c in own.components}
    for component in own.components:
        value, g = values[component.name], component.noise.granularity
        if component.noise.integer:
            assert component.noise.kind == "geometric" and g == 1.0 and type(value) is int
        else:
            assert component.noise.kind == "laplace" and type(value) is float
        assert on_grid(value, g)
        exact, ckks = component_truth(component, own, truth, tol)
        # The value is rounded to the grid (at most g / 2 off, plus the CKKS error) and moved by
        # k grid steps, with |k| > tail_steps with probability at most TAIL.
        k = tail_steps(component.noise.epsilon, component.noise.steps)
        assert abs(value - exact) <= (k + 0.5) * g + ckks, component.name
        if not component.noise.integer:
            # Noise was really added: far more than the CKKS error (deterministic with this seed).
            assert abs(value - exact) > 10 * max(ckks, g)


def test_a_count_is_the_exact_integer_plus_geometric_noise(encrypted):
    _, _, secret, truth, _ = encrypted
    plan, own, aggregates = served(COUNT, encrypted, epsilon=1e6)
    # At epsilon 10^6, p = exp(-10^6) is 0.0: no noise, and the CKKS error is rounded away.
    assert noisy_values(plan, aggregates, secret, rng=1, manifest=encrypted[0]) == {"count0": int(truth["smoker"])}


def test_the_same_seed_gives_the_same_values_and_another_seed_others(encrypted):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted)
    first = noisy_values(plan, aggregates, secret, rng=random.Random(99), manifest=manifest)
    again = noisy_values(plan, lambda name: aggregates[name], secret, rng=random.Random(99), manifest=manifest)
    assert first == again
    assert noisy_values(plan, aggregates, secret, rng=99, manifest=manifest) == first  # a seed works as well
    other = noisy_values(plan, aggregates, secret, rng=random.Random(100), manifest=manifest)
    assert other["sum"] != first["sum"] and other["count"] != first["count"]
    # Without an rng the noise comes from the OS: two calls differ.
    assert noisy_values(plan, aggregates, secret, manifest=manifest) != noisy_values(
        plan, aggregates, secret, manifest=manifest
    )


@pytest.mark.parametrize("bad", [np.random.default_rng(1), np.random.RandomState(1), 1.5])
def test_a_numpy_generator_is_refused(encrypted, bad):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted)
    with pytest.raises(TypeError):
        noisy_values(plan, aggregates, secret, rng=bad, manifest=manifest)


def discrete_laplace_moments(epsilon: float, steps: int) -> tuple[float, float]:
    """Variance and fourth moment (in grid steps) of the discrete Laplace, summed from its pmf."""
    p = math.exp(-epsilon / steps)
    k = np.arange(0, math.ceil(math.log(1e-30) / math.log(p)) + 1, dtype=float)
    pmf = (1 - p) / (1 + p) * np.exp(k * math.log(p))
    pmf[1:] *= 2.0  # P(|Z| = k)
    assert math.isclose(math.fsum(pmf), 1.0, rel_tol=1e-12)
    return math.fsum(pmf * k**2), math.fsum(pmf * k**4)


@pytest.mark.parametrize(("query", "draws"), [(MEAN, 2000), (COUNT, 2000)], ids=["mean", "count"])
def test_released_noise_has_the_own_plans_law(encrypted, query, draws):
    """The release wires its own plan's mechanism into the sampler: over repeated releases of one job,
    each component's noise, in grid steps, has the variance of the discrete Laplace with
    p = exp(-epsilon / steps) (the two-sided geometric for a count)."""
    manifest, _, secret, truth, tol = encrypted
    plan, own, aggregates = served(query, encrypted)
    rng = random.Random(31337)
    out = [noisy_values(plan, aggregates, secret, rng=rng, manifest=manifest) for _ in range(draws)]
    for component in own.components:
        g = component.noise.granularity
        exact, ckks = component_truth(component, own, truth, tol)
        steps = np.array([d[component.name] for d in out]) / g
        assert np.all(steps == np.round(steps))
        var, mu4 = discrete_laplace_moments(component.noise.epsilon, component.noise.steps)
        assert abs(steps.var(ddof=1) - var) <= Z * math.sqrt((mu4 - var**2) / draws), component.name
        # Centred on the grid point of the (CKKS-decrypted) truth: within g / 2 + the CKKS error of it.
        assert abs(steps.mean() - exact / g) <= Z * math.sqrt(var / draws) + 0.5 + ckks / g, component.name


def test_every_aggregate_of_the_plan_is_fetched_once(encrypted):
    manifest, _, secret, _, _ = encrypted
    plan, own, aggregates = served(MEAN, encrypted)
    asked = []

    def fetch(name):
        asked.append(name)
        return aggregates[name]

    assert set(noisy_values(plan, fetch, secret, rng=1, manifest=manifest)) == {"count", "sum"}
    assert asked == [a.name for a in own.aggregates] == ["a0"]


def test_an_aggregate_that_is_not_a_ciphertext_is_refused_by_name(encrypted):
    manifest, _, secret, _, _ = encrypted
    plan, _, _ = served(MEAN, encrypted)
    with pytest.raises(ReleaseError, match="aggregate 'a0': could not be decrypted"):
        noisy_values(plan, {"a0": b"not a ciphertext"}, secret, rng=1, manifest=manifest)
    with pytest.raises(ReleaseError, match="aggregate 'a0': no ciphertext"):
        noisy_values(plan, {}, secret, rng=1, manifest=manifest)


def test_the_public_context_cannot_release(encrypted):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted)
    public = secret.copy()
    public.make_context_public()
    with pytest.raises(ReleaseError, match="could not be decrypted"):
        noisy_values(plan, aggregates, public, rng=1, manifest=manifest)


def test_no_un_noised_value_leaves_noisy_values(encrypted):
    """The sums returned are noisy: none equals an un-noised aggregate or component (to CKKS
    precision). (A count, whose noise has a scale of a few units, may legitimately land on its truth.)"""
    manifest, _, secret, truth, tol = encrypted
    unnoised = [truth["bmi"], truth["smoker"], float(ROWS), truth["bmi"] - 35.0 * ROWS]
    slack = 2 * max(tol.values())
    for query in (MEAN, SUM):
        plan, own, aggregates = served(query, encrypted)
        values = noisy_values(plan, aggregates, secret, rng=random.Random(4), manifest=manifest)
        assert own.components[-1].name == "sum" and own.components[-1].noise.scale >= 50
        assert all(abs(values["sum"] - u) > slack for u in unnoised)


# -- a lying server is refused before anything is decrypted ------------------------------------------


def _lowered(plan: dict) -> None:
    total = plan["components"][1]
    # A consistent lie: check_release_spec alone would pass it (scale = sensitivity / epsilon).
    total.update(sensitivity=1e-12, scale=1e-12 / total["epsilon"], steps=1, granularity=2.0**-50)


def _more_epsilon(plan: dict) -> None:
    for component in plan["components"]:
        component["epsilon"] *= 1000
        component["scale"] /= 1000


def _offset(plan: dict) -> None:
    plan["components"][0]["offset"] += 1.0  # a count of rows + 1


def _finer_grid(plan: dict) -> None:
    plan["components"][1].update(granularity=plan["components"][1]["granularity"] / 2)


def _other_term(plan: dict) -> None:
    plan["components"][1]["terms"] = [["a0", 2.0]]


LIES = [
    pytest.param(_lowered, "components.sum.sensitivity", id="lowered-sensitivity-and-scale"),
    pytest.param(lambda p: p["aggregates"][0].update(length=1), "aggregates.a0.length", id="length-1"),
    pytest.param(_more_epsilon, "components.count.epsilon", id="component-epsilon-above-the-jobs"),
    pytest.param(
        lambda p: p["components"].append({**p["components"][1], "name": "sum2"}),
        "the server sent 3 components; this job has 2",
        id="extra-component",
    ),
    pytest.param(lambda p: p["components"].pop(), "the server sent 1 components; this job has 2", id="missing"),
    pytest.param(_offset, "components.count.offset", id="different-offset"),
    pytest.param(_finer_grid, "components.sum.granularity", id="finer-grid"),
    pytest.param(_other_term, "components.sum.terms", id="other-coefficient"),
    pytest.param(lambda p: p["components"][0].update(budget="sum"), "components.count.budget", id="shared-budget"),
]


@pytest.mark.parametrize(("lie", "words"), LIES)
def test_noisy_values_refuses_a_served_plan_that_differs_from_its_own_and_decrypts_nothing(encrypted, lie, words):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted)
    lie(plan)
    asked = []
    with pytest.raises(ReleaseError) as info:
        noisy_values(plan, lambda name: asked.append(name) or aggregates[name], secret, rng=1, manifest=manifest)
    assert "differs from the key holder's own plan" in str(info.value)
    assert words in str(info.value)
    assert asked == []


def test_a_plan_spending_more_epsilon_than_the_job_paid_for_is_refused(encrypted):
    """Every component planned honestly, but at epsilon 2 while the job states (and paid) 1."""
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted, epsilon=2.0, paid=1.0)
    assert plan["epsilon"] == "1.000000"
    check_release_spec(plan)  # internally consistent: only re-planning shows the lie
    asked = []
    with pytest.raises(ReleaseError, match="differs from the key holder's own plan: components.count.epsilon"):
        noisy_values(plan, lambda name: asked.append(name) or aggregates[name], secret, rng=1, manifest=manifest)
    assert asked == []


def test_a_served_plan_from_a_narrower_manifest_than_the_owners_is_refused(encrypted):
    """A server whose manifest declares bmi in [30, 31] plans a sensitivity of 1 instead of 50; the key
    holder plans from its own copy and refuses."""
    manifest, _, secret, _, _ = encrypted
    lying = copy.deepcopy(manifest)
    lying["columns"][0].update(lower=30, upper=31)
    plan, _, _ = served(MEAN, (lying, *encrypted[1:]))
    asked = []
    with pytest.raises(ReleaseError, match="differs from the key holder's own plan"):
        noisy_values(plan, lambda name: asked.append(name) or b"", secret, rng=1, manifest=manifest)
    assert asked == []


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p: p.update(delta="0.000001"), "pure epsilon"),
        (lambda p: p.update(epsilon="lots"), "'epsilon'"),
        (lambda p: p.update(bundle_id="f" * 32), "not the local manifest's"),
        (lambda p: p.update(query={"aggregate": "sum", "column": "bmi"}), "differs from the key holder's own plan"),
    ],
)
def test_a_served_plan_with_a_delta_another_bundle_or_another_query_is_refused(encrypted, mutate, words):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted)
    mutate(plan)
    asked = []
    with pytest.raises(ReleaseError, match=words):
        noisy_values(plan, lambda name: asked.append(name) or aggregates[name], secret, rng=1, manifest=manifest)
    assert asked == []


class FakeClient:
    def __init__(self, aggregates):
        self.aggregates, self.fetched, self.posted = aggregates, [], []

    def aggregate_bytes(self, job, name):
        self.fetched.append((job, name))
        return self.aggregates[name]

    def release(self, job, values):
        self.posted.append((job, values))
        return {"id": job, "status": "released"}


def test_release_job_refuses_an_epsilon_past_the_key_holders_own_cap(encrypted, tmp_path):
    manifest, _, secret, _, _ = encrypted
    plan, _, aggregates = served(MEAN, encrypted, epsilon=1.0)
    client = FakeClient(aggregates)
    ledger = EpsilonLedger(tmp_path / "ledger.jsonl", "0.5")
    with pytest.raises(ReleaseError, match="would pass the owner's cap of 0.5"):
        release_job(client, plan, secret, rng=1, manifest=manifest, ledger=ledger)
    assert client.fetched == [] and client.posted == [] and ledger.entries() == []
    # Under a cap with room the same plan is released, recorded once, with values on their grids.
    ledger = EpsilonLedger(tmp_path / "ledger.jsonl", "1.5")
    done = release_job(client, plan, secret, rng=1, manifest=manifest, ledger=ledger)
    assert client.posted == [(7, done.values)] and [e["job"] for e in ledger.entries()] == [7]
    assert on_grid(done.values["sum"], plan["components"][1]["granularity"])
