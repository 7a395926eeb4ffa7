"""bench/models.py's parts at a small size: training jobs through the job API on a tiny declared table
beside diffprivlib and scikit-learn, the accuracy table's shape, encrypted inference on breast cancer
agreeing with the plaintext model, and the docs block rewritten in place.

No wall-time assertions (the numbers go to docs/BENCHMARKS.md).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from bench import models as bench
from bench import models_adult, models_django, models_report
from bench.models_he import encrypted_inference
from compute.models import Job
from marketplace.models import LedgerEntry

COLUMNS = [
    {"name": "x", "kind": "numeric", "lower": 0, "upper": 10},
    {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "label", "kind": "categorical", "categories": ["no", "yes"], "is_label": True},
]


def tiny_table(rows: int = 400) -> models_adult.Table:
    """x uniform in [0, 10], a colour, and the label "yes" when x + noise is over 5."""
    rng = np.random.default_rng(7)
    x = np.round(rng.uniform(0, 10, rows), 2)
    colour = rng.choice(["red", "green", "blue"], rows)
    label = np.where(x + rng.normal(0, 1, rows) > 5, "yes", "no")
    frame = pd.DataFrame({"x": x, "colour": colour, "label": label})
    return models_adult.Table("tiny", COLUMNS, "label", frame.iloc[: rows // 2], frame.iloc[rows // 2 :])


def test_the_declaration_is_documented_constants_and_fits_the_training_limit():
    table = models_adult.Table("UCI Adult", models_adult.COLUMNS, models_adult.LABEL, pd.DataFrame(), pd.DataFrame())
    numeric = {c["name"]: (c["lower"], c["upper"]) for c in table.columns if c["kind"] == "numeric"}
    assert numeric["age"] == (17, 90) and numeric["capital_gain"] == (0, 99999) and numeric["hours_per_week"] == (1, 99)
    categorical = {c["name"]: c["categories"] for c in table.columns if c["kind"] == "categorical"}
    assert len(categorical["native_country"]) == 41 + 1 and categorical["native_country"][-1] == "?"
    assert categorical["income"] == ["<=50K", ">50K"]
    encoded = len(numeric) + sum(len(v) for k, v in categorical.items() if k != "income")
    assert encoded == 108 <= 120  # docs/MODELS.md: at most 120 encoded columns
    assert models_adult.data_norm(table) == pytest.approx(np.sqrt(14))


# A transaction test: the job is sent to Celery (eager here) once its row is committed.
@pytest.mark.django_db(transaction=True)
def test_jobs_through_the_api_beside_diffprivlib_make_the_accuracy_table(eager_tasks):
    table = tiny_table()
    listed = models_django.prepare(table, Decimal("30"))
    rows = bench.accuracy_rows(table, (1.0, 5.0), 2, listed)

    # Every accuracy came from a released training job, each charged once.
    assert Job.objects.filter(kind=Job.Kind.TRAIN, status=Job.Status.RELEASED).count() == 4
    assert LedgerEntry.objects.filter(kind="commit").count() == 4
    assert [r.epsilon for r in rows] == [1.0, 5.0]
    for row in rows:
        assert len(row.cloakroom) == len(row.diffprivlib) == len(row.job_seconds) == 2
        assert all(0.0 <= a <= 1.0 for a in row.cloakroom + row.diffprivlib)

    non_private = models_adult.sklearn_accuracy(table)
    assert non_private > 0.8  # the label is x > 5 up to noise: a line separates it
    lines = models_report.adult_table(rows, non_private)
    assert len(lines) == 2 + len(rows) + 1
    assert {line.count("|") for line in lines} == {10}
    assert lines[2].startswith("| 1 | ") and "| 0.790 |" in lines[2]  # the anchor at epsilon 1
    assert lines[-1].startswith("| non-private (scikit-learn) | ")


def test_encrypted_predictions_equal_the_plaintext_ones_and_the_table_has_a_row_per_size():
    he = encrypted_inference([1, 3], repeats=1)
    assert (he.features, he.test_rows) == (30, 171)
    assert he.same_predictions == he.test_rows
    assert he.encrypted_accuracy == he.plaintext_accuracy > 0.9
    assert he.max_score_error < 1e-3
    assert [(s.rows, s.ciphertexts) for s in he.sizes] == [(1, 30), (3, 30)]  # one ciphertext per column
    lines = models_report.he_table(he)
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 1", "| 3", "| anchor: 1", "| anchor: 169"]


def test_the_docs_block_is_rewritten_in_place_and_the_prose_around_it_stays(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Earlier\n\ntext\n")
    models_report.update_docs(path, models_report.block("m1", ["a"], [], ["h"], [], "t"))
    first = path.read_text()
    assert first.startswith("# Benchmarks\n\n## Earlier\n\ntext\n\n## Models (issue 15)\n\n" + models_report.BEGIN)
    path.write_text(first.replace(models_report.BEGIN, "Prose kept.\n\n" + models_report.BEGIN) + "\nafter\n")
    models_report.update_docs(path, models_report.block("m2", ["b"], [], ["h"], [], "t"))
    second = path.read_text()
    assert "Prose kept." in second and second.endswith("\nafter\n")
    assert "m2" in second and "m1" not in second and second.count(models_report.BEGIN) == 1
