"""How a query over an encrypted bundle is computed and noised: one planner for server and key holder.

:func:`plan` turns a query, the bundle's manifest and the job's epsilon into

* the encrypted **aggregates** the server's workers compute: slot-wise sums over the chunks of
  products of one to three columns, or of a column times the buyer's public weights; the key holder
  decrypts each and adds its first ``min(rows, slots)`` slots;
* the noisy **components** the key holder releases: ``offset + sum(coef * aggregate)`` rounded to
  its grid and noised (:mod:`cloakroom_client.protocol.noise`), with sensitivities computed here
  from the declared bounds, the filter and the weights.

The server plans every job with this function; the owner's key agent and the escrow worker plan it
again from the job's query and epsilon and their own copy of the manifest
(:func:`verify_key_plan`), and release only a plan identical to their own. So the two sides cannot
drift, and a server that lowers a sensitivity, a scale or a length, adds a component or asks for
more epsilon than the job paid for is refused before anything is decrypted.

Neighbouring relation (HE mode): one row **replaced in place**. Rows are positional in the
ciphertexts, and a dot product's weights are indexed by row position, so removing a row would move
every later row under another weight; replacing one keeps every other row where it was. A sum over
rows of a per-row term whose declared range is ``[lo, hi]`` then changes by at most ``hi - lo``:

* sum of a column in [lower, upper]: ``upper - lower`` (with a filter: ``max(upper, 0) - min(lower, 0)``);
* dot product with weights ``|w| <= W``: ``W * (upper - lower)``;
* one count (an indicator or boolean column, filtered or not): 1; the counts of all the categories
  of a column together: 2 in L1 (the row leaves one category and joins another), one epsilon for all;
* mean and variance: a noisy count (sensitivity 1; an unfiltered count does not change under this
  relation but is noised all the same so that the row count is not published), a noisy centred sum
  ``sum(x - mid)`` (``upper - lower``) and a noisy centred sum of squares (``radius**2``);
* regression statistics: each sum of a product by the range of that product.

Pure Python and numpy: no Django, no TenSEAL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism, mechanism

AGGREGATES = ("count", "sum", "mean", "variance", "dot", "regression")
MAX_REGRESSION_COLUMNS = 10
NEIGHBOURING = "replace one row in place"
# Limits the planner applies when the caller sets none (the key holder: it plans what the server
# accepted, so only the noise matters there, not the request size).
UNLIMITED_WEIGHTS = 10**9


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


def product_range(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The range of a product of factors each within its ``(lo, hi)`` (interval arithmetic)."""
    lo, hi = 1.0, 1.0
    for a, b in ranges:
        corners = (lo * a, lo * b, hi * a, hi * b)
        lo, hi = min(corners), max(corners)
    return lo, hi


@dataclass(frozen=True)
class Aggregate:
    """An encrypted aggregate: the sum over all rows of the product of ``factors`` (times weights)."""

    name: str
    factors: tuple[str, ...]
    weighted: bool = False
    # The range of one row's term: the product of the factors' declared bounds (times the weights).
    term_range: tuple[float, float] = (0.0, 0.0)

    def spec(self) -> tuple[str, tuple[str, ...], bool]:
        return (self.name, self.factors, self.weighted)


@dataclass(frozen=True)
class Component:
    """A value the key holder releases on its grid: ``offset + sum(coef * aggregate)`` plus noise.

    Components with the same ``budget`` name are one vector measurement (the counts of a column's
    categories): their noise is calibrated to the vector's joint sensitivity, and they spend their
    epsilon once between them.
    """

    name: str
    label: str
    terms: tuple[tuple[str, float], ...]
    offset: float
    noise: Mechanism
    budget: str

    def for_key_holder(self) -> dict[str, Any]:
        return key_component(self.name, self.terms, self.offset, self.budget, self.noise)


def key_component(
    name: str, terms: Sequence[tuple[str, float]], offset: float, budget: str, noise: Mechanism
) -> dict[str, Any]:
    """A component as the server sends it to the key holder (and the key holder compares it)."""
    return {"name": name, "terms": [[a, c] for a, c in terms], "offset": offset, "budget": budget, **noise.describe()}


