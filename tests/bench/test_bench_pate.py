"""bench/pate.py's parts at a small size: a tiny declared table over three owners, a few Confident-GNMax
settings through the engine, the table's shape, its epsilon columns against the engine's own costs, the
non-private baselines, and the docs block rewritten in place beside the models' one.

No wall-time assertions (the numbers go to docs/BENCHMARKS.md).
"""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from bench import models_adult, models_report, pate_report
from bench import pate as bench
from compute.engines import accounting, pate
from compute.engines.pate import rdp

COLUMNS = [
    {"name": "x", "kind": "numeric", "lower": 0, "upper": 10},
    {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"]},
    {"name": "label", "kind": "categorical", "categories": ["no", "yes"], "is_label": True},
]
SETTINGS = (
    bench.Setting("loose", {"teachers": 20, "threshold": 12, "sigma1": 3, "sigma2": 2, "max_queries": 120}),
    bench.Setting("fewer", {"teachers": 20, "threshold": 12, "sigma1": 3, "sigma2": 2, "max_queries": 40}),
    bench.Setting("fitted", {"teachers": 20, "threshold": 12, "max_queries": 120, "epsilon": 2.0}),
)


def tiny_table(train: int = 900, test: int = 400) -> models_adult.Table:
    """x uniform in [0, 10], a colour, and the label "yes" when x + noise is over 5."""
    rng = np.random.default_rng(7)
    rows = train + test
    x = np.round(rng.uniform(0, 10, rows), 2)
    colour = rng.choice(["red", "green", "blue"], rows)
    label = np.where(x + rng.normal(0, 1, rows) > 5, "yes", "no")
    frame = pd.DataFrame({"x": x, "colour": colour, "label": label})
    return models_adult.Table("tiny", COLUMNS, "label", frame.iloc[:train], frame.iloc[train:])


@pytest.fixture(scope="module")
def measured():
    data = bench.split(tiny_table(), pool=150)
    return data, bench.measure(data, SETTINGS, runs=2, runner=lambda s, spec: bench.engine_run(s, spec, rng=11))


def test_the_split_gives_three_owners_their_shares_and_keeps_the_buyers_rows_apart(measured):
    data, _ = measured
    assert data.sizes == [450, 270, 180]  # 50%, 30%, 20% of 900
    assert len(data.queries) == 150 and len(data.evaluation) == 250
    assert data.queries.shape[1] == 4  # x and three colours


def test_every_epsilon_column_is_the_engines_own_cost(measured):
    data, results = measured
    assert [m.setting.name for m in results] == ["loose", "fewer", "fitted"]
    for m in results:
        assert m.spec == pate.parse_spec(m.setting.spec, 150, delta=1e-5)
        assert len(m.runs) == 2
        for r in m.runs:
            assert r.asked == m.spec.max_queries and 0 < r.answered <= r.asked
            used = pate.used_rho(m.spec, r.asked, r.answered)
            assert r.epsilon_charged == accounting.zcdp_epsilon(used, 1e-5)
            assert r.epsilon_reserved == pate.reserved_epsilon(m.spec, 1e-5) >= r.epsilon_charged
            assert r.epsilon_data_dependent == rdp.epsilon(r.curve, 1e-5) > 0
            assert r.epsilon_data_dependent_classic == rdp.epsilon_classic(r.curve, 1e-5)
            assert r.epsilon_data_dependent_classic >= r.epsilon_data_dependent  # the looser conversion
            assert 0.5 < r.label_accuracy <= 1.0 and 0.5 < r.student_accuracy <= 1.0
    fitted = results[2]
    assert fitted.runs[0].epsilon_reserved == pytest.approx(2.0, rel=1e-6)  # parse_spec fitted the sigmas
    assert fitted.spec.sigma1 / fitted.spec.sigma2 == pytest.approx(150 / 40)  # the defaults, scaled together


def test_the_table_has_a_row_per_setting_the_baselines_and_the_anchors(measured):
    data, results = measured
    baseline = bench.non_private(data, results[0].spec)
    assert baseline.ensemble.answered == baseline.ensemble.asked == 120
    assert baseline.logistic_accuracy > 0.8 and baseline.ensemble_test_accuracy > 0.8
    assert baseline.train_rows == 900
    lines = pate_report.table(results, baseline)
    assert len(lines) == 2 + len(results) + 2 + 2
    assert {line.count("|") for line in lines} == {12}
    loose = [cell.strip() for cell in lines[2].split("|")[1:-1]]
    assert loose[:3] == ["loose", "20, 12, 3, 2", "120"]
    charged = statistics.mean(r.epsilon_charged for r in results[0].runs)
    assert loose[6] == f"{charged:.2f}" and loose[7] == f"{results[0].runs[0].epsilon_reserved:.2f}"
    dd = statistics.mean(r.epsilon_data_dependent for r in results[0].runs)
    classic = statistics.mean(rdp.epsilon_classic(r.curve, 1e-5) for r in results[0].runs)
    assert loose[8] == f"{dd:.2f} / {classic:.2f}"
    assert lines[5].startswith("| non-private: the same teachers' plain majority vote") and "∞ (no privacy)" in lines[5]
    assert lines[-1].startswith("| anchor: the issue's reproduction") and "| 566 |" in lines[-1]
    notes = pate_report.notes(data, results, baseline, 1e-5)
    assert "NOT charged" in notes[2] and "450, 270, 180" in notes[0]


def test_the_docs_block_is_rewritten_in_place_beside_the_models_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n")
    models_report.update_docs(path, models_report.block("m1", ["a"], [], ["h"], [], "t"))
    pate_report.update_docs(path, pate_report.block("p1", ["row"], ["- note"], "t"))
    first = path.read_text()
    assert first.index(models_report.BEGIN) < first.index("## PATE (issue 16)\n\n" + pate_report.BEGIN)
    path.write_text(first.replace(pate_report.BEGIN, "Reading kept.\n\n" + pate_report.BEGIN) + "\nafter\n")
    pate_report.update_docs(path, pate_report.block("p2", ["row"], [], "t"))
    second = path.read_text()
    assert "Reading kept." in second and second.endswith("\nafter\n") and "m1" in second
    assert "p2" in second and "p1" not in second and second.count(pate_report.BEGIN) == 1


# A transaction test: the job is sent to Celery (eager here) once its row is committed.
@pytest.mark.django_db(transaction=True)
def test_through_the_job_api_a_run_comes_from_the_release_and_the_ledger(eager_tasks):
    from bench import pate_django
    from compute.models import Job
    from marketplace.models import LedgerEntry

    table = tiny_table()
    data = bench.split(table, pool=150)
    owners, buyer = bench.raw_parts(table, 150)
    assert [len(o) for o in owners] == data.sizes and len(buyer) == 150
    runner = pate_django.prepare(table, owners, buyer, data.evaluation).for_settings(SETTINGS[:1], 150, 1e-5)
    (m,) = bench.measure(data, SETTINGS[:1], runs=1, runner=runner)
    (run,) = m.runs
    job = Job.objects.get(kind="pate")
    assert job.spec["student"] is True and job.spec["pate"] == m.spec.canonical()
    assert (run.asked, run.answered) == (120, job.result["answered"]) and run.answered > 0
    commits = LedgerEntry.objects.filter(job_id=job.pk, kind="commit")
    assert commits.count() == 3 and {float(c.epsilon) for c in commits} == {run.epsilon_charged}
    used = pate.used_rho(m.spec, run.asked, run.answered)
    assert run.epsilon_charged == pytest.approx(accounting.zcdp_epsilon(used, 1e-5), abs=1e-5)
    assert run.epsilon_reserved == float(job.epsilon) >= run.epsilon_charged
    assert 0.5 < run.label_accuracy <= 1.0 and 0.5 < run.student_accuracy <= 1.0
    assert run.epsilon_data_dependent is None and run.student_seconds is None
    lines = pate_report.api_section([m])
    assert {line.count("|") for line in lines if line.startswith("|")} == {12}
    assert "in the run" in lines[4] and "through the job API is met by" in lines[-2]
