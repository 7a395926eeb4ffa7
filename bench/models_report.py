"""The tables bench/models.py prints, and its measured block in docs/BENCHMARKS.md.

The block sits between two HTML comments inside the "Models (issue 15)" section, so that
``--update-docs`` replaces the numbers and leaves the section's hand-written reading of them alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.docs_block import update_block
from bench.models_he import HeResult

BEGIN = "<!-- bench/models.py: measured block, begin (rewritten by --update-docs) -->"
END = "<!-- bench/models.py: measured block, end -->"
SECTION = "## Models (issue 15)"

# The anchors (issue 15, "Anchors to beat, measured here").
ANCHOR_DIFFPRIVLIB = {0.1: 0.706, 0.5: 0.760, 1.0: 0.790, 5.0: 0.843}
ANCHOR_NON_PRIVATE = 0.852
ANCHOR_HE_ONE_ROW = {"encrypt": 17.6, "server": 69.0, "decrypt": 3.9}
ANCHOR_HE_BATCH = (169, 2.7)  # rows per batch, ms per row
ANCHOR_HE_ACCURACY = 0.9704
MARGIN = 0.01


@dataclass
class AccuracyRow:
    epsilon: float
    cloakroom: list[float] = field(default_factory=list)
    diffprivlib: list[float] = field(default_factory=list)
    job_seconds: list[float] = field(default_factory=list)  # POST to released (the task runs in the POST)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _range(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def adult_table(rows: list[AccuracyRow], non_private: float) -> list[str]:
    lines = [
        "| epsilon | Cloakroom, job API (mean ± sd) | Cloakroom min-max | diffprivlib, same run (mean ± sd) "
        "| diffprivlib min-max | anchor (diffprivlib) | Cloakroom - anchor | within 0.01 of the anchor or above? "
        "| job, POST to released (median s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        ours = statistics.mean(row.cloakroom)
        anchor = ANCHOR_DIFFPRIVLIB.get(row.epsilon)
        gap = "-" if anchor is None else f"{ours - anchor:+.3f}"
        met = "-" if anchor is None else ("yes" if ours >= anchor - MARGIN else "no")
        lines.append(
            f"| {row.epsilon:g} | {_mean_sd(row.cloakroom)} | {_range(row.cloakroom)} | {_mean_sd(row.diffprivlib)} "
            f"| {_range(row.diffprivlib)} | {'-' if anchor is None else f'{anchor:.3f}'} | {gap} | {met} "
            f"| {statistics.median(row.job_seconds):.2f} |"
        )
    lines.append(
        f"| non-private (scikit-learn) | {non_private:.3f} | - | - | - | {ANCHOR_NON_PRIVATE:.3f} "
        f"| {non_private - ANCHOR_NON_PRIVATE:+.3f} | - | - |"
    )
    return lines


def adult_notes(rows: list[AccuracyRow], train_rows: int, test_rows: int, columns: int) -> list[str]:
    seeds = len(rows[0].cloakroom) if rows else 0
    return [
        f"- {train_rows:,} training rows (adult.data), {test_rows:,} test rows (adult.test), {columns} encoded "
        "columns; every number is a mean over "
        f"{seeds} runs per epsilon: {seeds} training jobs (each draws fresh noise from the operating system's "
        f"generator, so they cannot be seeded) and {seeds} diffprivlib fits (random_state 0 to {seeds - 1});",
        "- each job's epsilon is the nominal one plus a millionth per job of the run (no job may be a free "
        "repeat of an earlier one); delta 0; the model's default hyper-parameters.",
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


def he_table(he: HeResult) -> list[str]:
    lines = [
        "| rows in the request | ciphertexts up | encrypt (ms) | server (ms) | of which context load (ms) "
        "| decrypt + link (ms) | total (ms) | total per row (ms) | server per row (ms) | up (MB) | down (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in he.sizes:
        lines.append(
            f"| {s.rows:,} | {s.ciphertexts} | {_ms(s.encrypt)} | {_ms(s.server)} | {_ms(s.context)} | {_ms(s.decrypt)} "
            f"| {_ms(s.total)} | {s.total / s.rows * 1e3:,.3f} | {s.server / s.rows * 1e3:,.3f} "
            f"| {s.upload_bytes / 1e6:.1f} | {s.scores_bytes / 1e6:.2f} |"
        )
    one = ANCHOR_HE_ONE_ROW
    rows, per_row = ANCHOR_HE_BATCH
    lines.append(
        f"| anchor: 1 | - | {one['encrypt']:g} | {one['server']:g} | - | {one['decrypt']:g} "
        f"| {sum(one.values()):g} | {sum(one.values()):g} | - | - | - |"
    )
    lines.append(f"| anchor: {rows} | - | - | - | - | - | - | {per_row:g} | - | - | - |")
    return lines


def he_summary(he: HeResult) -> list[str]:
    same = "yes" if he.same_predictions == he.test_rows else "NO"
    return [
        f"- test split: {he.test_rows} of 569 tumours ({he.features} features; the model fitted on the other "
        f"{he.train_rows}); plaintext accuracy {he.plaintext_accuracy:.4f}, encrypted accuracy "
        f"{he.encrypted_accuracy:.4f} (anchor {ANCHOR_HE_ACCURACY:.4f}); the same prediction for "
        f"{he.same_predictions} of {he.test_rows} rows: {same}; largest |encrypted score - plaintext score| "
        f"{he.max_score_error:.2e};",
        f"- the public context the client uploads with every request: {he.context_bytes / 1e6:.2f} MB.",
    ]


def block(machine: str, adult: list[str], adult_notes: list[str], he: list[str], he_notes: list[str], tail: str) -> str:
    """The measured block as Markdown."""
    parts = [BEGIN, "", machine, "", "UCI Adult, test accuracy:", "", *adult, "", *adult_notes, ""]
    parts += ["Encrypted inference on breast cancer (medians):", "", *he, "", *he_notes, "", tail, "", END]
    return "\n".join(parts)


def update_docs(path: Path, measured: str) -> None:
    """Put the measured block in the section, replacing an earlier one (or appending the section)."""
    update_block(path, measured, begin=BEGIN, end=END, section=SECTION)