@dataclass(frozen=True)
class Plan:
    query: dict[str, Any]  # canonical
    aggregate: str
    epsilon: float
    rows: int
    slots: int
    params: dict[str, Any]
    aggregates: tuple[Aggregate, ...]
    components: tuple[Component, ...]
    mechanism: str
    weights: np.ndarray | None = field(default=None, compare=False)
    weight_bound: float = 0.0
    # How the server reads the components back into an answer; set by the planner.
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max(len(a.factors) - 1 + int(a.weighted) for a in self.aggregates) if self.aggregates else 0

    @property
    def length(self) -> int:
        """The slots of each aggregate the key holder adds: the rows of one chunk."""
        return min(self.rows, self.slots)

    def epsilon_spent(self) -> float:
        """The components' epsilons composed (basic composition; one per budget group)."""
        spent: dict[str, float] = {}
        for c in self.components:
            spent[c.budget] = max(spent.get(c.budget, 0.0), c.noise.epsilon)
        return math.fsum(spent.values())

    def aggregate_range(self, aggregate: Aggregate) -> tuple[float, float]:
        """Where an aggregate can lie: ``rows`` terms each in its declared range (padding adds zeros)."""
        lo, hi = aggregate.term_range
        return self.rows * min(lo, 0.0), self.rows * max(hi, 0.0)

    def value_range(self, component: Component) -> tuple[float, float]:
        """Where a component's un-noised value can lie, from the declared bounds alone."""
        ranges = {a.name: self.aggregate_range(a) for a in self.aggregates}
        lo = hi = component.offset
        for name, coef in component.terms:
            x, y = ranges[name]
            lo += min(coef * x, coef * y)
            hi += max(coef * x, coef * y)
        return lo, hi

    @staticmethod
    def aggregate_depth(aggregate: Aggregate) -> int:
        """The multiplications (and so the rescales) an honest server's ciphertext went through."""
        return len(aggregate.factors) - 1 + int(aggregate.weighted)

    def key_aggregates(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "length": self.length} for a in self.aggregates]

    def key_components(self) -> list[dict[str, Any]]:
        return [c.for_key_holder() for c in self.components]


# ---------------------------------------------------------------------------------------------
# Parsing


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


# ---------------------------------------------------------------------------------------------
# Planning


class _Builder:
    def __init__(self, rows: int, max_depth: int):
        self.rows, self.max_depth = rows, max_depth
        self.aggregates: list[Aggregate] = []
        self.factors: dict[str, tuple[HeColumn, ...]] = {}

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
        ranges = [(f.lower, f.upper) for f in factors]
        if weighted:
            ranges.append((-weight_bound, weight_bound))
        name = f"a{len(self.aggregates)}"
        self.aggregates.append(Aggregate(name, names, weighted, product_range(ranges)))
        self.factors[name] = factors
        return name


