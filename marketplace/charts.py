"""Geometry for the owner dashboard's budget burn-down chart, drawn by the template as inline SVG.

Horizontal positions are percentages of the chart's width (so it stretches to any screen without
distorting its text); vertical positions are pixels. The chart only ever shows budget amounts and
times, which the owner is entitled to see, never a released value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

HEIGHT = 200
TOP = 22  # y of the cap line
BOTTOM = 160  # y of zero
LEFT, RIGHT = 3.0, 97.0  # x range of the plot, in percent
MAX_POINTS = 200  # more commits than this are thinned to their last state per time slot


@dataclass(frozen=True)
class Segment:
    x1: float
    x2: float
    y1: float
    y2: float


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    when: datetime
    committed: Decimal
    left: Decimal


@dataclass(frozen=True)
class BurnDown:
    height: int
    segments: list[Segment]
    points: list[Point]
    cap_y: float
    zero_y: float
    sold_y: float
    axis_text_y: int
    start: datetime
    end: datetime
    cap: Decimal
    left: Decimal
    sold: Decimal


def _thin(commits: list[tuple[datetime, Decimal]], start: datetime, end: datetime) -> list[tuple[datetime, Decimal]]:
    """At most MAX_POINTS commits: the last cumulative value in each of MAX_POINTS time slots."""
    if len(commits) <= MAX_POINTS:
        return commits
    span = (end - start).total_seconds() or 1.0
    slots: dict[int, tuple[datetime, Decimal]] = {}
    for when, total in commits:
        slot = min(int((when - start).total_seconds() / span * MAX_POINTS), MAX_POINTS - 1)
        slots[slot] = (when, total)
    return [slots[k] for k in sorted(slots)]


def burn_down(
    *, cap: Decimal, sold: Decimal, start: datetime, now: datetime, commits: list[tuple[datetime, Decimal]]
) -> BurnDown:
    """The budget left (cap minus the cumulative epsilon committed) as a step line from ``start``
    to ``now``; ``commits`` are (time, cumulative epsilon committed), oldest first."""
    start = min([start, *(when for when, _ in commits[:1])])
    end = max([now, *(when for when, _ in commits[-1:])])
    span = (end - start).total_seconds()
    cap_f = float(cap) if cap > 0 else 1.0

    def x(when: datetime) -> float:
        fraction = (when - start).total_seconds() / span if span > 0 else 1.0
        return round(LEFT + (RIGHT - LEFT) * fraction, 3)

    def y(left: Decimal) -> float:
        fraction = max(0.0, min(1.0, float(left) / cap_f))
        return round(BOTTOM - (BOTTOM - TOP) * fraction, 2)

    segments, points = [], []
    last_x, last_y = LEFT, y(cap)
    for when, total in _thin(commits, start, end):
        left = cap - total
        cx, cy = x(when), y(left)
        segments.append(Segment(last_x, cx, last_y, last_y))  # flat until the commit
        segments.append(Segment(cx, cx, last_y, cy))  # the drop
        points.append(Point(x=cx, y=cy, when=when, committed=total, left=left))
        last_x, last_y = cx, cy
    segments.append(Segment(last_x, RIGHT, last_y, last_y))
    total = commits[-1][1] if commits else Decimal(0)
    return BurnDown(
        height=HEIGHT,
        segments=segments,
        points=points,
        cap_y=y(cap),
        zero_y=y(Decimal(0)),
        sold_y=y(cap - sold),
        axis_text_y=BOTTOM + 22,
        start=start,
        end=end,
        cap=cap,
        left=cap - total,
        sold=sold,
    )
