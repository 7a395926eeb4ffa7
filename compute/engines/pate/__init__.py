"""PATE: labels for a buyer's unlabelled points from several owners' private data (pure engine, no Django).

Papernot, Abadi, Erlingsson, Goodfellow and Talwar, "Semi-supervised Knowledge Transfer for Deep Learning
from Private Training Data" (ICLR 2017), and Papernot, Song, Mironov, Raghunathan, Talwar and Erlingsson,
"Scalable Private Learning with PATE" (ICLR 2018). The members' rows are split into disjoint teachers
(:mod:`.teachers`), each a plain scikit-learn model: the privacy comes from the noisy aggregation of their
votes by Confident-GNMax (:mod:`.aggregate`, exact discrete Gaussians), not from the teachers.

The interface the marketplace calls:

* :func:`parse_spec` checks and completes a request (:mod:`.spec`); :func:`reserved_rho` is its
  data-independent zCDP cost, reserved before any vote is counted, and ``PateResult.rho`` what is
  committed (the proof of both: :mod:`.spec`'s docstring).
* :func:`allocate` / :func:`partition` spread the teachers over the members.
* :func:`run` trains the teachers, counts the votes and answers the queries; :func:`student` trains an
  optional student on the answered labels (post-processing).

Released: the labels (None where not answered), the counts asked and answered and the costs. The votes
are never returned, stored or logged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import make_rng
from compute.engines.pate import aggregate, teachers
from compute.engines.pate.spec import (
    DEFAULT_DELTA,
    TEACHER_MODELS,
    PateSpec,
    gnmax_rho,
    parse_spec,
    reserved_epsilon,
    reserved_rho,
    threshold_rho,
    used_rho,
)
from compute.engines.pate.student import student
from compute.engines.pate.teachers import allocate, partition

__all__ = [
    "DEFAULT_DELTA",
    "TEACHER_MODELS",
    "PateResult",
    "PateSpec",
    "QueryError",
    "allocate",
    "gnmax_rho",
    "parse_spec",
    "partition",
    "reserved_epsilon",
    "reserved_rho",
    "run",
    "student",
    "threshold_rho",
    "used_rho",
]


@dataclass(frozen=True)
class PateResult:
    """What a PATE run releases (and the costs the ledger commits). No vote is kept here.

    ``rho``: the data-independent zCDP cost actually used, ``asked * rho1 + answered * rho2`` (at most
    :func:`reserved_rho`). ``epsilon_data_dependent``: the 2018 paper's data-dependent bound at ``delta``
    (unsanitised: it is itself a function of the votes, see :mod:`.rdp`), None when not analysed.
    ``rdp_data_dependent``: that bound's (order, RDP) curve; it is not a zCDP rho, so
    ``rho_data_dependent`` stays None (kept in the interface for the ledger's sake)."""

    labels: list[Any]
    answered: int
    asked: int
    rho: float
    rho_data_dependent: float | None = None
    epsilon_data_dependent: float | None = None
    delta: float | None = None
    rdp_data_dependent: tuple[tuple[float, float], ...] = field(default=())

    @property
    def answered_mask(self) -> list[bool]:
        return [label is not None for label in self.labels]


def _check(members: Sequence[tuple[np.ndarray, np.ndarray]], unlabelled: np.ndarray, classes: Sequence[Any]) -> int:
    if not members:
        raise QueryError("members", "An ensemble needs at least one member dataset.")
    if len(classes) < 2 or len(set(map(repr, classes))) != len(classes):
        raise QueryError("classes", "Give at least two distinct declared classes.")
    x = np.asarray(unlabelled)
    if x.ndim != 2 or len(x) == 0:
        raise QueryError("file", "The unlabelled table must be a non-empty matrix of encoded features.")
    for k, (mx, my) in enumerate(members):
        mx = np.asarray(mx)
        if mx.ndim != 2 or mx.shape[1] != x.shape[1] or len(mx) != len(my):
            raise QueryError(f"members.{k}", "Its encoded features do not match the unlabelled table's.")
    return int(x.shape[1])


def run(
    members: Sequence[tuple[np.ndarray, np.ndarray]],
    unlabelled: np.ndarray,
    classes: Sequence[Any],
    spec: PateSpec,
    rng: random.Random | int | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    sizes: Sequence[int] | None = None,
    delta: float | None = None,
) -> PateResult:
    """Label ``unlabelled`` (encoded features, one row per point) by the members' teachers.

    The first ``spec.max_queries`` rows are asked, in order; the others get None. ``rng``: the noise's
    source (the OS CSPRNG by default; a seed or a ``random.Random`` in tests). ``progress(done, total)``
    is called as teachers are trained and queries answered (``total`` = teachers + queries). ``sizes``:
    the members' public row counts for the allocation (:mod:`.teachers`). ``delta``: when given, the
    data-dependent analysis is run on the votes (:mod:`.rdp`) and its epsilon at delta reported."""
    _check(members, unlabelled, classes)
    noise = make_rng(rng)
    x = np.asarray(unlabelled, dtype=float)
    asked = min(spec.max_queries, len(x))
    parts = partition(members, spec.teachers, spec.seed, sizes)
    steps = spec.teachers + asked

    def train_step(done: int, _total: int) -> None:
        if progress is not None:
            progress(done, steps)

    def query_step(done: int, _total: int) -> None:
        if progress is not None:
            progress(spec.teachers + done, steps)

    counts = teachers.votes(members, x[:asked], classes, parts, spec.teacher_model, spec.seed, train_step)
    answers = aggregate.confident_gnmax(counts, spec.threshold, spec.sigma1, spec.sigma2, noise, query_step)
    labels: list[Any] = [classes[a] if a is not None else None for a in answers]
    labels += [None] * (len(x) - asked)
    answered = sum(a is not None for a in answers)
    extra: dict[str, Any] = {}
    del counts  # the votes go no further
    return PateResult(labels, answered, asked, used_rho(spec, asked, answered), **extra)