def plan(
    query: Any,
    manifest: Mapping[str, Any],
    epsilon: float,
    *,
    max_weights: int = UNLIMITED_WEIGHTS,
    max_weight: float = math.inf,
) -> Plan:
    """Check an HE query against the manifest's declared columns and plan it. Raises QueryError."""
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not (math.isfinite(epsilon) and epsilon > 0)
    ):
        raise QueryError("epsilon", "Must be a finite number greater than 0.")
    epsilon = float(epsilon)
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
    b = _Builder(rows, max_depth)
    flt = _filter(columns, query.get("filter"))
    canonical: dict[str, Any] = {"aggregate": agg}
    numeric = ("numeric", "boolean", "indicator")
    comps: list[Component] = []

    def comp(
        name: str, label: str, terms: list[tuple[str, float]], offset: float, noise: Mechanism, budget: str = ""
    ) -> None:
        comps.append(Component(name, label, tuple(terms), offset, noise, budget or name))

    def times_filter(*factors: HeColumn) -> tuple[HeColumn, ...]:
        return (*factors, flt) if flt is not None else factors

    def spread(*factors: HeColumn) -> float:
        """How far one replaced row moves the sum of this product (the filter included)."""
        lo, hi = product_range([(f.lower, f.upper) for f in times_filter(*factors)])
        return hi - lo

    def count_terms() -> tuple[list[tuple[str, float]], float]:
        """The (filtered) row count: the filter's sum, or the manifest's row count."""
        if flt is None:
            return [], float(rows)
        return [(b.aggregate(flt, field_name="query.filter"), 1.0)], 0.0

    layout: dict[str, Any]
    weights: np.ndarray | None = None
    w_bound = 0.0
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
        # A replaced row changes one count by 1, or moves from one category to another: the counts
        # of several categories together have L1 sensitivity 2 and share one epsilon.
        sensitivity = 1.0 if len(targets) == 1 else 2.0
        noise = mechanism(epsilon, 0.0, sensitivity, integer=True)
        groups = []
        for i, col in enumerate(targets):
            terms = [(b.aggregate(*times_filter(col), field_name="query.column"), 1.0)]
            comp(f"count{i}", f"count({col.name})", terms, 0.0, noise, "counts")
            key = {col.source: col.category} if col.kind == "indicator" else {col.name: True}
            groups.append((f"count{i}", key))
        layout = {"kind": "counts", "groups": groups, "main": "count0"}
        mechanism_label = f"two-sided geometric (key holder), sensitivity {sensitivity:g}"
    elif agg in ("sum", "mean", "variance"):
        col = _column(columns, query.get("column"), "query.column", kinds=numeric)
        canonical["column"] = col.name
        s = b.aggregate(*times_filter(col), field_name="query.column")
        if agg == "sum":
            comp("sum", f"sum({col.name})", [(s, 1.0)], 0.0, mechanism(epsilon, 0.0, spread(col)))
            layout = {"kind": "sum", "main": "sum"}
            mechanism_label = "discrete Laplace on a grid (key holder), sensitivity upper - lower"
        else:
            parts = 2 if agg == "mean" else 3
            e = epsilon / parts
            mid, radius = (col.lower + col.upper) / 2.0, (col.upper - col.lower) / 2.0
            cterms, coffset = count_terms()
            comp("count", "count", cterms, coffset, mechanism(e, 0.0, 1.0))
            # Centred sum: S - mid * count; a replaced row moves it by at most 2 * radius.
            comp(
                "sum",
                f"centred sum({col.name})",
                [(s, 1.0), *((a, -mid * c) for a, c in cterms)],
                -mid * coffset,
                mechanism(e, 0.0, 2.0 * radius),
            )
            if agg == "variance":
                ss = b.aggregate(*times_filter(col, col), field_name="query.column")
                # Centred sum of squares: SS - 2 mid S + mid^2 count; each term lies in [0, radius^2].
                comp(
                    "sumsq",
                    f"centred sum of squares({col.name})",
                    [(ss, 1.0), (s, -2.0 * mid), *((a, mid * mid * c) for a, c in cterms)],
                    mid * mid * coffset,
                    mechanism(e, 0.0, radius * radius),
                )
            layout = {"kind": agg, "lower": col.lower, "upper": col.upper, "main": "sum"}
            mechanism_label = (
                "discrete Laplace on a grid (key holder): noisy count and noisy centred sum, epsilon split 1/2 + 1/2"
                if agg == "mean"
                else "discrete Laplace on a grid (key holder): noisy count, centred sum and centred sum of squares, "
                "epsilon split in thirds"
            )
    elif agg == "dot":
        col = _column(columns, query.get("column"), "query.column", kinds=numeric)
        if "weights" not in query:
            raise QueryError("query.weights", "A dot product needs the weights, one per row.")
        weights, canonical_weights, w_bound = _weights(query["weights"], rows, max_weights, max_weight)
        canonical.update(column=col.name, weights=canonical_weights)
        a = b.aggregate(col, weight_bound=w_bound, field_name="query.weights")
        # A row replaced in place moves the dot product by at most its weight times the column's range.
        sensitivity = w_bound * (col.upper - col.lower)
        comp("dot", f"dot({col.name}, weights)", [(a, 1.0)], 0.0, mechanism(epsilon, 0.0, sensitivity))
        layout = {"kind": "sum", "main": "dot"}
        mechanism_label = "discrete Laplace on a grid (key holder), sensitivity max|weight| x (upper - lower)"
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
            agg_name = b.aggregate(*times_filter(x), field_name="query.columns")
            stats.append((f"sum({x.name})", [(agg_name, 1.0)], 0.0, spread(x)))
            xtx[(0, i)] = f"sum({x.name})"
        for i, x in enumerate(xs, start=1):
            for j in range(i, len(xs) + 1):
                z = xs[j - 1]
                label = f"sum({x.name}*{z.name})"
                pair = sorted((x, z), key=lambda c: c.index)
                a = b.aggregate(*times_filter(*pair), field_name="query.columns")
                stats.append((label, [(a, 1.0)], 0.0, spread(*pair)))
                xtx[(i, j)] = label
        xty = [f"sum({y.name})"]
        stats.append((xty[0], [(b.aggregate(*times_filter(y), field_name="query.target"), 1.0)], 0.0, spread(y)))
        for x in xs:
            label = f"sum({x.name}*{y.name})"
            pair = sorted((x, y), key=lambda c: c.index)
            a = b.aggregate(*times_filter(*pair), field_name="query.target")
            stats.append((label, [(a, 1.0)], 0.0, spread(*pair)))
            xty.append(label)
        # Epsilon split evenly: each statistic gets its own noise from its own sensitivity, so the
        # count is not drowned by the noise the products need.
        share = epsilon / len(stats)
        names: dict[str, str] = {}
        for k, (label, terms, offset, sensitivity) in enumerate(stats):
            names[label] = f"s{k}"
            comp(f"s{k}", label, terms, offset, mechanism(share, 0.0, sensitivity))
        layout = {
            "kind": "regression",
            "main": "s0",
            "columns": [x.name for x in xs],
            "target": y.name,
            "xtx": {key: names[label] for key, label in xtx.items()},
            "xty": [names[label] for label in xty],
        }
        mechanism_label = (
            f"discrete Laplace on a grid (key holder) on each of the {len(stats)} statistics, epsilon split evenly"
        )
    if flt is not None:
        canonical["filter"] = {"column": flt.name}
    return Plan(
        query=canonical,
        aggregate=agg,
        epsilon=epsilon,
        rows=rows,
        slots=int(manifest["slots"]),
        params=params,
        aggregates=tuple(b.aggregates),
        components=tuple(comps),
        mechanism=mechanism_label,
        weights=weights,
        weight_bound=w_bound,
        layout=layout,
    )


