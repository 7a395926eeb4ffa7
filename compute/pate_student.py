"""A PATE job's optional student (``spec.student: true``, docs/PATE.md): a logistic regression trained on
the answered rows of the buyer's table and their released labels, released as ``result.student`` in the
portable format of a train job's ``result.model``.

Privacy: the student reads only what is the buyer's already, its own table and the noisy labels the
release gives it, so it is post-processing of the release and costs nothing more (the 2017 paper,
section 3.1). It is trained by the engine (:func:`compute.engines.pate.student`) on the job's encoding
(compute/pate_data.py: numeric features clipped to their declared bounds and scaled to [-1, 1]); its
coefficients are mapped back here to the declared units, as a train job's are, so that the SDK's
``cloakroom_client.models.design_matrix`` and ``estimator`` rebuild it on a table of raw features.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError
from compute.kinds.base import query_error
from compute.pate_data import classes_of

logger = logging.getLogger(__name__)

STUDENT_MODEL = "logistic_regression"
HOW = (
    "a logistic regression (scikit-learn, C = 1) on the answered rows of your table and their released labels: "
    "post-processing of the release, no further privacy cost"
)


def student_flag(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The spec without ``student`` (the engine's spec has no such field) and whether a student was asked
    for. A value other than true or false is a 400 naming ``spec.student``."""
    if "student" not in body:
        return body, False
    rest = {k: v for k, v in body.items() if k != "student"}
    value = body["student"]
    if not isinstance(value, bool):
        raise query_error(QueryError("spec.student", "Must be true or false."))
    return rest, value


def columns_and_encoding(features: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The encoded columns (one per numeric or boolean feature, ``name=category`` per declared category)
    and each feature's declaration as a model file states it (compute/engines/models' ``describe``)."""
    columns: list[str] = []
    encoding: list[dict[str, Any]] = []
    for decl in features:
        name, kind = decl["name"], decl["kind"]
        own = [f"{name}={c}" for c in decl["categories"]] if kind == "categorical" else [name]
        entry: dict[str, Any] = {"name": name, "kind": kind, "columns": own}
        if kind == "numeric":
            entry.update(lower=decl["lower"], upper=decl["upper"])
        elif kind == "categorical":
            entry["categories"] = list(decl["categories"])
        columns += own
        encoding.append(entry)
    return columns, encoding


def _units(features: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per encoded column, the middle and half-width of its declared range (0 and 1 for 0/1 columns):
    the encoding is ``(x - mid) / half``."""
    mid: list[float] = []
    half: list[float] = []
    for decl in features:
        if decl["kind"] == "numeric":
            lo, hi = float(decl["lower"]), float(decl["upper"])
            mid.append((lo + hi) / 2.0)
            half.append((hi - lo) / 2.0)
        else:
            width = len(decl["categories"]) if decl["kind"] == "categorical" else 1
            mid += [0.0] * width
            half += [1.0] * width
    return np.array(mid), np.array(half)


def declared_units(
    features: Sequence[dict[str, Any]], coefficients: Sequence[Sequence[float]], intercept: Sequence[float]
) -> tuple[list[list[float]], list[float]]:
    """Coefficients on the scaled columns as coefficients on the declared units: ``w . (x - mid) / half
    + b`` is ``(w / half) . x + (b - w . mid / half)``."""
    mid, half = _units(features)
    w = np.asarray(coefficients, dtype=float)
    b = np.asarray(intercept, dtype=float)
    scaled = w / half
    return scaled.tolist(), (b - scaled @ mid).tolist()


def student_model(
    features: Sequence[dict[str, Any]], label: dict[str, Any], x: np.ndarray, labels: Sequence[Any]
) -> dict[str, Any]:
    """The student of the answered rows ``x`` (the job's encoding) and their released ``labels``, as a
    model file's ``model``. Raises the engine's QueryError when the labels hold fewer than two classes."""
    from compute.engines import pate as engine  # scikit-learn, loaded where a student is trained only

    params = engine.student(x, list(labels), model=STUDENT_MODEL, classes=classes_of(label))
    columns, encoding = columns_and_encoding(features)
    coefficients, intercept = declared_units(features, params["coefficients"], params["intercept"])
    return {
        "type": STUDENT_MODEL,
        "features": [decl["name"] for decl in features],
        "label": label["name"],
        "classes": params["classes"],
        "columns": columns,
        "encoding": encoding,
        "params": dict(params["params"]),
        "coefficients": coefficients,
        "intercept": intercept,
        "trained_on": params["trained_on"],
        "training": HOW,
    }


def released_student(
    features: Sequence[dict[str, Any]], label: dict[str, Any], x: np.ndarray, labels: Sequence[Any]
) -> dict[str, Any]:
    """What the result holds under ``student`` and ``student_error``: the model, or None and why not.
    The labels are released whatever happens to the student: it is the buyer's extra, not the job."""
    answered = [i for i, value in enumerate(labels) if value is not None]
    try:
        return {"student": student_model(features, label, x[answered], [labels[i] for i in answered])}
    except QueryError as exc:  # fewer than two classes among the answered labels
        return {"student": None, "student_error": exc.message}
    except Exception:  # noqa: BLE001 (a student that cannot be fitted must not lose the labels)
        logger.exception("the student could not be trained")
        return {"student": None, "student_error": "The student could not be trained."}
