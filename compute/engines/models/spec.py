"""A training request checked against the declared schema, and the encoding of its features.

A request body is ``{"type", "features": [...], "label", "params": {...}}``. Everything the engine
will use as a bound comes from the declaration: a numeric feature's declared lower and upper bounds
(the values are clipped to them and scaled to [-1, 1]), a categorical feature's declared categories
(one 0/1 column each), a boolean feature (one 0/1 column), the label's classes (a categorical
label's declared categories, or false and true) and a numeric label's declared bounds. Nothing is
read off the data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from compute.engines.dp.query import ColumnMeta

TYPES = ("logistic_regression", "linear_regression", "naive_bayes")
CLASSIFIERS = ("logistic_regression", "naive_bayes")
MODEL_FIELDS = frozenset({"type", "features", "label", "params"})
# Each type's hyper-parameters and their defaults (None: chosen from the noise, see fit.py).
PARAMS: dict[str, dict[str, float | None]] = {
    "logistic_regression": {"C": 1.0, "alpha": None},
    "linear_regression": {"alpha": None},
    "naive_bayes": {"var_floor": 1e-3},
}
# Encoded columns (one per numeric or boolean feature, one per declared category): the noisy
# statistics grow with their square.
MAX_COLUMNS = 120
MAX_CLASSES = 50


@dataclass(frozen=True)
class Feature:
    """One requested feature and the encoded columns it becomes."""

    name: str
    kind: str  # numeric | categorical | boolean
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        if self.kind == "categorical":
            return [f"{self.name}={c}" for c in self.categories]
        return [self.name]

    @property
    def mid(self) -> float:
        assert self.lower is not None and self.upper is not None
        return (self.lower + self.upper) / 2.0

    @property
    def half(self) -> float:
        assert self.lower is not None and self.upper is not None
        return (self.upper - self.lower) / 2.0

    def describe(self) -> dict[str, Any]:
        """The declaration the model was trained with (the receipt's bounds and the loader's encoding)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "columns": self.columns}
        if self.kind == "numeric":
            out.update(lower=self.lower, upper=self.upper)
        elif self.kind == "categorical":
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class ModelSpec:
    type: str
    features: tuple[Feature, ...]
    label: Feature
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[Any]:
        """A classifier's classes, from the declaration: the label's categories, or false and true."""
        if self.label.kind == "boolean":
            return [False, True]
        return list(self.label.categories)

    @property
    def columns(self) -> list[str]:
        """The encoded feature columns, in the order of the coefficients."""
        return [c for f in self.features for c in f.columns]

    def canonical(self) -> dict[str, Any]:
        """The request as stored on the job (and hashed for free repeats); parse_model reads it back."""
        return {
            "type": self.type,
            "features": [f.name for f in self.features],
            "label": self.label.name,
            "params": dict(self.params),
        }


def _feature(meta: ColumnMeta, where: str) -> Feature:
    if meta.kind == "numeric":
        lo, hi = meta.lower, meta.upper
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise QueryError(where, f"Column '{meta.name}' declares no bounds; a model needs them to clip its values.")
        return Feature(meta.name, "numeric", float(lo), float(hi))
    if meta.kind == "categorical":
        if not meta.categories:
            raise QueryError(where, f"Column '{meta.name}' declares no categories.")
        return Feature(meta.name, "categorical", categories=tuple(meta.categories))
    return Feature(meta.name, "boolean")


def _features(raw: Any, schema: dict[str, ColumnMeta]) -> tuple[Feature, ...]:
    if not isinstance(raw, list) or not raw:
        raise QueryError("model.features", "Give a list of declared column names.")
    out: list[Feature] = []
    for i, name in enumerate(raw):
        where = f"model.features.{i}"
        if not isinstance(name, str) or name not in schema:
            raise QueryError(where, f"Unknown column {name!r}: features must be declared columns.")
        if any(f.name == name for f in out):
            raise QueryError(where, f"Column '{name}' is listed twice.")
        out.append(_feature(schema[name], where))
    if sum(len(f.columns) for f in out) > MAX_COLUMNS:
        raise QueryError("model.features", f"At most {MAX_COLUMNS} encoded columns (one per category).")
    return tuple(out)


def _label(raw: Any, kind: str, schema: dict[str, ColumnMeta]) -> Feature:
    if not isinstance(raw, str) or raw not in schema:
        raise QueryError("model.label", f"Unknown column {raw!r}: the label must be a declared column.")
    meta = schema[raw]
    if kind in CLASSIFIERS:
        if meta.kind == "numeric":
            raise QueryError("model.label", f"A {kind} needs a categorical or boolean label; '{raw}' is numeric.")
        label = _feature(meta, "model.label")
        if label.kind == "categorical" and len(label.categories) < 2:
            raise QueryError("model.label", f"Column '{raw}' declares one class; a classifier needs at least two.")
        if len(label.categories) > MAX_CLASSES:
            raise QueryError("model.label", f"At most {MAX_CLASSES} classes.")
        return label
    if meta.kind != "numeric":
        raise QueryError(
            "model.label", f"A linear regression needs a numeric label with declared bounds; '{raw}' is {meta.kind}."
        )
    return _feature(meta, "model.label")


def _params(raw: Any, kind: str) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise QueryError("model.params", "Must be an object.")
    allowed = PARAMS[kind]
    out: dict[str, Any] = {}
    for name in sorted(raw):
        if name not in allowed:
            raise QueryError(f"model.params.{name}", f"Unknown for {kind}; it takes {', '.join(sorted(allowed))}.")
        value = raw[name]
        if value is None and allowed[name] is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise QueryError(f"model.params.{name}", "Must be a finite number.")
        if value < 0 or (name == "C" and value == 0):
            raise QueryError(f"model.params.{name}", "Must be greater than 0." if name == "C" else "Must be >= 0.")
        out[name] = float(value)
    for name, default in allowed.items():
        if default is not None:
            out.setdefault(name, default)
    return out


def parse_model(raw: Any, schema: dict[str, ColumnMeta]) -> ModelSpec:
    """Check a ``model`` body against the schema; a QueryError naming the field (``model.label``,
    ``model.features.2``, ...) otherwise."""
    if not isinstance(raw, dict):
        raise QueryError("model", "Must be an object.")
    unknown = set(raw) - MODEL_FIELDS
    if unknown:
        raise QueryError(f"model.{sorted(unknown)[0]}", "Unknown field.")
    kind = raw.get("type")
    if kind not in TYPES:
        raise QueryError("model.type", f"Must be one of: {', '.join(TYPES)}.")
    features = _features(raw.get("features"), schema)
    label = _label(raw.get("label"), kind, schema)
    if any(f.name == label.name for f in features):
        raise QueryError("model.label", f"Column '{label.name}' is also a feature.")
    return ModelSpec(kind, features, label, _params(raw.get("params"), kind))


def spec_key(spec: ModelSpec) -> str:
    return json.dumps(spec.canonical(), sort_keys=True)
