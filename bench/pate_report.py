"""The table bench/pate.py prints, and its measured block in docs/BENCHMARKS.md ("PATE (issue 16)").

The block sits between two HTML comments inside the section (bench/docs_block.py), so that
``--update-docs`` replaces the numbers and leaves the section's hand-written reading of them alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.docs_block import update_block
from compute.engines import pate

if TYPE_CHECKING:  # bench/pate.py imports this module; at run time it is often __main__
    from bench.pate import Measured, NonPrivate, Split

BEGIN = "<!-- bench/pate.py: measured block, begin (rewritten by --update-docs) -->"
END = "<!-- bench/pate.py: measured block, end -->"
SECTION = "## PATE (issue 16)"

# The issue's anchors (issue 16, "Anchors to beat, measured here").
ANCHOR_PAPER = {"teachers": 300, "answered": 524, "student": 0.837, "epsilon": 1.90, "non_private": 0.850}
ANCHOR_ISSUE = {"teachers": 250, "answered": 566, "student": 0.826, "epsilon": 1.76, "non_private": 0.851}
ANCHOR_ISSUE_INDEPENDENT = 4.5
AIM_STUDENT, AIM_EPSILON = 0.82, 2.0

HEADER = [
    "| setting | T, T_c, sigma1, sigma2 | asked | answered (mean, min-max) | accuracy of the answered labels "
    "| student, test accuracy (mean ± sd) | epsilon charged: data-independent, committed (mean) "
    "| epsilon reserved (all asked answered) | data-dependent epsilon, UNSANITISED, NOT charged: "
    "dp-accounting / paper's conversion (mean) | run (median s) | student (median s) |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def _num(x: float) -> str:
    return f"{x:g}" if x == round(x) else f"{x:.1f}"


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _params(spec: pate.PateSpec) -> str:
    return f"{spec.teachers}, {_num(spec.threshold)}, {_num(spec.sigma1)}, {_num(spec.sigma2)}"


def _dd(m: Measured) -> str:
    dd = [r.epsilon_data_dependent for r in m.runs if r.epsilon_data_dependent is not None]
    classic = [r.epsilon_data_dependent_classic for r in m.runs if r.epsilon_data_dependent_classic is not None]
    if not dd or not classic:
        return "-"
    return f"{statistics.mean(dd):.2f} / {statistics.mean(classic):.2f}"


def setting_row(m: Measured) -> str:
    answered = [r.answered for r in m.runs]
    asked = sorted({r.asked for r in m.runs})
    return (
        f"| {m.setting.name} | {_params(m.spec)} | {'/'.join(map(str, asked))} "
        f"| {statistics.mean(answered):.0f} ({min(answered)}-{max(answered)}) "
        f"| {statistics.mean(r.label_accuracy for r in m.runs):.3f} | {_mean_sd([r.student_accuracy for r in m.runs])} "
        f"| {statistics.mean(r.epsilon_charged for r in m.runs):.2f} | {m.runs[0].epsilon_reserved:.2f} "
        f"| {_dd(m)} | {statistics.median(r.run_seconds for r in m.runs):.1f} | {_student_seconds(m)} |"
    )


def _student_seconds(m: Measured) -> str:
    seconds = [r.student_seconds for r in m.runs if r.student_seconds is not None]
    return f"{statistics.median(seconds):.2f}" if seconds else "in the run"


def table(measured: Sequence[Measured], baseline: NonPrivate) -> list[str]:
    lines = list(HEADER) + [setting_row(m) for m in measured]
    e = baseline.ensemble
    lines.append(
        f"| non-private: the same teachers' plain majority vote, no noise | {measured[0].spec.teachers}, -, -, - "
        f"| {e.asked} | {e.answered} (all) | {e.label_accuracy:.3f} | {e.student_accuracy:.3f} | ∞ (no privacy) | - | - "
        f"| {e.run_seconds:.1f} | {e.student_seconds:.2f} |"
    )
    lines.append(
        f"| non-private: logistic regression on all {baseline.train_rows:,} training rows | - | - | - | - "
        f"| {baseline.logistic_accuracy:.3f} | ∞ (no privacy) | - | - | {baseline.logistic_seconds:.1f} | - |"
    )
    for name, a, independent in (
        ("anchor: 2018 paper, Table 2", ANCHOR_PAPER, "-"),
        ("anchor: the issue's reproduction", ANCHOR_ISSUE, f"about {ANCHOR_ISSUE_INDEPENDENT:g}"),
    ):
        lines.append(
            f"| {name} (non-private {a['non_private']:.3f}) | {a['teachers']}, 200, 200, 40 | 1500 | {a['answered']} "
            f"| - | {a['student']:.3f} | {independent} | - | {a['epsilon']:.2f} (unsanitised) | - | - |"
        )
    return lines


def notes(split: Split, measured: Sequence[Measured], baseline: NonPrivate, delta: float) -> list[str]:
    sizes = split.sizes
    first = measured[0]
    per_owner = pate.allocate(sizes, first.spec.teachers)
    rho = [pate.used_rho(first.spec, r.asked, r.answered) for r in first.runs]
    classic_independent = statistics.mean(p + 2 * math.sqrt(p * math.log(1 / delta)) for p in rho)
    met = [
        m.setting.name
        for m in measured
        if statistics.mean(r.student_accuracy for r in m.runs) >= AIM_STUDENT
        and max(r.epsilon_charged for r in m.runs) <= AIM_EPSILON
        and m.runs[0].epsilon_reserved <= AIM_EPSILON
    ]
    return [
        f"- {sum(sizes):,} training rows (adult.data) dealt to three owners of {', '.join(f'{n:,}' for n in sizes)} "
        f"rows (a public seeded permutation); {first.spec.teachers} teachers are {', '.join(map(str, per_owner))} "
        f"per owner (in proportion to the owners' public sizes), each a logistic regression on the rows a keyed "
        f"hash deals it; the buyer's unlabelled table is {len(split.queries):,} rows of adult.test (another "
        f"public shuffle), and every accuracy is on the other {len(split.evaluation):,} test rows; "
        f"{split.queries.shape[1]} encoded columns (bench/models_adult.py);",
        f"- epsilons at delta {delta:g}. Charged: the data-independent zCDP cost the ledger commits, asked x "
        "1/(2 sigma1^2) + answered x 1/sigma2^2, converted by dp-accounting; reserved: the same with every asked "
        "query answered. The issue's 'about 4.5' is rho + 2 sqrt(rho ln(1/delta)) at 566 answered: that "
        f"formula gives {classic_independent:.2f} at the first setting's answered counts here;",
        "- data-dependent: the 2018 paper's bound (Theorem 6, Propositions 7 and 10) on the votes actually "
        "counted, for the engine's integer noise (compute/engines/pate/rdp.py), converted by dp-accounting and "
        "by the paper's rdp + log(1/delta)/(lambda - 1). It is a function of the private votes: NOT charged, "
        "never released, until its smooth-sensitivity sanitisation (not built yet) adds its own cost;",
        f"- the non-private ensemble answers every asked query with the teachers' plain majority (ties to the "
        f"first class); as a classifier it scores {baseline.ensemble_test_accuracy:.3f} on the test rows; the "
        "logistic regression is scikit-learn's (C = 1) on every training row, same encoding;",
        "- run: teachers trained, votes counted, Confident-GNMax with exact discrete Gaussians and the "
        "data-dependent analysis (compute.engines.pate.run); student: the engine's student fitted on the "
        "answered labels and scored by the SDK's estimator;",
        f"- the aim (student >= {AIM_STUDENT:.2f} on average, with every run's committed and the reserved "
        f"data-independent epsilon <= {AIM_EPSILON:g}) is met by: "
        f"{', '.join(met) if met else 'no setting'}.",
    ]


def api_section(api: Sequence[Measured]) -> list[str]:
    """The ``--through-api`` table: the same columns, from the released jobs and the ledger."""
    lines = list(HEADER) + [setting_row(m) for m in api]
    met = [
        m.setting.name
        for m in api
        if statistics.mean(r.student_accuracy for r in m.runs) >= AIM_STUDENT
        and max(r.epsilon_charged for r in m.runs) <= AIM_EPSILON
        and m.runs[0].epsilon_reserved <= AIM_EPSILON
    ]
    runs = len(api[0].runs) if api else 0
    notes = [
        f"- through the job API (bench/pate_django.py), {runs} runs per setting: three owner accounts list their "
        "parts (Parquet uploads, the declared schema, row counts public) and join them into an ensemble with "
        "POST /api/v1/ensembles/ and /{id}/members/; each run a buyer posts the same 1,500 rows (numeric "
        'features clipped to the declared bounds, no label) and the setting\'s spec with "student": true to '
        "POST /api/v1/ensembles/{id}/jobs/; in-process Django on a throwaway PostgreSQL database, the pate kind "
        "run in the request (Celery eager);",
        "- charged: each member's commit row in the ledger (all three equal in every run), reserved: the job's "
        "epsilon; student: the released student (trained in the job on the answered labels), rebuilt from "
        "GET /api/v1/jobs/{id}/model/ by the SDK's estimator and scored on the raw evaluation rows; run: from "
        "the POST to the released job, the uploads' check, the teachers and the student included; the API "
        "releases no data-dependent epsilon;",
        f"- the aim (student >= {AIM_STUDENT:.2f} on average, every run's committed and the reserved epsilon "
        f"<= {AIM_EPSILON:g}) through the job API is met by: {', '.join(met) if met else 'no setting'}.",
    ]
    return ["Through the job API (`--through-api`):", "", *lines, "", *notes, ""]


def block(machine: str, lines: list[str], notes: list[str], tail: str, api: list[str] | None = None) -> str:
    """The measured block as Markdown (with the ``--through-api`` part when it ran)."""
    parts = [BEGIN, "", machine, "", "UCI Adult over three owners, Confident-GNMax:", "", *lines, "", *notes, ""]
    return "\n".join([*parts, *(api or []), tail, "", END])


def update_docs(path: Path, measured: str) -> None:
    """Put the measured block in the section, replacing an earlier one (or appending the section)."""
    update_block(path, measured, begin=BEGIN, end=END, section=SECTION)
