"""The PATE engine's interface (compute/engines/pate): the spec's defaults and checks, the data-independent
reservation, the split of the members' rows into teachers, the noisy labels and the student."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from cloakroom_client import models as client_models
from cloakroom_client.protocol.errors import QueryError
from compute.engines import accounting, pate
from compute.engines.pate import aggregate, teachers


def table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.RandomState(seed)
    x = rs.normal(size=(n, 3))
    return x, np.where(x[:, 0] + 0.3 * x[:, 1] > 0, "yes", "no")


MEMBERS = [table(800, 1), table(600, 2), table(400, 3)]
CLASSES = ["no", "yes"]


# -- the spec ----------------------------------------------------------------------------------------


def test_defaults_are_the_papers_adult_setting_scaled_to_the_teachers():
    spec = pate.parse_spec(None, 5000)
    assert (spec.teachers, spec.threshold, spec.sigma1, spec.sigma2) == (250, 200.0, 150.0, 40.0)
    assert spec.max_queries == 1000 and spec.teacher_model == "logistic_regression" and spec.epsilon is None
    assert pate.parse_spec(None, 300).max_queries == 300
    assert pate.parse_spec({"teachers": 100}, 300).threshold == 80.0


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"teachers": 0}, "spec.teachers"),
        ({"teachers": 2.5}, "spec.teachers"),
        ({"teachers": True}, "spec.teachers"),
        ({"threshold": -1}, "spec.threshold"),
        ({"threshold": 300}, "spec.threshold"),
        ({"sigma1": 0}, "spec.sigma1"),
        ({"sigma2": float("nan")}, "spec.sigma2"),
        ({"max_queries": 0}, "spec.max_queries"),
        ({"max_queries": 501}, "spec.max_queries"),
        ({"teacher_model": "svm"}, "spec.teacher_model"),
        ({"epsilon": 0}, "spec.epsilon"),
        ({"epsilon": "1"}, "spec.epsilon"),
        ({"colour": 1}, "spec.colour"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(raw, field):
    with pytest.raises(QueryError) as caught:
        pate.parse_spec(raw, 500)
    assert caught.value.field == field


def test_the_reservation_is_every_asked_query_answered_at_rho1_plus_rho2():
    spec = pate.parse_spec({"sigma1": 200, "sigma2": 40, "max_queries": 1500}, 2000)
    assert pate.reserved_rho(spec) == pytest.approx(1500 * (1 / (2 * 200**2) + 1 / 40**2), rel=1e-15)
    assert pate.used_rho(spec, 1500, 566) < pate.reserved_rho(spec)
    # The anchor: 1,500 asked and 566 answered, "about 4.5" at delta 1e-5, is rho + 2 sqrt(rho
    # ln(1/delta)); dp-accounting's RDP conversion of the same rho is tighter, 4.0.
    rho = pate.used_rho(spec, 1500, 566)
    assert rho + 2 * math.sqrt(rho * math.log(1e5)) == pytest.approx(4.5, abs=0.02)
    assert accounting.zcdp_epsilon(rho, 1e-5) == pytest.approx(4.0, abs=0.01)


def test_a_target_epsilon_scales_both_sigmas_until_the_reservation_fits():
    spec = pate.parse_spec({"epsilon": 2.0, "max_queries": 1000}, 5000, delta=1e-5)
    assert spec.sigma1 / spec.sigma2 == pytest.approx(150 / 40)
    assert pate.reserved_epsilon(spec, 1e-5) <= 2.0
    assert pate.reserved_epsilon(spec, 1e-5) == pytest.approx(2.0, rel=1e-6)


def test_a_target_epsilon_with_both_sigmas_lowers_the_queries_instead():
    spec = pate.parse_spec({"epsilon": 2.0, "sigma1": 150, "sigma2": 40}, 5000, delta=1e-5)
    assert (spec.sigma1, spec.sigma2) == (150.0, 40.0)
    assert pate.reserved_epsilon(spec, 1e-5) <= 2.0
    one_more = pate.PateSpec(**{**spec.canonical(), "max_queries": spec.max_queries + 1})
    assert pate.reserved_epsilon(one_more, 1e-5) > 2.0
    with pytest.raises(QueryError) as caught:
        pate.parse_spec({"epsilon": 2.0, "sigma1": 150, "sigma2": 40, "max_queries": 1000}, 5000, delta=1e-5)
    assert caught.value.field == "spec.max_queries"
    with pytest.raises(QueryError) as caught:
        pate.parse_spec({"epsilon": 0.01, "sigma1": 1, "sigma2": 1}, 5000, delta=1e-5)
    assert caught.value.field == "spec.epsilon"


def test_a_fitted_spec_reads_back_unchanged():
    spec = pate.parse_spec({"epsilon": 1.5, "teachers": 100}, 800, delta=1e-6)
    assert pate.parse_spec(spec.canonical(), 800, delta=1e-6) == spec


# -- the teachers --------------------------------------------------------------------------------


def test_teachers_are_spread_in_proportion_to_the_rows():
    assert teachers.allocate([800, 600, 400], 30) == [13, 10, 7]
    assert sum(teachers.allocate([1000, 10, 10], 50)) == 50
    assert teachers.allocate([1000, 10, 10], 50)[1:] == [1, 1]


@pytest.mark.parametrize(
    "sizes, count, field",
    [([], 10, "members"), ([100, 100], 1, "spec.teachers"), ([100], 11, "spec.teachers"), ([1000, 5], 50, "members.1")],
)
def test_an_allocation_that_cannot_work_is_refused(sizes, count, field):
    with pytest.raises(QueryError) as caught:
        teachers.allocate(sizes, count)
    assert caught.value.field == field


def test_every_row_is_in_exactly_one_teacher():
    parts = pate.partition(MEMBERS, 30, seed=7)
    assert [len(p) for p in parts] == [13, 10, 7]
    for (x, _), member in zip(MEMBERS, parts):
        rows = np.concatenate(member)
        assert sorted(rows.tolist()) == list(range(len(x)))
        assert all(len(p) > 0 for p in member)


def test_adding_a_row_changes_one_teacher_only():
    x, y = MEMBERS[0]
    before = pate.partition([(x, y)], 10, seed=3, sizes=[800])
    # The new row goes first: positions shift, but a row's teacher does not depend on its position.
    x2, y2 = np.vstack([[9.0, 9.0, 9.0], x]), np.append("yes", y)
    after = pate.partition([(x2, y2)], 10, seed=3, sizes=[800])
    changed = [j for j in range(10) if not np.array_equal(before[0][j] + 1, after[0][j][after[0][j] > 0])]
    assert changed == []
    assert sum(0 in part for part in after[0]) == 1


# -- the run -------------------------------------------------------------------------------------------


def test_a_run_labels_the_asked_rows_in_order_and_charges_what_it_used():
    unlabelled, truth = table(120, 9)
    spec = pate.parse_spec({"teachers": 30, "threshold": 20, "sigma1": 4, "sigma2": 2, "max_queries": 100}, 120)
    seen = []
    result = pate.run(MEMBERS, unlabelled, CLASSES, spec, rng=5, progress=lambda d, t: seen.append((d, t)))
    assert len(result.labels) == 120 and result.labels[100:] == [None] * 20
    assert result.asked == 100 and result.answered == sum(label is not None for label in result.labels)
    assert 80 <= result.answered <= 100
    assert result.rho == pytest.approx(100 / 32 + result.answered / 4)
    assert result.rho <= pate.reserved_rho(spec)
    right = [label == t for label, t in zip(result.labels, truth) if label is not None]
    assert np.mean(right) > 0.9
    assert seen[-1] == (130, 130) and len(seen) == 130
    assert not any(isinstance(v, np.ndarray) for v in vars(result).values())  # no votes kept


def test_a_run_is_repeatable_from_its_seed_and_varies_with_the_noise():
    unlabelled, _ = table(60, 4)
    spec = pate.parse_spec({"teachers": 30, "threshold": 15, "sigma1": 6, "sigma2": 6}, 60)
    one = pate.run(MEMBERS, unlabelled, CLASSES, spec, rng=1)
    assert pate.run(MEMBERS, unlabelled, CLASSES, spec, rng=1) == one
    assert pate.run(MEMBERS, unlabelled, CLASSES, spec, rng=2).labels != one.labels


def test_random_forest_teachers_vote_too():
    unlabelled, truth = table(40, 6)
    spec = pate.parse_spec(
        {"teachers": 20, "threshold": 10, "sigma1": 2, "sigma2": 2, "teacher_model": "random_forest"}, 40
    )
    result = pate.run(MEMBERS, unlabelled, CLASSES, spec, rng=3)
    right = [label == t for label, t in zip(result.labels, truth) if label is not None]
    assert result.answered > 20 and np.mean(right) > 0.8


def test_mismatched_features_are_refused_naming_the_member():
    spec = pate.parse_spec({"teachers": 30}, 10)
    with pytest.raises(QueryError) as caught:
        pate.run([MEMBERS[0], (np.zeros((600, 2)), MEMBERS[1][1])], np.zeros((10, 3)), CLASSES, spec)
    assert caught.value.field == "members.1"


def test_gnmax_answers_the_top_class_when_the_noise_is_small_and_abstains_below_the_threshold():
    counts = np.array([[90, 10, 0], [5, 80, 15], [40, 30, 30]])
    answers = aggregate.confident_gnmax(counts, 60, 1.0, 1.0, random.Random(0))
    assert answers == [0, 1, None]


def test_ties_are_broken_at_random():
    answers = aggregate.confident_gnmax(np.array([[50, 50]] * 400), 0, 1.0, 1e-3 + 1.0, random.Random(1))
    assert 150 < sum(a == 0 for a in answers) < 250


# -- the student ----------------------------------------------------------------------------------------


def test_the_student_rebuilds_in_the_sdk_and_predicts_like_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    x, y = table(300, 8)
    params = pate.student(x, list(y), classes=CLASSES)
    est = client_models.estimator({"model": {**params, "columns": ["a", "b", "c"]}})
    reference = LogisticRegression(max_iter=2000).fit(x, (y == "yes").astype(int))
    assert (est.predict(x) == np.where(reference.predict(x) == 1, "yes", "no")).all()
    assert params["classes"] == CLASSES and math.isfinite(params["intercept"][0])


def test_a_student_needs_two_classes_among_the_answers():
    with pytest.raises(QueryError) as caught:
        pate.student(np.zeros((3, 2)), ["yes"] * 3, classes=CLASSES)
    assert caught.value.field == "spec.student"