# ---------------------------------------------------------------------------------------------
# The key holder's check


# The fields of a component the key holder compares with its own plan, and of an aggregate.
COMPONENT_FIELDS = ("name", "terms", "offset", "budget", "mechanism", "epsilon", "delta", "sensitivity")
COMPONENT_FIELDS += ("granularity", "steps", "scale")
AGGREGATE_FIELDS = ("name", "length")


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON values, numbers compared as floats (a JSON round trip keeps a float exact)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def verify_key_plan(served: Mapping[str, Any], manifest: Mapping[str, Any], *, epsilon_paid: float) -> Plan:
    """The key holder's own plan of a served job, or a QueryError naming the first difference.

    ``served`` is what the server sent (its ``query``, ``aggregates`` and ``components``);
    ``manifest`` is the key holder's own copy of the bundle's manifest; ``epsilon_paid`` is the
    job's epsilon as the key holder reads it. The plan is rebuilt from the query alone, and every
    aggregate (name, length) and component (terms, offset, mechanism, epsilon, sensitivity,
    granularity, steps, scale) must be identical to the key holder's own; the components' epsilons
    must compose to at most the job's.
    """
    own = plan(served.get("query"), manifest, epsilon_paid)
    spent = own.epsilon_spent()
    if spent > epsilon_paid * (1.0 + 1e-12):
        raise QueryError("components", f"the components spend epsilon {spent:g}, more than the job's {epsilon_paid:g}")
    for key, mine, theirs in (
        ("aggregates", own.key_aggregates(), served.get("aggregates")),
        ("components", own.key_components(), served.get("components")),
    ):
        if not isinstance(theirs, list) or len(theirs) != len(mine):
            count = len(theirs) if isinstance(theirs, list) else "no list of"
            raise QueryError(key, f"the server sent {count} {key}; this job has {len(mine)}")
        fields = AGGREGATE_FIELDS if key == "aggregates" else COMPONENT_FIELDS
        for i, (m, t) in enumerate(zip(mine, theirs)):
            if not isinstance(t, Mapping):
                raise QueryError(f"{key}.{i}", "is not an object")
            for name in fields:
                if not _same(m.get(name), t.get(name)):
                    raise QueryError(
                        f"{key}.{m['name']}.{name}",
                        f"the server says {t.get(name)!r}, the key holder's own plan says {m.get(name)!r}",
                    )
    return own
