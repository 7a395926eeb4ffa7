"""Turning a stored release into what the buyer reads: the receipt and CSV / JSON downloads."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from compute.models import Job

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ (or tab / CR) gets a leading
    quote, unless it is a plain number such as -3.5, which no spreadsheet evaluates as a formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def receipt(job: Job) -> dict[str, Any] | None:
    if job.status != Job.Status.RELEASED or not job.result:
        return None
    r = job.result
    out = {
        "job": job.pk,
        "mode": r.get("mode", "dp"),
        "mechanism": r.get("mechanism"),
        "epsilon_charged": f"{job.epsilon:f}" if job.reused_from_id is None else "0",
        "delta_charged": f"{job.delta:f}" if job.reused_from_id is None else "0",
        "noise_scale": r.get("noise_scale"),
        "interval": r.get("interval_note"),
        "dataset": job.dataset_id,
        "dataset_version": r.get("dataset_version", job.dataset_version),
        "released_at": r.get("released_at"),
        # The relation the epsilon refers to, and each noisy measurement's grid (docs/PRIVACY.md).
        "neighbouring": r.get("neighbouring"),
        "granularity": r.get("granularity"),
    }
    # The accountant's side (docs/PRIVACY.md): the release's zCDP rho, and the guarantee of everything
    # released on the purchase and on the dataset once it was (results released before the accountant
    # have none).
    out["rho_charged"] = f"{job.rho:f}" if job.reused_from_id is None else "0"
    privacy = r.get("privacy") or {}
    for side in ("purchase_after", "dataset_after"):
        if side in privacy:
            out[side] = privacy[side]
    if "members" in privacy:
        # A PATE job (docs/PATE.md): the rho reserved and used, and each member dataset's charge and its
        # guarantee after it; the price paid for the answered labels.
        out["members"] = privacy["members"]
        out["rho_reserved"] = privacy.get("rho_reserved")
        out["payment"] = r.get("payment")
    if "epsilon_replace_one" in r and job.reused_from_id is None:
        out["epsilon_replace_one"] = r["epsilon_replace_one"]
    if "training" in r:
        # A train job (docs/MODELS.md): each noisy part's mechanism and share, and the declared bounds used.
        out["training"] = r["training"]
    if r.get("mode") == "he":
        # The CKKS parameters, and the precision lost to encryption (already inside the interval).
        out["ckks"] = r.get("ckks")
    return out


def result_rows(job: Job) -> tuple[list[str], list[list[Any]]]:
    """A released result as a table: one row per group (and per bin or quantile)."""
    r = job.result or {}
    if job.kind == Job.Kind.PATE:
        # One row per row of the buyer's table, in order; an empty label is a point not answered.
        return ["row", "label"], [[i, label] for i, label in enumerate(r.get("labels", []), start=1)]
    groups = r.get("groups", [])
    keys = list((groups[0].get("key") or {}).keys()) if groups else []
    agg = r.get("aggregate")
    rows: list[list[Any]] = []
    if agg == "histogram":
        header = keys + ["bin", "count", "ci95_low", "ci95_high"]
        for g in groups:
            for b in g["value"]:
                label = b["bin"] if not isinstance(b["bin"], list) else f"[{b['bin'][0]}, {b['bin'][1]})"
                rows.append([*(g["key"] or {}).values(), label, b["count"], b["ci95"][0], b["ci95"][1]])
    elif agg == "quantile":
        header = keys + ["quantile", "value"]
        quantiles = (job.spec or {}).get("quantiles", [])
        for g in groups:
            for q, v in zip(quantiles, g["value"]):
                rows.append([*(g["key"] or {}).values(), q, v])
    else:
        header = keys + ["value", "ci95_low", "ci95_high"]
        for g in groups:
            ci = g.get("ci95") or [None, None]
            rows.append([*(g["key"] or {}).values(), g["value"], ci[0], ci[1]])
    return header, rows


def result_csv(job: Job) -> str:
    header, rows = result_rows(job)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return out.getvalue()


def result_json(job: Job) -> str:
    return json.dumps({"job": job.pk, "result": job.result, "receipt": receipt(job)}, indent=2)


MODEL_FORMAT = "cloakroom-model"


def released_model(job: Job) -> dict[str, Any] | None:
    """A released job's model: a train job's ``model``, or a PATE job's ``student`` (docs/PATE.md)."""
    result = job.result or {}
    return result.get("student") if job.kind == Job.Kind.PATE else result.get("model")


def model_file(job: Job) -> str:
    """A released train job's (or a PATE job's student's) portable model file: the parameters, the
    encoding a loader needs (the declared bounds and categories) and the receipt
    (cloakroom_client/models.py reads it)."""
    doc = {"format": MODEL_FORMAT, "version": 1, "job": job.pk, "model": released_model(job)}
    return json.dumps({**doc, "receipt": receipt(job)}, indent=2)
