"""A PATE job's parameters, their defaults and checks, and the data-independent cost reserved for them.

Confident-GNMax (Papernot, Song, Mironov, Raghunathan, Talwar and Erlingsson, "Scalable Private Learning
with PATE", ICLR 2018, Algorithm 1) asks each unlabelled point of the buyer in turn: the T teachers' votes
form a histogram ``n`` over the m declared classes; the point is answered only when the noisy top count
``max(n) + N_Z(0, sigma1**2)`` reaches the threshold T_c, and then with ``argmax(n + N_Z(0, sigma2**2 I))``.

Why the data-independent cost below holds (what :func:`reserved_rho` reserves).

* Neighbours. A row of a member dataset sits in exactly one teacher (:func:`..teachers.partition`), so
  adding, removing or changing one owner's row changes at most one teacher's model, hence at most that
  teacher's one vote on each query, whatever the teacher model is (the teachers need no privacy of their
  own: they are never released). Every teacher keeps at least one row (:func:`..teachers.partition`
  refuses an empty one), so on one query the histogram moves from ``n`` to ``n - e_a + e_b`` at worst
  (the teacher voted a, now votes b): two coordinates move by 1 each, the total stays T.
* Threshold step. ``max(n)`` moves by at most 1 (a max of coordinates that each move by at most 1): it is
  a sensitivity-1 integer, and the discrete Gaussian with variance sigma1**2 on it is
  ``rho1 = 1 / (2 sigma1**2)``-zCDP (Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
  Privacy", NeurIPS 2020, Theorem 4). The paper's Proposition 8 with its sqrt(2) factor for the
  threshold (its code: ``rdp_data_independent_gaussian(2**.5 * sigma1)``) is the same ``lambda / (2
  sigma1**2)``.
* GNMax step. The histogram ``n`` is an integer vector whose L2 sensitivity is sqrt(2) (one coordinate
  -1, another +1); independent discrete Gaussians of variance sigma2**2 on every coordinate are
  ``rho2 = 2 / (2 sigma2**2) = 1 / sigma2**2``-zCDP (the same theorem, multivariate: the Renyi divergences
  of independent coordinates add up), and the argmax is post-processing. This is the paper's
  Proposition 8, ``(lambda, lambda / sigma**2)``-RDP, i.e. zCDP with that rho.
* Composition. Each query's two steps are run on the answers so far (adaptively); zCDP composes
  adaptively by adding rhos (Bun and Steinke, "Concentrated Differential Privacy", TCC 2016, Lemma 2.3).
  So ``max_queries`` queries cost at most ``max_queries * (rho1 + rho2)``: the reservation, a bound that
  holds whatever is answered, fixed before any vote is counted.
* What is committed. A query that is not answered runs no GNMax step: the choice to run it is made on the
  threshold step's own output, so the GNMax step's cost (``rho2`` or 0) is chosen from what has already
  been released. The ledger is a privacy *filter* on each dataset's cap: charging each step its cost
  chosen from past outputs, and never letting the sum pass the cap on any path (the job reserved the worst
  case before running), keeps the whole sequence of releases within the cap (Feldman and Zrnic,
  "Individual Privacy Accounting via a Renyi Filter", NeurIPS 2021, Theorem 3.1, order by order, hence
  for zCDP). So ``asked * rho1 + answered * rho2`` is what the dataset's budget is charged and the
  difference is refunded. Read alone, a single job's own worst-case guarantee is the reservation (the
  realised number is an "ex post" cost whose value depends on the outcome, as in the paper's analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from compute.engines import accounting

TEACHER_MODELS = ("logistic_regression", "random_forest")
FIELDS = frozenset({"teachers", "threshold", "sigma1", "sigma2", "max_queries", "teacher_model", "epsilon", "seed"})
# The defaults: the paper's UCI Adult setting (Table 2 uses 250 to 300 teachers, T_c 200 with 250..300).
DEFAULT_TEACHERS = 250
DEFAULT_THRESHOLD_SHARE = 0.8  # T_c = 200 of 250 teachers; scaled with the number of teachers
DEFAULT_SIGMA1 = 150.0
DEFAULT_SIGMA2 = 40.0
DEFAULT_MAX_QUERIES = 1000
DEFAULT_DELTA = 1e-5
MAX_TEACHERS = 2000
MAX_QUERIES = 100_000
# Below 1 the integer noise is too coarse for the data-dependent analysis (rdp.py); the data-independent
# bound would still hold.
MIN_SIGMA = 1.0
MAX_SIGMA = 1e6
_SEEDS = 2**32 - 1


@dataclass(frozen=True)
class PateSpec:
    """A checked PATE request. ``seed`` (public) fixes the partition and the teachers' training."""

    teachers: int
    threshold: float
    sigma1: float
    sigma2: float
    max_queries: int
    teacher_model: str
    epsilon: float | None
    seed: int = 0

    def canonical(self) -> dict[str, Any]:
        """The request as stored on the job; :func:`parse_spec` reads it back unchanged (the sigmas and
        max_queries already fitted to the epsilon, which is kept for the record)."""
        return {
            "teachers": self.teachers,
            "threshold": self.threshold,
            "sigma1": self.sigma1,
            "sigma2": self.sigma2,
            "max_queries": self.max_queries,
            "teacher_model": self.teacher_model,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }


