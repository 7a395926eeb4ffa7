"""The model engine's noisy statistics (compute/engines/models): bounds from the declaration only,
sensitivities that hold for any neighbouring pair, the budget split, and diffprivlib's issue #105."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from cloakroom_client.protocol.noise import gaussian_rho
from compute.engines import accounting, models
from compute.engines.dp.query import ColumnMeta
from compute.engines.models import stats

SCHEMA = {
    "x": ColumnMeta("x", "numeric", 0.0, 10.0),
    "w": ColumnMeta("w", "numeric", -5.0, 5.0),
    "colour": ColumnMeta("colour", "categorical", categories=("red", "green", "blue")),
    "flag": ColumnMeta("flag", "boolean"),
    "y": ColumnMeta("y", "numeric", 0.0, 100.0),
    "kind": ColumnMeta("kind", "categorical", categories=("a", "b", "c")),
}
FEATURES = ["x", "w", "colour", "flag"]
SPECS = {
    "linear_regression": {"type": "linear_regression", "features": FEATURES, "label": "y"},
    "logistic_regression": {"type": "logistic_regression", "features": FEATURES, "label": "flag_label"},
    "logistic_multiclass": {"type": "logistic_regression", "features": FEATURES, "label": "kind"},
    "naive_bayes": {"type": "naive_bayes", "features": FEATURES, "label": "kind"},
}
SCHEMA["flag_label"] = ColumnMeta("flag_label", "boolean")


def spec(name: str) -> models.ModelSpec:
    return models.parse_model(SPECS[name], SCHEMA)


def table(rows: list[dict]) -> dict:
    return {
        name: np.array([r[name] for r in rows], dtype=object if name in ("colour", "kind") else float)
        for name in SCHEMA
    }


def corner_rows() -> list[dict]:
    """Rows at every corner of the declared domain, and beyond it (clipped)."""
    out = []
    for x, w, colour, flag, y, kind in itertools.product(
        (0.0, 10.0, 25.0), (-5.0, 5.0), ("red", "blue"), (0.0, 1.0), (0.0, 100.0, -3.0), ("a", "c")
    ):
        out.append({"x": x, "w": w, "colour": colour, "flag": flag, "y": y, "kind": kind, "flag_label": flag})
    return out


@pytest.mark.parametrize("name", list(SPECS))
def test_one_row_moves_each_part_by_at_most_its_declared_sensitivity(name):
    # The L1 and L2 bounds hold for every row of the declared domain (and rows outside it, clipped),
    # added to any table: a part's statistics are sums of per-row terms.
    s = spec(name)
    mechanisms = models.plan(s, 1.0).mechanisms
    gaussian = models.plan(s, 1.0, 1e-6).mechanisms
    for part, part_stats in stats.parts(s).items():
        if not part_stats:
            continue
        size = stats.signatures(s, part_stats)
        assert mechanisms[part].sensitivity == size and gaussian[part].sensitivity == pytest.approx(math.sqrt(size))
        for row in corner_rows():
            moved = stats.measure(stats.rows(table([row]), s), part_stats)
            assert np.abs(moved).sum() <= size + 1e-9, (part, row)
            assert np.sqrt((moved**2).sum()) <= math.sqrt(size) + 1e-9, (part, row)
            assert np.count_nonzero(moved) <= size
            # In grid steps, rounding included, within the mechanism's integer sensitivity.
            steps = np.abs(np.round(moved / stats.GRID)) + (moved != 0)
            assert steps.sum() <= mechanisms[part].steps
            assert math.sqrt((steps**2).sum()) <= gaussian[part].steps


@pytest.mark.parametrize("name", list(SPECS))
def test_the_parts_spend_at_most_the_jobs_budget(name):
    s = spec(name)
    pure = models.plan(s, 0.7)
    assert sum(m.epsilon for m in pure.mechanisms.values()) <= 0.7
    assert pure.rho == accounting.pure_rho(0.7)
    # One noise scale for every statistic (logistic regression's count and weights are two measurements).
    if name != "logistic_regression" and name != "logistic_multiclass":
        assert max(m.scale for m in pure.mechanisms.values()) == pytest.approx(
            min(m.scale for m in pure.mechanisms.values())
        )
    approx = models.plan(s, 0.7, 1e-6)
    assert {m.kind for m in approx.mechanisms.values()} == {"gaussian"}
    assert approx.rho <= gaussian_rho(0.7, 1e-6)
    assert approx.rho == pytest.approx(gaussian_rho(0.7, 1e-6), rel=1e-6)
    assert accounting.zcdp_epsilon(approx.rho, 1e-6) <= 0.7


def test_every_release_lies_on_the_grid_and_classes_come_from_the_declaration():
    rows = corner_rows()[:7]  # only classes a and c among the labels
    s = spec("naive_bayes")
    out = models.train(table(rows), s, 2.0, rng=random.Random(5))
    noisy = stats.release(table(rows), s, models.plan(s, 2.0).mechanisms, random.Random(5))
    for values in noisy.values():
        assert all((v / stats.GRID).is_integer() for v in values)
    assert out["model"]["classes"] == ["a", "b", "c"]
    assert out["training"]["bounds"][-1] == {
        "name": "kind",
        "kind": "categorical",
        "columns": ["kind=a", "kind=b", "kind=c"],
        "categories": ["a", "b", "c"],
        "label": True,
    }


def test_issue_105_a_lower_bound_of_zero_never_gives_a_zero_sensitivity_or_no_noise():
    # diffprivlib 0.6.6's LinearRegression computes a zero sensitivity when a lower bound is 0 (its
    # issue #105). Here every bound starts at 0: rows at 0 still move every statistic (0 is the end
    # of the scaled range, -1, not a zero term), every part is noised, and the noise has its law.
    schema = {
        "a": ColumnMeta("a", "numeric", 0.0, 1.0),
        "b": ColumnMeta("b", "numeric", 0.0, 50.0),
        "y": ColumnMeta("y", "numeric", 0.0, 10.0),
    }
    s = models.parse_model({"type": "linear_regression", "features": ["a", "b"], "label": "y"}, schema)
    zeros = {"a": np.zeros(1), "b": np.zeros(1), "y": np.zeros(1)}
    for part, part_stats in stats.parts(s).items():
        moved = stats.measure(stats.rows(zeros, s), part_stats)
        assert np.all(np.abs(moved) == 1.0), part  # a row of zeros is no zero contribution
    for delta in (0.0, 1e-6):
        mechanisms = models.plan(s, 1.0, delta).mechanisms
        assert all(m.sensitivity > 0 and m.scale > 0 for m in mechanisms.values())
        data = {"a": np.zeros(50), "b": np.zeros(50), "y": np.zeros(50)}
        rng = random.Random(7)
        exact = {p: stats.measure(stats.rows(data, s), st) for p, st in stats.parts(s).items()}
        noise = np.concatenate(
            [np.concatenate([stats.release(data, s, mechanisms, rng)[p] - exact[p] for p in exact]) for _ in range(300)]
        )
        std = mechanisms["cross"].std
        assert np.all(np.isfinite(noise)) and np.count_nonzero(noise) > 0.99 * noise.size
        # 300 x 6 draws: the sample standard deviation within 10% of the mechanism's.
        assert noise.std() == pytest.approx(std, rel=0.1)


def test_a_numeric_feature_without_bounds_is_refused_naming_it():
    schema = {**SCHEMA, "loose": ColumnMeta("loose", "numeric", None, None)}
    with pytest.raises(models.QueryError) as info:
        models.parse_model({"type": "naive_bayes", "features": ["x", "loose"], "label": "kind"}, schema)
    assert info.value.field == "model.features.1" and "declares no bounds" in info.value.message


def test_with_little_noise_the_models_are_the_plain_ones():
    # A huge epsilon: the parameters are those of the same model fitted without privacy (ridge and
    # Taylor aside), so the fit from the statistics is right.
    from sklearn.linear_model import LinearRegression

    rs = np.random.RandomState(0)
    n = 400
    data = {
        "x": rs.uniform(0, 10, n),
        "w": rs.uniform(-5, 5, n),
        "colour": rs.choice(["red", "green", "blue"], n).astype(object),
        "flag": (rs.rand(n) < 0.5).astype(float),
        "kind": rs.choice(["a", "b", "c"], n).astype(object),
    }
    data["y"] = np.clip(3 * data["x"] + 2 * data["w"] + 20 * data["flag"] + 10, 0, 100)
    s = models.parse_model({**SPECS["linear_regression"], "params": {"alpha": 0}}, SCHEMA)
    model = models.train(data, s, 1e7, rng=random.Random(1))["model"]
    encoded = np.column_stack(
        [data["x"], data["w"], *[(data["colour"] == c).astype(float) for c in ("red", "green", "blue")], data["flag"]]
    )
    plain = LinearRegression().fit(encoded, data["y"])
    np.testing.assert_allclose(encoded @ model["coefficients"] + model["intercept"], plain.predict(encoded), atol=0.05)
