"""HE jobs: what a buyer's query over an encrypted dataset computes, how it is noised, how it reads.

Pure functions (no Django, no TenSEAL). :func:`plan` turns a query and the bundle's manifest into

* the encrypted **aggregates** the workers compute: slot-wise sums over the chunks of products of
  one to three columns, or of a column times the buyer's public weights (see
  :func:`compute.engines.he.aggregate_part`); the key holder decrypts each and adds its slots;
* the noisy **components** the key holder releases: an affine combination of decrypted aggregates
  (``offset + sum(coef * aggregate)``) plus Laplace or two-sided geometric noise whose scale is set
  here from the declared bounds, the weights and the epsilon;
* :meth:`Plan.finish`, which turns the noisy components into the buyer's answer (post-processing
  only) with a 95% interval widened by the CKKS error bound.

Privacy (DESIGN.md section 7): neighbouring datasets differ by one row added or removed; values are
clipped to their declared bounds by the encoder; sum: sensitivity max(|lower|, |upper|); count: 1;
a weighted sum: max|w| times that; mean and variance come from a noisy count and noisy centred sums,
epsilon split as in the DP engine. Regression statistics (X^T X and X^T y with an intercept) split
epsilon evenly, each with Laplace noise from its own sensitivity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compute.engines import dp
from compute.engines.dp import QueryError
from compute.engines.he import ckks_error_bound

AGGREGATES = ("count", "sum", "mean", "variance", "dot", "regression")
MAX_REGRESSION_COLUMNS = 10


@dataclass(frozen=True)
class HeColumn:
    name: str
    kind: str  # numeric | indicator | boolean
    lower: float
    upper: float
    source: str
    category: str | None
    index: int  # position in the manifest, which names the ciphertext files

    @property
    def bound(self) -> float:
        return max(abs(self.lower), abs(self.upper))


def manifest_columns(manifest: Mapping[str, Any]) -> dict[str, HeColumn]:
    return {
        c["name"]: HeColumn(
            c["name"], c["kind"], float(c["lower"]), float(c["upper"]), c["source"], c.get("category"), i
        )
        for i, c in enumerate(manifest["columns"])
    }


@dataclass(frozen=True)
class Aggregate:
    """An encrypted aggregate: the sum over all rows of the product of ``factors`` (times weights)."""

    name: str
    factors: tuple[str, ...]
    weighted: bool = False

    def spec(self) -> tuple[str, tuple[str, ...], bool]:
        return (self.name, self.factors, self.weighted)


@dataclass(frozen=True)
class Component:
    """A value the key holder releases with noise: ``offset + sum(coef * aggregate) + noise``."""

    name: str
    label: str
    terms: tuple[tuple[str, float], ...]
    offset: float
    noise: dp.Additive
    ckks_error: float  # bound on the CKKS error in the un-noised value

    @property
    def halfwidth(self) -> float:
        """The 95% half-width of this component: its noise's, widened by the CKKS error bound."""
        return self.noise.halfwidth() + self.ckks_error

    def for_key_holder(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "terms": [[a, c] for a, c in self.terms],
            "offset": self.offset,
            "mechanism": self.noise.kind,
            "epsilon": self.noise.epsilon,
            "sensitivity": self.noise.sensitivity,
            "scale": self.noise.scale,
        }


