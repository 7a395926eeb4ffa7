"""A training request checked against the declared schema, and the encoding of its features.

A request body is ``{"type", "features": [...], "label", "params": {...}}`` (no label for
``kmeans`` and ``pca``). Everything the engine will use as a bound comes from the declaration: a
numeric feature's declared lower and upper bounds (the values are clipped to them and scaled to
[-1, 1]), a categorical feature's declared categories (one 0/1 column each), a boolean feature (one
0/1 column), the label's classes (a categorical label's declared categories, or false and true) and
a numeric label's declared bounds. Nothing is read off the data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from compute.engines.dp.query import ColumnMeta

TYPES = ("logistic_regression", "linear_regression", "naive_bayes", "random_forest", "kmeans", "pca")
CLASSIFIERS = ("logistic_regression", "naive_bayes", "random_forest")
UNSUPERVISED = ("kmeans", "pca")  # no label
MODEL_FIELDS = frozenset({"type", "features", "label", "params"})
# Encoded columns (one per numeric or boolean feature, one per declared category): the noisy
# statistics grow with their square.
MAX_COLUMNS = 120
MAX_CLASSES = 50
MAX_CLUSTERS = 20
# A random forest's noisy leaf counts (trees x leaves x classes), each drawn by an exact sampler.
MAX_LEAF_COUNTS = 20_000
_SEEDS = 2**32 - 1


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its default (None: optional, or required), whole or not, and its range."""

    default: float | None = None
    integer: bool = False
    low: float = 0.0
    high: float | None = None
    strict: bool = False  # the low end excluded (C > 0)
    required: bool = False

    def check(self, where: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise QueryError(where, "Must be a finite number.")
        if self.integer and value != int(value):
            raise QueryError(where, "Must be a whole number.")
        if value < self.low or (self.strict and value == self.low):
            raise QueryError(
                where, f"Must be greater than {self.low:g}." if self.strict else f"Must be >= {self.low:g}."
            )
        if self.high is not None and value > self.high:
            raise QueryError(where, f"Must be <= {self.high:g}.")
        return int(value) if self.integer else float(value)


# Each type's hyper-parameters and their defaults (alpha None: chosen from the noise, see fit.py; C
# None: the ridge chosen from the budget, see logistic.py; n_components None: every encoded column).
PARAMS: dict[str, dict[str, Param]] = {
    "logistic_regression": {"C": Param(strict=True)},
    "linear_regression": {"alpha": Param()},
    "naive_bayes": {"var_floor": Param(1e-3)},
    "kmeans": {
        "k": Param(integer=True, low=2, high=MAX_CLUSTERS, required=True),
        "iterations": Param(5, integer=True, low=1, high=10),
        "seed": Param(0, integer=True, high=_SEEDS),
    },
    "pca": {"n_components": Param(integer=True, low=1, high=MAX_COLUMNS)},
    "random_forest": {
        "n_trees": Param(10, integer=True, low=1, high=50),
        "max_depth": Param(4, integer=True, low=1, high=8),
        "seed": Param(0, integer=True, high=_SEEDS),
    },
}


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
    label: Feature | None  # None for kmeans and pca
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[Any]:
        """A classifier's classes, from the declaration: the label's categories, or false and true."""
        if self.label is None:
            return []
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
            "label": self.label.name if self.label is not None else None,
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


def _label(raw: Any, kind: str, schema: dict[str, ColumnMeta]) -> Feature | None:
    if kind in UNSUPERVISED:
        if raw is not None:
            raise QueryError("model.label", f"A {kind} model takes no label; leave it out.")
        return None
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
        rule, value = allowed[name], raw[name]
        if value is None and rule.default is None and not rule.required:
            continue
        out[name] = rule.check(f"model.params.{name}", value)
    for name, rule in allowed.items():
        if rule.required and name not in out:
            raise QueryError(
                f"model.params.{name}", f"A {kind} model needs {name} (whole, {rule.low:g} to {rule.high:g})."
            )
        if rule.default is not None:
            out.setdefault(name, int(rule.default) if rule.integer else rule.default)
    return out


def _check_sizes(kind: str, features: tuple[Feature, ...], label: Feature | None, params: dict[str, Any]) -> None:
    """What only the features and the parameters together can refuse (and pca's default)."""
    columns = sum(len(f.columns) for f in features)
    if kind == "pca":
        params.setdefault("n_components", columns)
        if params["n_components"] > columns:
            raise QueryError("model.params.n_components", f"At most the {columns} encoded columns of the features.")
    if kind == "random_forest":
        classes = 2 if label is None or label.kind == "boolean" else len(label.categories)
        counts = params["n_trees"] * 2 ** params["max_depth"] * classes
        if counts > MAX_LEAF_COUNTS:
            raise QueryError(
                "model.params.n_trees",
                f"{counts} noisy leaf counts (trees x 2**max_depth x classes); at most {MAX_LEAF_COUNTS}.",
            )


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
    if label is not None and any(f.name == label.name for f in features):
        raise QueryError("model.label", f"Column '{label.name}' is also a feature.")
    params = _params(raw.get("params"), kind)
    _check_sizes(kind, features, label, params)
    return ModelSpec(kind, features, label, params)


def spec_key(spec: ModelSpec) -> str:
    return json.dumps(spec.canonical(), sort_keys=True)
