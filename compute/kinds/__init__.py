"""The registry of job kinds. Adding a kind is its own module plus one ``register`` line below."""

from __future__ import annotations

from compute.kinds.base import JobKind
from compute.kinds.dp_query import DpQuery
from compute.kinds.he_query import HeQuery
from compute.kinds.pate import Pate
from compute.kinds.train import Train
from compute.models import Job
from config.exceptions import ValidationFailed

_KINDS: dict[tuple[str, str], JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Make ``kind`` available to jobs on datasets of its mode under its name."""
    key = (kind.mode, kind.name)
    if key in _KINDS:
        raise ValueError(f"job kind {kind.name!r} on {kind.mode} datasets is registered twice")
    _KINDS[key] = kind
    return kind


register(DpQuery())
register(HeQuery())
register(Train())
register(Pate())


def kind_for(*, mode: str, name: str) -> JobKind:
    """The kind a buyer asks for by ``name`` on a dataset of ``mode``; a 400 naming ``kind`` otherwise."""
    kind = _KINDS.get((mode, name))
    if kind is None:
        names = sorted(n for m, n in _KINDS if m == mode)
        choices = " or ".join(repr(n) for n in names)
        raise ValidationFailed(
            f"kind: only {choices} jobs run on {mode.upper()} datasets.",
            fields={"kind": [f"Must be {choices}."]},
        )
    return kind


def kind_of(job: Job) -> JobKind:
    """The kind of a stored job (select_related its dataset to save a query)."""
    return _KINDS[(job.dataset.mode, job.kind)]


def all_kinds() -> list[JobKind]:
    return list(_KINDS.values())