@dataclass(frozen=True)
class Plan:
    query: dict[str, Any]  # canonical
    aggregate: str
    epsilon: float
    rows: int
    params: dict[str, Any]
    aggregates: tuple[Aggregate, ...]
    components: tuple[Component, ...]
    mechanism: str
    weights: np.ndarray | None = field(default=None, compare=False)
    # How finish() reads the components; set by the planner.
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max(len(a.factors) - 1 + int(a.weighted) for a in self.aggregates) if self.aggregates else 0

    @property
    def main(self) -> Component:
        """The component whose noise scale is quoted for the whole answer."""
        name = self.layout.get("main", self.components[0].name)
        return next(c for c in self.components if c.name == name)

    @property
    def noise_scale(self) -> float:
        return self.main.noise.scale

    def _parts(self) -> _Parts:
        return _Parts({c.name: c.noise for c in self.components})

    def estimate_halfwidth(self, rows: float | None) -> float | None:
        """The answer's 95% half-width before it runs, or None where it depends on a row count not given.

        Sums, counts and regression statistics: the main component's noise plus the CKKS bound. Means and
        variances: the DP engine's bounds for ``rows`` rows (a worst case over the declared bounds).
        """
        kind = self.layout["kind"]
        if kind in ("sum", "counts", "regression"):
            return self.main.halfwidth
        if rows is None:
            return None
        radius = (self.layout["upper"] - self.layout["lower"]) / 2.0
        if kind == "mean":
            return dp.mean_halfwidth(self._parts(), float(rows), 0.0)
        return dp.variance_halfwidth(self._parts(), float(rows), radius)

    def key_plan(self) -> list[dict[str, Any]]:
        return [c.for_key_holder() for c in self.components]

    def ckks_summary(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.params["poly_modulus_degree"],
            "coeff_mod_bit_sizes": list(self.params["coeff_mod_bit_sizes"]),
            "global_scale_bits": self.params["global_scale_bits"],
            "multiplicative_depth": self.depth,
            "scale_corrected": True,
        }

    def check_values(self, values: Any) -> dict[str, float]:
        """The key holder's noisy values, checked: exactly the components, finite numbers."""
        if not isinstance(values, dict):
            raise QueryError("values", "Must be an object mapping each component's name to its noisy value.")
        names = [c.name for c in self.components]
        for key in values:
            if key not in names:
                raise QueryError(f"values.{key}", f"Not a component of this job; expected {', '.join(names)}.")
        out: dict[str, float] = {}
        for comp in self.components:
            value = values.get(comp.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise QueryError(f"values.{comp.name}", "Must be a finite number.")
            if comp.noise.kind == "geometric" and float(value) != round(float(value)):
                raise QueryError(f"values.{comp.name}", "A geometric (count) component is a whole number.")
            out[comp.name] = float(value)
        return out

    def finish(self, noisy: Mapping[str, float]) -> dict[str, Any]:
        """The buyer's answer from the noisy components (post-processing; reads nothing else)."""
        kind = self.layout["kind"]
        comps = {c.name: c for c in self.components}
        groups: list[dict[str, Any]] = []
        note = "95% interval of the added noise, widened by the CKKS error bound"
        extra: dict[str, Any] = {}
        if kind == "counts":
            for name, key in self.layout["groups"]:
                value = max(0, int(round(noisy[name])))
                h = comps[name].halfwidth
                groups.append({"key": key, "value": value, "ci95": [max(0.0, value - h), value + h]})
        elif kind == "sum":
            value = noisy[self.main.name]
            h = self.main.halfwidth
            groups.append({"key": {}, "value": value, "ci95": [value - h, value + h]})
        elif kind in ("mean", "variance"):
            lower, upper = self.layout["lower"], self.layout["upper"]
            mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
            holder = self._parts()
            count = max(noisy["count"], 1.0)
            m = float(np.clip(noisy["sum"] / count, -radius, radius))
            ckks_sum = comps["sum"].ckks_error + abs(m) * comps["count"].ckks_error
            if kind == "mean":
                note = "approximate 95% interval from the noise scales and the noisy count, widened by the CKKS error"
                h = dp.mean_halfwidth(holder, count, m) + ckks_sum / count
                groups.append({"key": {}, "value": mid + m, "ci95": [max(lower, mid + m - h), min(upper, mid + m + h)]})
            else:
                note = "stated bound: each noisy part within its 98.3% interval, widened by the CKKS error"
                var = float(np.clip(noisy["sumsq"] / count - m * m, 0.0, radius**2))
                h = dp.variance_halfwidth(holder, count, radius)
                h += (comps["sumsq"].ckks_error + 2 * radius * ckks_sum) / count
                groups.append({"key": {}, "value": var, "ci95": [max(0.0, var - h), min(radius**2, var + h)]})
        elif kind == "regression":
            extra["regression"] = _regression(self.layout, noisy)
            for c in self.components:
                value = noisy[c.name]
                groups.append(
                    {"key": {"statistic": c.label}, "value": value, "ci95": [value - c.halfwidth, value + c.halfwidth]}
                )
            note = "each statistic: 95% interval of its own noise, widened by the CKKS error"
        else:  # pragma: no cover - the planner sets one of the kinds above
            raise ValueError(kind)
        return {
            "aggregate": self.aggregate,
            "groups": groups,
            "mechanism": self.mechanism,
            "noise_scale": self.noise_scale,
            "epsilon": self.epsilon,
            "delta": 0.0,
            "interval_note": note,
            "ckks": {**self.ckks_summary(), "error_bound": max(c.ckks_error for c in self.components)},
            **extra,
        }


@dataclass(frozen=True)
class _Parts:
    """What dp.mean_halfwidth / variance_halfwidth read from a DP plan: its noisy parts."""

    parts: dict[str, dp.Additive]


def _regression(layout: Mapping[str, Any], noisy: Mapping[str, float]) -> dict[str, Any]:
    """X^T X and X^T y (intercept first) from the noisy statistics, and least-squares coefficients
    when the noisy X^T X is well enough conditioned to invert (post-processing)."""
    names = ["intercept", *layout["columns"]]
    k = len(names)
    xtx = np.zeros((k, k))
    for (i, j), comp in layout["xtx"].items():
        xtx[i, j] = xtx[j, i] = noisy[comp]
    xty = np.array([noisy[comp] for comp in layout["xty"]])
    coefficients = None
    try:
        if np.linalg.cond(xtx) < 1e12:
            beta = np.linalg.solve(xtx, xty)
            coefficients = {n: float(b) for n, b in zip(names, beta)}
    except np.linalg.LinAlgError:
        coefficients = None
    return {
        "columns": names,
        "target": layout["target"],
        "xtx": xtx.tolist(),
        "xty": xty.tolist(),
        "coefficients": coefficients,
    }


# ---------------------------------------------------------------------------------------------
# Parsing and planning


def _column(columns: Mapping[str, HeColumn], name: Any, field_name: str, *, kinds: Sequence[str]) -> HeColumn:
    if not isinstance(name, str) or name not in columns:
        sources = sorted({c.source for c in columns.values() if c.kind == "indicator"})
        hint = f" (categorical columns are encoded as indicators such as {sources[0]}=...)" if sources else ""
        raise QueryError(field_name, f"Unknown column {name!r}{hint}.")
    column = columns[name]
    if column.kind not in kinds:
        raise QueryError(field_name, f"Column {name!r} is {column.kind}; this needs one of: {', '.join(kinds)}.")
    return column


def _filter(columns: Mapping[str, HeColumn], raw: Any) -> HeColumn | None:
    """A filter is an indicator or boolean column: {"column": "sex=F"} or {"column": "sex", "category": "F"}."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or "column" not in raw or set(raw) - {"column", "category"}:
        raise QueryError("query.filter", 'Must be {"column": "<indicator or boolean>"} or {"column", "category"}.')
    name = raw["column"]
    if "category" in raw:
        name = f"{raw['column']}={raw['category']}"
        if name not in columns:
            raise QueryError(
                "query.filter.category", f"{raw['category']!r} is not a declared category of {raw['column']!r}."
            )
    return _column(columns, name, "query.filter.column", kinds=("indicator", "boolean"))


def _weights(raw: Any, rows: int, max_weights: int, max_weight: float) -> tuple[np.ndarray, Any, float]:
    """Dense ``[w0, w1, ...]`` or sparse ``{"indexes": [...], "values": [...]}`` weights.

    Weights past the last row are ignored, so that a buyer of a dataset whose row count is private
    learns nothing about it from an error; the largest weight sent (returned last) sets the noise,
    so that the noise scale does not reveal it either.
    """
    if isinstance(raw, list):
        if not raw:
            raise QueryError("query.weights", "Must not be empty.")
        if len(raw) > max_weights:
            raise QueryError("query.weights", f"At most {max_weights} dense weights; send larger ones sparse.")
        if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in raw):
            raise QueryError("query.weights", "Every weight must be a number.")
        values = np.asarray(raw, dtype=float)
        indexes = None
        canonical: Any = [float(w) for w in raw]
    elif isinstance(raw, dict) and set(raw) == {"indexes", "values"}:
        idx, vals = raw["indexes"], raw["values"]
        if not isinstance(idx, list) or not isinstance(vals, list) or len(idx) != len(vals) or not idx:
            raise QueryError("query.weights", "indexes and values must be non-empty lists of the same length.")
        if len(idx) > max_weights:
            raise QueryError("query.weights", f"At most {max_weights} weights.")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in idx):
            raise QueryError("query.weights.indexes", "Must be whole numbers, 0 or more.")
        if len(set(idx)) != len(idx):
            raise QueryError("query.weights.indexes", "Must not repeat a row.")
        if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in vals):
            raise QueryError("query.weights.values", "Every weight must be a number.")
        order = sorted(range(len(idx)), key=idx.__getitem__)
        indexes = np.asarray([idx[k] for k in order], dtype=np.int64)
        values = np.asarray([vals[k] for k in order], dtype=float)
        canonical = {"indexes": indexes.tolist(), "values": [float(v) for v in values]}
    else:
        raise QueryError("query.weights", 'Must be a list of numbers or {"indexes": [...], "values": [...]}.')
    if not np.all(np.isfinite(values)):
        raise QueryError("query.weights", "Every weight must be finite.")
    if np.max(np.abs(values)) > max_weight:
        raise QueryError("query.weights", f"Every weight must lie in [-{max_weight:g}, {max_weight:g}].")
    if not np.any(values):
        raise QueryError("query.weights", "At least one weight must be non-zero.")
    dense = np.zeros(rows, dtype=float)
    if indexes is None:
        used = values[:rows]
        dense[: len(used)] = used
    else:
        keep = indexes < rows
        dense[indexes[keep]] = values[keep]
    return dense, canonical, float(np.max(np.abs(values)))


def _bound(
    factors: Sequence[HeColumn],
    rows: int,
    params: Mapping[str, Any],
    weight_bound: float = 0.0,
    field_name: str = "query",
) -> float:
    """The CKKS error bound of one aggregate, or a QueryError when its values could overflow."""
    common = dict(
        poly_modulus_degree=params["poly_modulus_degree"],
        global_scale_bits=params["global_scale_bits"],
        coeff_mod_bit_sizes=params["coeff_mod_bit_sizes"],
    )
    a = factors[0]
    try:
        if weight_bound:
            return ckks_error_bound("dot", rows, lower=a.lower, upper=a.upper, weight_bound=weight_bound, **common)
        if len(factors) == 1:
            return ckks_error_bound("sum", rows, lower=a.lower, upper=a.upper, **common)
        b = factors[1]
        if len(factors) == 2:
            if a.name == b.name:
                return ckks_error_bound("sum_of_squares", rows, lower=a.lower, upper=a.upper, **common)
            return ckks_error_bound(
                "products", rows, lower=a.lower, upper=a.upper, lower_b=b.lower, upper_b=b.upper, **common
            )
        c = factors[2]
        return ckks_error_bound(
            "triple_products",
            rows,
            lower=a.lower,
            upper=a.upper,
            lower_b=b.lower,
            upper_b=b.upper,
            lower_c=c.lower,
            upper_c=c.upper,
            **common,
        )
    except ValueError as exc:
        raise QueryError(field_name, f"{exc}.") from None


class _Builder:
    def __init__(self, columns: Mapping[str, HeColumn], rows: int, params: Mapping[str, Any], max_depth: int):
        self.columns, self.rows, self.params, self.max_depth = columns, rows, params, max_depth
        self.aggregates: list[Aggregate] = []
        self.bounds: dict[str, float] = {}

    def aggregate(self, *factors: HeColumn, weight_bound: float = 0.0, field_name: str = "query") -> str:
        names = tuple(f.name for f in factors)
        weighted = bool(weight_bound)
        for agg in self.aggregates:
            if agg.factors == names and agg.weighted == weighted:
                return agg.name
        depth = len(names) - 1 + int(weighted)
        if depth > self.max_depth:
            if self.max_depth == 0:
                raise QueryError(
                    field_name,
                    "This dataset was encrypted for sums only (job class 'sum'): products, squares, weights and "
                    "filters need the owner to encrypt it with job classes sum and product.",
                )
            raise QueryError(
                field_name, f"Needs {depth} multiplications; this dataset's parameters allow {self.max_depth}."
            )
        name = f"a{len(self.aggregates)}"
        self.aggregates.append(Aggregate(name, names, weighted))
        self.bounds[name] = _bound(factors, self.rows, self.params, weight_bound, field_name)
        return name

    def error(self, terms: Sequence[tuple[str, float]]) -> float:
        return sum(abs(c) * self.bounds[a] for a, c in terms)


def plan(
    query: Any,
    manifest: Mapping[str, Any],
    epsilon: float,
    *,
    max_weights: int = 250_000,
    max_weight: float = 1000.0,
) -> Plan:
    """Check an HE query against the manifest's declared columns and plan it. Raises QueryError."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise QueryError("epsilon", "Must be a finite number greater than 0.")
    if not isinstance(query, dict):
        raise QueryError("query", "Must be an object with an 'aggregate'.")
    agg = query.get("aggregate")
    if agg not in AGGREGATES:
        raise QueryError("query.aggregate", f"Must be one of: {', '.join(AGGREGATES)} (HE datasets).")
    allowed = {
        "count": {"column", "category", "filter"},
        "sum": {"column", "filter"},
        "mean": {"column", "filter"},
        "variance": {"column", "filter"},
        "dot": {"column", "weights"},
        "regression": {"columns", "target", "filter"},
    }[agg] | {"aggregate"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise QueryError(
            f"query.{unknown[0]}", f"Not a field of an HE {agg} query (fields: {', '.join(sorted(allowed))})."
        )

    columns = manifest_columns(manifest)
    rows = int(manifest["rows"])
    params = {k: manifest[k] for k in ("poly_modulus_degree", "coeff_mod_bit_sizes", "global_scale_bits", "slots")}
    max_depth = len(manifest["coeff_mod_bit_sizes"]) - 2 if "product" in manifest.get("job_classes", []) else 0
    b = _Builder(columns, rows, params, max_depth)
    flt = _filter(columns, query.get("filter"))
    canonical: dict[str, Any] = {"aggregate": agg}
    numeric = ("numeric", "boolean", "indicator")
    comps: list[Component] = []

    def comp(name: str, label: str, terms: list[tuple[str, float]], offset: float, noise: dp.Additive) -> None:
        comps.append(Component(name, label, tuple(terms), offset, noise, b.error(terms)))

    def times_filter(*factors: HeColumn) -> tuple[HeColumn, ...]:
        return (*factors, flt) if flt is not None else factors

    def count_terms() -> tuple[list[tuple[str, float]], float]:
        """The (filtered) row count: the filter's sum, or the manifest's row count."""
        if flt is None:
            return [], float(rows)
        return [(b.aggregate(flt, field_name="query.filter"), 1.0)], 0.0

    layout: dict[str, Any]
    weights: np.ndarray | None = None
    if agg == "count":
        raw = query.get("column")
        if raw in columns and "category" not in query:
            targets = [_column(columns, raw, "query.column", kinds=("indicator", "boolean"))]
            canonical["column"] = raw
        else:
            sources = {c.source for c in columns.values() if c.kind == "indicator"}
            if raw not in sources:
                _column(columns, raw, "query.column", kinds=("indicator", "boolean"))
            targets = [c for c in columns.values() if c.kind == "indicator" and c.source == raw]
            canonical["column"] = raw
            if "category" in query:
                name = f"{raw}={query['category']}"
                if name not in columns:
                    raise QueryError("query.category", f"{query['category']!r} is not a declared category of {raw!r}.")
                targets = [columns[name]]
                canonical["category"] = query["category"]
        # One row adds one to at most one category: the counts together have L1 sensitivity 1.
        noise = dp.additive(epsilon, 0.0, 1.0, integer=True)
        groups = []
        for i, col in enumerate(targets):
            terms = [(b.aggregate(*times_filter(col), field_name="query.column"), 1.0)]
            comp(f"count{i}", f"count({col.name})", terms, 0.0, noise)
            key = {col.source: col.category} if col.kind == "indicator" else {col.name: True}
            groups.append((f"count{i}", key))
        layout = {"kind": "counts", "groups": groups, "main": "count0"}
        mechanism = "two-sided geometric (key holder), sensitivity 1"
    elif agg in ("sum", "mean", "variance"):
        col = _column(columns, query.get("column"), "query.column", kinds=numeric)
        canonical["column"] = col.name
        s = b.aggregate(*times_filter(col), field_name="query.column")
        if agg == "sum":
            comp("sum", f"sum({col.name})", [(s, 1.0)], 0.0, dp.additive(epsilon, 0.0, col.bound))
            layout = {"kind": "sum", "main": "sum"}
            mechanism = "Laplace (key holder), sensitivity max(|lower|, |upper|)"
        else:
            parts = 2 if agg == "mean" else 3
            e = epsilon / parts
            mid, radius = (col.lower + col.upper) / 2.0, (col.upper - col.lower) / 2.0
            cterms, coffset = count_terms()
            comp("count", "count", cterms, coffset, dp.additive(e, 0.0, 1.0))
            # Centred sum: S - mid * count, sensitivity (upper - lower) / 2.
            comp(
                "sum",
                f"centred sum({col.name})",
                [(s, 1.0), *((a, -mid * c) for a, c in cterms)],
                -mid * coffset,
                dp.additive(e, 0.0, radius),
            )
            if agg == "variance":
                ss = b.aggregate(*times_filter(col, col), field_name="query.column")
                # Centred sum of squares: SS - 2 mid S + mid^2 count, sensitivity radius^2.
                comp(
                    "sumsq",
                    f"centred sum of squares({col.name})",
                    [(ss, 1.0), (s, -2.0 * mid), *((a, mid * mid * c) for a, c in cterms)],
                    mid * mid * coffset,
                    dp.additive(e, 0.0, radius * radius),
                )
            layout = {"kind": agg, "lower": col.lower, "upper": col.upper, "main": "sum"}
            mechanism = (
                "Laplace (key holder): noisy count and noisy centred sum, epsilon split 1/2 + 1/2"
                if agg == "mean"
                else "Laplace (key holder): noisy count, centred sum and centred sum of squares, epsilon split in thirds"
            )
    elif agg == "dot":
        col = _column(columns, query.get("column"), "query.column", kinds=numeric)
        if "weights" not in query:
            raise QueryError("query.weights", "A dot product needs the weights, one per row.")
        weights, canonical_weights, w_bound = _weights(query["weights"], rows, max_weights, max_weight)
        canonical.update(column=col.name, weights=canonical_weights)
        a = b.aggregate(col, weight_bound=w_bound, field_name="query.weights")
        # One row moves the dot product by at most its weight times its value.
        comp("dot", f"dot({col.name}, weights)", [(a, 1.0)], 0.0, dp.additive(epsilon, 0.0, w_bound * col.bound))
        layout = {"kind": "sum", "main": "dot"}
        mechanism = "Laplace (key holder), sensitivity max|weight| x max(|lower|, |upper|)"
    else:
        raw_cols = query.get("columns")
        if not isinstance(raw_cols, list) or not raw_cols:
            raise QueryError("query.columns", "Must be a non-empty list of column names.")
        if len(raw_cols) > MAX_REGRESSION_COLUMNS:
            raise QueryError("query.columns", f"At most {MAX_REGRESSION_COLUMNS} columns.")
        if len(set(map(str, raw_cols))) != len(raw_cols):
            raise QueryError("query.columns", "Must not repeat a column.")
        xs = [_column(columns, n, f"query.columns.{i}", kinds=numeric) for i, n in enumerate(raw_cols)]
        y = _column(columns, query.get("target"), "query.target", kinds=numeric)
        if y.name in raw_cols:
            raise QueryError("query.target", "The target must not also be one of the columns.")
        canonical.update(columns=[x.name for x in xs], target=y.name)
        stats: list[tuple[str, list[tuple[str, float]], float, float]] = []  # name, terms, offset, sensitivity
        xtx: dict[tuple[int, int], str] = {}
        cterms, coffset = count_terms()
        stats.append(("n", cterms, coffset, 1.0))
        xtx[(0, 0)] = "n"
        for i, x in enumerate(xs, start=1):
            stats.append(
                (f"sum({x.name})", [(b.aggregate(*times_filter(x), field_name="query.columns"), 1.0)], 0.0, x.bound)
            )
            xtx[(0, i)] = f"sum({x.name})"
        for i, x in enumerate(xs, start=1):
            for j in range(i, len(xs) + 1):
                z = xs[j - 1]
                label = f"sum({x.name}*{z.name})"
                a = b.aggregate(*times_filter(*sorted((x, z), key=lambda c: c.index)), field_name="query.columns")
                stats.append((label, [(a, 1.0)], 0.0, x.bound * z.bound))
                xtx[(i, j)] = label
        xty = [f"sum({y.name})"]
        stats.append((xty[0], [(b.aggregate(*times_filter(y), field_name="query.target"), 1.0)], 0.0, y.bound))
        for x in xs:
            label = f"sum({x.name}*{y.name})"
            a = b.aggregate(*times_filter(*sorted((x, y), key=lambda c: c.index)), field_name="query.target")
            stats.append((label, [(a, 1.0)], 0.0, x.bound * y.bound))
            xty.append(label)
        # Epsilon split evenly: each statistic gets its own Laplace scale from its own sensitivity, so
        # the count is not drowned by the noise the products need (one scale from the L1 sensitivity
        # of them all would give the count the noise of the largest product).
        share = epsilon / len(stats)
        names: dict[str, str] = {}
        for k, (label, terms, offset, sensitivity) in enumerate(stats):
            names[label] = f"s{k}"
            comp(f"s{k}", label, terms, offset, dp.additive(share, 0.0, sensitivity))
        layout = {
            "kind": "regression",
            "main": "s0",
            "columns": [x.name for x in xs],
            "target": y.name,
            "xtx": {key: names[label] for key, label in xtx.items()},
            "xty": [names[label] for label in xty],
        }
        mechanism = f"Laplace (key holder) on each of the {len(stats)} statistics, epsilon split evenly"
    if flt is not None:
        canonical["filter"] = {"column": flt.name}
    return Plan(
        query=canonical,
        aggregate=agg,
        epsilon=epsilon,
        rows=rows,
        params=params,
        aggregates=tuple(b.aggregates),
        components=tuple(comps),
        mechanism=mechanism,
        weights=weights,
        layout=layout,
    )