def threshold_rho(sigma1: float) -> float:
    """rho1 = 1 / (2 sigma1**2): the threshold step of one asked query (sensitivity 1)."""
    return 1.0 / (2.0 * sigma1 * sigma1)


def gnmax_rho(sigma2: float) -> float:
    """rho2 = 1 / sigma2**2: the GNMax step of one answered query (L2 sensitivity sqrt(2))."""
    return 1.0 / (sigma2 * sigma2)


def used_rho(spec: PateSpec, asked: int, answered: int) -> float:
    """What ``asked`` queries of which ``answered`` were answered cost: asked rho1 + answered rho2."""
    return asked * threshold_rho(spec.sigma1) + answered * gnmax_rho(spec.sigma2)


def reserved_rho(spec: PateSpec) -> float:
    """The data-independent zCDP cost of asking ``max_queries`` queries, as if every one were answered:
    ``max_queries * (1 / (2 sigma1**2) + 1 / sigma2**2)``. Why it holds: this module's docstring."""
    return used_rho(spec, spec.max_queries, spec.max_queries)


def reserved_epsilon(spec: PateSpec, delta: float) -> float:
    """The reservation as an epsilon at ``delta`` (dp-accounting's conversion of zCDP)."""
    return accounting.zcdp_epsilon(reserved_rho(spec), delta)


# -- checks ----------------------------------------------------------------------------------------


def _number(raw: dict, name: str, default: float | None, low: float, high: float, *, whole: bool = False) -> Any:
    value = raw.get(name)
    where = f"spec.{name}"
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QueryError(where, "Must be a finite number.")
    if whole and value != int(value):
        raise QueryError(where, "Must be a whole number.")
    if value < low or value > high:
        raise QueryError(where, f"Must be between {low:g} and {high:g}.")
    return int(value) if whole else float(value)


def _positive(raw: dict, name: str) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise QueryError(f"spec.{name}", "Must be a finite number greater than 0.")
    return float(value)


