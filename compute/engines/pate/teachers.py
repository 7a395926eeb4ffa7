"""The teachers: the members' rows split into disjoint parts, one plain scikit-learn model per part, and
their votes on the unlabelled points (never released: only the noisy aggregate of aggregate.py is).

Why the split keeps one row in one teacher, under the project's neighbours (one row added or removed):

* How many teachers a member gets (:func:`allocate`) is read from ``sizes``, its row count, which must be
  public (the owner's public row count, or a noisy count paid for): if a private count decided it, one
  row could move a member across a rounding boundary and re-deal all of its rows.
* Which of its member's teachers a row goes to is a keyed hash of the row itself (its encoded features and
  its label, BLAKE2b keyed with the public seed and the member's position), never its position in the
  table: adding or removing a row leaves every other row where it was, and changes exactly one teacher.
  Teachers of one member therefore differ in size by the hash's chance (a multinomial split), which is
  why each must expect MIN_ROWS_PER_TEACHER rows.
* A teacher left without rows (possible only by the hash's chance) abstains: it casts no vote. A row that
  makes it vote adds one count to one class, which moves the histogram less than the worst case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError

# Each teacher of a member must expect at least this many rows (its share of the member's public size).
MIN_ROWS_PER_TEACHER = 10
ABSTAIN = -1


def allocate(sizes: Sequence[int], teachers: int) -> list[int]:
    """Teachers per member in proportion to their public sizes (largest remainders, at least one each),
    or a QueryError when a member is too small for its share."""
    if not sizes:
        raise QueryError("members", "An ensemble needs at least one member dataset.")
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0 for n in sizes):
        raise QueryError("members", "Row counts must be whole numbers >= 0.")
    total = int(sum(sizes))
    if teachers < len(sizes):
        raise QueryError("spec.teachers", f"At least one teacher per member dataset: {len(sizes)} or more.")
    if total < teachers * MIN_ROWS_PER_TEACHER:
        raise QueryError(
            "spec.teachers",
            f"{total} rows give at most {total // MIN_ROWS_PER_TEACHER} teachers of {MIN_ROWS_PER_TEACHER}.",
        )
    shares = [teachers * n / total for n in sizes]
    out = [max(1, int(s)) for s in shares]
    order = sorted(range(len(sizes)), key=lambda k: (-(shares[k] - int(shares[k])), k))
    i = 0
    while sum(out) < teachers:
        out[order[i % len(order)]] += 1
        i += 1
    while sum(out) > teachers:  # the "at least one" pushed it over: take from the largest
        k = max(range(len(out)), key=lambda j: (out[j], -j))
        out[k] -= 1
    for k, (n, t) in enumerate(zip(sizes, out)):
        if n < t * MIN_ROWS_PER_TEACHER:
            raise QueryError(
                f"members.{k}",
                f"Member {k} has {n} rows: too few for its {t} teacher(s) of {MIN_ROWS_PER_TEACHER} rows each; "
                "ask for fewer teachers.",
            )
    return out


def _keys(x: np.ndarray, y: np.ndarray, seed: int, member: int) -> np.ndarray:
    """A 64-bit keyed hash of every row (features and label), from the public seed and the member."""
    key = f"cloakroom-pate:{seed}:{member}".encode()
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    out = np.empty(len(x), dtype=np.uint64)
    for i in range(len(x)):
        digest = hashlib.blake2b(x[i].tobytes() + repr(y[i]).encode(), key=key[:64], digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big")
    return out


def partition(
    members: Sequence[tuple[np.ndarray, np.ndarray]], teachers: int, seed: int, sizes: Sequence[int] | None = None
) -> list[list[np.ndarray]]:
    """For each member, for each of its teachers, the indices of the member's rows that teacher trains on.

    Each row is in exactly one teacher. ``sizes`` are the members' public row counts (the allocation's
    input); without them the true counts are used, which is right only when those are public."""
    counts = [len(y) for _, y in members] if sizes is None else list(sizes)
    per_member = allocate(counts, teachers)
    out = []
    for k, ((x, y), t) in enumerate(zip(members, per_member)):
        slot = (_keys(x, np.asarray(y), seed, k) % np.uint64(t)).astype(np.int64)
        out.append([np.flatnonzero(slot == j) for j in range(t)])
    return out


def _model(kind: str, seed: int) -> Any:
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier  # lazy: scikit-learn is heavy, only a worker needs it

        return RandomForestClassifier(n_estimators=50, max_depth=8, random_state=seed, n_jobs=1)
    from sklearn.linear_model import LogisticRegression  # lazy, as above

    return LogisticRegression(max_iter=1000)


def votes(
    members: Sequence[tuple[np.ndarray, np.ndarray]],
    unlabelled: np.ndarray,
    classes: Sequence[Any],
    parts: list[list[np.ndarray]],
    kind: str,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The vote histogram of every unlabelled point: ``counts[i, c]`` teachers vote class c on point i.

    Each teacher is fitted on its rows whose label is a declared class; one with a single class votes it
    everywhere, one with no rows abstains. Private: never released, never logged."""
    index = {c: j for j, c in enumerate(classes)}
    counts = np.zeros((len(unlabelled), len(classes)), dtype=np.int64)
    total = sum(len(p) for p in parts)
    done = 0
    for k, (x, y) in enumerate(members):
        y = np.asarray(y, dtype=object)
        for rows in parts[k]:
            codes = np.array([index.get(v, ABSTAIN) for v in y[rows]], dtype=np.int64)
            rows, codes = rows[codes != ABSTAIN], codes[codes != ABSTAIN]
            vote = _vote(np.asarray(x, dtype=float)[rows], codes, unlabelled, kind, seed * 100_003 + done)
            if vote is not None:
                counts[np.arange(len(unlabelled)), vote] += 1
            done += 1
            if progress is not None:
                progress(done, total)
    return counts


def _vote(x: np.ndarray, codes: np.ndarray, unlabelled: np.ndarray, kind: str, seed: int) -> np.ndarray | None:
    if len(codes) == 0:
        return None
    present = np.unique(codes)
    if len(present) == 1:
        return np.full(len(unlabelled), present[0], dtype=np.int64)
    model = _model(kind, seed % 2**32)
    model.fit(x, codes)
    return np.asarray(model.predict(unlabelled), dtype=np.int64)
