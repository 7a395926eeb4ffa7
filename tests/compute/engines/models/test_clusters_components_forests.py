"""The engine's k-means, PCA and random forests (compute/engines/models): what is chosen without the
data comes from the seed and the declaration alone, one row moves each part by at most its declared
sensitivity, the parts spend at most the job's budget, and with little noise the models are the
plain ones."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from cloakroom_client.protocol.noise import gaussian_rho
from compute.engines import accounting, models
from compute.engines.dp.query import ColumnMeta
from compute.engines.models import forest, kmeans, stats

SCHEMA = {
    "x": ColumnMeta("x", "numeric", 0.0, 10.0),
    "w": ColumnMeta("w", "numeric", -5.0, 5.0),
    "colour": ColumnMeta("colour", "categorical", categories=("red", "green", "blue")),
    "flag": ColumnMeta("flag", "boolean"),
    "kind": ColumnMeta("kind", "categorical", categories=("a", "b", "c")),
}
FEATURES = ["x", "w", "colour", "flag"]
SPECS = {
    "kmeans": {"type": "kmeans", "features": FEATURES, "params": {"k": 4, "iterations": 3}},
    "pca": {"type": "pca", "features": FEATURES},
    "random_forest": {"type": "random_forest", "features": FEATURES, "label": "kind", "params": {"n_trees": 5}},
}


def spec(name: str, **params) -> models.ModelSpec:
    body = dict(SPECS[name])
    body["params"] = {**body.get("params", {}), **params}
    return models.parse_model(body, SCHEMA)


def table(n: int, seed: int) -> dict:
    rs = np.random.RandomState(seed)
    return {
        "x": rs.uniform(0, 10, n),
        "w": rs.uniform(-5, 5, n),
        "colour": rs.choice(["red", "green", "blue"], n).astype(object),
        "flag": (rs.rand(n) < 0.5).astype(float),
        "kind": rs.choice(["a", "b", "c"], n).astype(object),
    }


def corners() -> list[dict]:
    """One-row tables at the corners of the declared domain and beyond it (clipped)."""
    out = []
    for x, w, colour, flag, kind in itertools.product(
        (0.0, 10.0, 40.0), (-5.0, 5.0), ("red", "blue"), (0.0, 1.0), "ac"
    ):
        out.append(
            {
                "x": np.array([x]),
                "w": np.array([w]),
                "colour": np.array([colour], dtype=object),
                "flag": np.array([flag]),
                "kind": np.array([kind], dtype=object),
            }
        )
    return out


def test_what_is_public_comes_from_the_seed_and_the_declaration_alone():
    s = spec("random_forest", max_depth=3)
    trees = forest.shapes(s)
    assert len(trees) == 5
    lows = np.array([0.0, -5.0, 0.5, 0.5, 0.5, 0.5])
    highs = np.array([10.0, 5.0, 0.5, 0.5, 0.5, 0.5])
    for columns, thresholds in trees:
        assert len(columns) == 7  # the inner nodes of a full tree of depth 3
        assert np.all(thresholds >= lows[columns]) and np.all(thresholds <= highs[columns])
    # Two different tables, the same trees: the shapes never look at a row.
    shapes = []
    for seed in (1, 2):
        model = models.train(table(200, seed), s, 1.0, rng=random.Random(seed))["model"]
        strip = json_shape(model["trees"])
        shapes.append(strip)
    assert shapes[0] == shapes[1]
    assert forest.shapes(spec("random_forest", seed=9))[0][1].tolist() != trees[0][1].tolist()

    s = spec("kmeans")
    start = kmeans.initial_centres(s)
    assert start.shape == (4, 6)
    assert np.all(start[:, :2] >= -1) and np.all(start[:, 2:] >= 0) and np.all(start <= 1)
    np.testing.assert_array_equal(start, kmeans.initial_centres(spec("kmeans")))


def json_shape(trees: list[dict]) -> list:
    def strip(node: dict):
        if "counts" in node:
            return None
        return (node["column"], node["threshold"], strip(node["left"]), strip(node["right"]))

    return [strip(t) for t in trees]


def test_one_row_moves_a_round_of_k_means_by_at_most_its_declared_sensitivity():
    s = spec("kmeans")
    pure, gaussian = models.plan(s, 1.0).mechanisms, models.plan(s, 1.0, 1e-6).mechanisms
    by_part = stats.parts(s)
    for part, part_stats in by_part.items():
        size = stats.signatures(s, part_stats)
        assert size == (1 if part.endswith("counts") else 4)  # x, w, colour's columns, flag
        for row in corners():
            a = stats.features(row, s)
            for cluster in range(4):  # whichever cluster the row is assigned to
                full = np.hstack([a, stats.indicators(np.array([cluster]), 4)])
                moved = stats.measure(full, part_stats)
                assert np.abs(moved).sum() <= size + 1e-9
                steps = np.abs(np.round(moved / stats.GRID)) + (moved != 0)
                assert steps.sum() <= pure[part].steps
                assert math.sqrt((steps**2).sum()) <= gaussian[part].steps


def test_one_row_moves_one_leaf_count_of_each_tree_by_one():
    s = spec("random_forest", max_depth=3)
    mid, half = stats.units(s)
    for row in corners():
        x = mid + half * stats.features(row, s)[:, 1:]
        y = stats.targets(row, s)
        for columns, thresholds in forest.shapes(s):
            counts = np.zeros((8, 3))
            np.add.at(counts, forest.leaves(x, columns, thresholds), y)
            assert counts.sum() == 1 and counts.max() == 1
    mechanisms = models.plan(s, 1.0).mechanisms
    assert all(m.sensitivity == 1 and m.steps == 1 and m.granularity == 1.0 for m in mechanisms.values())


@pytest.mark.parametrize("name", list(SPECS))
def test_the_parts_spend_at_most_the_jobs_budget(name):
    s = spec(name)
    pure = models.plan(s, 0.7)
    assert sum(m.epsilon for m in pure.mechanisms.values()) <= 0.7
    assert pure.rho == accounting.pure_rho(0.7)
    approx = models.plan(s, 0.7, 1e-6)
    assert approx.rho <= gaussian_rho(0.7, 1e-6)
    assert approx.rho == pytest.approx(gaussian_rho(0.7, 1e-6), rel=1e-6)
    assert accounting.zcdp_epsilon(approx.rho, 1e-6) <= 0.7
    if name == "random_forest":
        assert all(m.epsilon == pytest.approx(0.7 / 5) for m in pure.mechanisms.values())
    if name == "kmeans":
        rounds = [sum(m.epsilon for p, m in pure.mechanisms.items() if p.startswith(f"round_{r}_")) for r in (1, 2, 3)]
        assert rounds == pytest.approx([0.7 / 3] * 3)


def test_every_release_lies_on_its_grid():
    data = table(100, 3)
    out = models.train(data, spec("kmeans"), 1.0, rng=random.Random(4))
    assert all((v / stats.GRID).is_integer() for v in out["model"]["cluster_count"])
    out = models.train(data, spec("random_forest"), 1.0, rng=random.Random(4))

    def leaves(node):
        return [node["counts"]] if "counts" in node else leaves(node["left"]) + leaves(node["right"])

    counts = [c for tree in out["model"]["trees"] for leaf in leaves(tree) for c in leaf]
    assert len(counts) == 5 * 16 * 3 and all(float(c).is_integer() for c in counts)


def encoded(data: dict) -> np.ndarray:
    return np.column_stack(
        [data["x"], data["w"], *[(data["colour"] == c).astype(float) for c in ("red", "green", "blue")], data["flag"]]
    )


def test_with_little_noise_pca_is_the_plain_one():
    from sklearn.decomposition import PCA

    data = table(500, 5)
    data["w"] = np.clip(0.5 * (data["x"] - 5) + np.random.RandomState(6).normal(0, 1.5, 500), -5, 5)
    model = models.train(data, spec("pca", n_components=2), 1e8, rng=random.Random(1))["model"]
    plain = PCA(n_components=2).fit(encoded(data))
    np.testing.assert_allclose(model["mean"], plain.mean_, atol=1e-3)
    for ours, theirs in zip(model["components"], plain.components_):
        assert abs(float(np.dot(ours, theirs))) == pytest.approx(1.0, abs=1e-4)  # the same axis, up to sign
    # scikit-learn divides by n - 1, the noisy statistics by n.
    np.testing.assert_allclose(model["explained_variance"], plain.explained_variance_ * 499 / 500, rtol=1e-3)


def test_with_little_noise_k_means_finds_separated_clusters():
    rs = np.random.RandomState(2)
    centres = np.array([[2.0, -3.0], [8.0, 3.0]])
    pick = rs.randint(0, 2, 400)
    data = table(400, 7)
    data["x"] = centres[pick, 0] + rs.normal(0, 0.3, 400)
    data["w"] = centres[pick, 1] + rs.normal(0, 0.3, 400)
    s = models.parse_model({"type": "kmeans", "features": ["x", "w"], "params": {"k": 2, "iterations": 6}}, SCHEMA)
    found = np.array(models.train(data, s, 1e8, rng=random.Random(3))["model"]["centres"])
    found = found[np.argsort(found[:, 0])]
    np.testing.assert_allclose(found, centres, atol=0.15)


def test_with_little_noise_a_forest_counts_its_leaves_exactly():
    data = table(300, 8)
    s = spec("random_forest", n_trees=2, max_depth=2)
    model = models.train(data, s, 1e8, rng=random.Random(2))["model"]
    mid, half = stats.units(s)
    x = mid + half * stats.features(data, s)[:, 1:]
    for tree, (columns, thresholds) in zip(model["trees"], forest.shapes(s)):
        exact = np.zeros((4, 3))
        np.add.at(exact, forest.leaves(x, columns, thresholds), stats.targets(data, s))
        noisy = [tree["left"]["left"], tree["left"]["right"], tree["right"]["left"], tree["right"]["right"]]
        np.testing.assert_allclose([leaf["counts"] for leaf in noisy], exact, atol=1.0)
        assert exact.sum() == 300