def parse_spec(raw: dict | None, n_unlabelled: int, *, delta: float = DEFAULT_DELTA) -> PateSpec:
    """Check a ``spec`` body and fill its defaults; a QueryError naming the field (``spec.teachers``, ...).

    Defaults: 250 teachers, the threshold 0.8 of the teachers (200 of 250), sigma1 150, sigma2 40, every
    unlabelled row asked up to 1,000, logistic-regression teachers, seed 0.

    ``epsilon`` (with the dataset's ``delta``, the smallest of the members'): the job is fitted so that its
    reservation, the data-independent bound, is at most epsilon at delta (dp-accounting's zCDP
    conversion, :func:`compute.engines.accounting.rho_cap`). When the body gives both sigmas, they are kept
    and ``max_queries`` is lowered to the most queries that fit (a 400 on ``spec.epsilon`` when not even one
    fits, or on ``spec.max_queries`` if it was given and cannot be kept); otherwise both sigmas (the given
    one, or the defaults) are multiplied by one common factor so that ``max_queries`` queries fit exactly.
    The threshold is kept either way.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise QueryError("spec", "Must be an object.")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise QueryError(f"spec.{unknown[0]}", f"Unknown field; a PATE spec takes {', '.join(sorted(FIELDS))}.")
    if isinstance(n_unlabelled, bool) or not isinstance(n_unlabelled, int) or n_unlabelled < 1:
        raise QueryError("file", "The unlabelled table has no rows.")
    teachers = _number(raw, "teachers", DEFAULT_TEACHERS, 1, MAX_TEACHERS, whole=True)
    threshold = _number(raw, "threshold", DEFAULT_THRESHOLD_SHARE * teachers, 0, teachers)
    sigma1 = _number(raw, "sigma1", None, MIN_SIGMA, MAX_SIGMA)
    sigma2 = _number(raw, "sigma2", None, MIN_SIGMA, MAX_SIGMA)
    queries = _number(raw, "max_queries", None, 1, min(n_unlabelled, MAX_QUERIES), whole=True)
    model = raw.get("teacher_model", TEACHER_MODELS[0])
    if model not in TEACHER_MODELS:
        raise QueryError("spec.teacher_model", f"Must be one of: {', '.join(TEACHER_MODELS)}.")
    seed = _number(raw, "seed", 0, 0, _SEEDS, whole=True)
    epsilon = _positive(raw, "epsilon")
    spec = PateSpec(
        teachers=teachers,
        threshold=threshold,
        sigma1=DEFAULT_SIGMA1 if sigma1 is None else sigma1,
        sigma2=DEFAULT_SIGMA2 if sigma2 is None else sigma2,
        max_queries=min(n_unlabelled, DEFAULT_MAX_QUERIES, MAX_QUERIES) if queries is None else queries,
        teacher_model=model,
        epsilon=epsilon,
        seed=seed,
    )
    if epsilon is None:
        return spec
    if not (math.isfinite(delta) and 0.0 < delta < 1.0):
        raise QueryError("spec.epsilon", "A target epsilon needs the datasets' delta > 0 (zCDP's conversion).")
    return _fit(spec, epsilon, delta, sigmas_given=sigma1 is not None and sigma2 is not None, queries_given=queries)


def _fit(spec: PateSpec, epsilon: float, delta: float, *, sigmas_given: bool, queries_given: int | None) -> PateSpec:
    cap = accounting.rho_cap(epsilon, delta)
    per_query = threshold_rho(spec.sigma1) + gnmax_rho(spec.sigma2)
    if sigmas_given:
        most = math.floor(cap / per_query)
        while most > 0 and most * per_query > cap:  # the float division's rounding, never up
            most -= 1
        if most < 1:
            raise QueryError("spec.epsilon", f"Not one query fits epsilon {epsilon:g} at these sigmas; raise them.")
        if queries_given is not None and queries_given > most:
            raise QueryError(
                "spec.max_queries",
                f"At most {most} queries fit epsilon {epsilon:g} at sigma1 {spec.sigma1:g} and sigma2 {spec.sigma2:g}.",
            )
        fitted = _replace(spec, max_queries=min(spec.max_queries, most))
    else:
        # rho scales as 1 / factor**2; the tiny margin keeps the rounded sigmas on the safe side.
        factor = math.sqrt(spec.max_queries * per_query / cap) * (1.0 + 1e-9)
        # A large epsilon would ask for sigmas below MIN_SIGMA: more noise than needed is always safe.
        fitted = _replace(
            spec, sigma1=max(spec.sigma1 * factor, MIN_SIGMA), sigma2=max(spec.sigma2 * factor, MIN_SIGMA)
        )
        if not (fitted.sigma1 <= MAX_SIGMA and fitted.sigma2 <= MAX_SIGMA):
            raise QueryError("spec.epsilon", f"Epsilon {epsilon:g} is too small for {spec.max_queries} queries.")
    assert reserved_rho(fitted) <= cap
    return fitted


def _replace(spec: PateSpec, **changes: Any) -> PateSpec:
    return PateSpec(**{**spec.canonical(), **changes})
