"""Geometry for the owner dashboard's budget chart, drawn by the template as inline SVG.

The chart plots the share of a dataset's privacy budget that its released answers use, under the
accountant (compute/engines/accounting.py: the best of basic composition, zCDP over all its jobs, and
the buyers' own guarantees added up), after each commit of the privacy ledger. It rises from 0% to at
most 100%, the dataset's ``(epsilon, delta)`` cap, and never past the share sold: every allotment is
within its own cap, so the buyers together can use no more of the dataset's than they bought.

Horizontal positions are percentages of the chart's width (so it stretches to any screen without
distorting its text); vertical positions are pixels. The chart only ever shows budget amounts and
times, which the owner is entitled to see, never a released value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from compute.engines import accounting

HEIGHT = 210
TOP = 42  # y of 100%: the cap (the axis's title is above it)
BOTTOM = 170  # y of 0%
LEFT, RIGHT = 3.0, 97.0  # x range of the plot, in percent
MAX_POINTS = 200  # more commits than this are thinned to their last state per time slot
SIGNIFICANT = 3  # digits of the epsilons and deltas shown, rounded up


def percent(share: float) -> str:
    """A share of a budget for reading: 0.28%, 12.5%, 100%; never rounded down to 0% when something is used."""
    if share <= 0:
        return "0%"
    if share < 0.0001:
        return "under 0.01%"
    text = f"{share * 100:.2f}" if share < 0.1 else f"{share * 100:.1f}"
    return text.rstrip("0").rstrip(".") + "%"


def rounded_up(value: float) -> str:
    """A guarantee's epsilon or delta to three significant digits, rounded up (a bound shown is never
    tighter than the bound computed), in plain decimals: 7.4612 -> "7.47", 1e-05 -> "0.00001".

    Float noise is rounded off first, so 0.30000000000000004 reads "0.3", not "0.301"."""
    if value <= 0:
        return "0"
    number = Decimal(repr(float(value)))
    number = number.quantize(Decimal(1).scaleb(number.adjusted() - 11))
    up = number.quantize(Decimal(1).scaleb(number.adjusted() - SIGNIFICANT + 1), rounding=ROUND_CEILING)
    return f"{up.normalize():f}"


@dataclass(frozen=True)
class Usage:
    """How much of a budget a set of releases uses, and the guarantee behind it."""

    share: float
    bound: accounting.Bound

    @property
    def share_text(self) -> str:
        return percent(self.share)

    @property
    def epsilon_text(self) -> str:
        return rounded_up(self.bound.epsilon)

    @property
    def delta_text(self) -> str:
        return rounded_up(self.bound.delta)

    @property
    def in_words(self) -> str:
        """The usage in words, such as "12.5% of the budget used (ε 1.26 at δ 0.00001, by zCDP)"."""
        return (
            f"{self.share_text} of the budget used (ε {self.epsilon_text} at δ {self.delta_text}, "
            f"by {self.bound.method})"
        )


NOTHING = Usage(0.0, accounting.Bound(0.0, 0.0, accounting.BASIC))


@dataclass(frozen=True)
class Step:
    """The dataset's budget just after one commit: what its released answers use together."""

    when: datetime
    committed: Decimal  # the released jobs' epsilons added up (what basic composition would charge)
    usage: Usage


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
    step: Step


@dataclass(frozen=True)
class BurnDown:
    height: int
    segments: list[Segment]
    points: list[Point]
    cap_y: float
    half_y: float
    zero_y: float
    sold_y: float
    sold_label_y: float
    axis_text_y: int
    start: datetime
    end: datetime
    cap_epsilon: Decimal
    cap_delta: Decimal
    sold_share: float
    commits: int
    usage: Usage

    @property
    def sold_text(self) -> str:
        return percent(self.sold_share)


def window(
    *, start: datetime, now: datetime, first: datetime | None, last: datetime | None
) -> tuple[datetime, datetime]:
    """The chart's time span: from ``start`` (or the first commit, if earlier) to ``now`` (or the last)."""
    return min(start, first or start), max(now, last or now)


def thin(times: list[datetime], start: datetime, end: datetime, limit: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``limit`` of ``times`` (oldest first): the last one in each of ``limit`` equal
    time slots, so the last of all is always kept. Fewer than ``limit`` are all kept."""
    if len(times) <= limit:
        return list(range(len(times)))
    span = (end - start).total_seconds() or 1.0
    slots: dict[int, int] = {}
    for i, when in enumerate(times):
        slots[min(max(int((when - start).total_seconds() / span * limit), 0), limit - 1)] = i
    return [slots[k] for k in sorted(slots)]


def burn_down(
    *,
    cap_epsilon: Decimal,
    cap_delta: Decimal,
    sold: Decimal,
    start: datetime,
    end: datetime,
    steps: list[Step],
    commits: int,
    usage: Usage,
) -> BurnDown:
    """The share of the budget used as a step line from ``start`` to ``end``; ``steps`` (oldest first,
    already thinned) are the dataset's state after some of its ``commits``, and ``usage`` its state now."""
    span = (end - start).total_seconds()

    def x(when: datetime) -> float:
        fraction = (when - start).total_seconds() / span if span > 0 else 1.0
        return round(LEFT + (RIGHT - LEFT) * fraction, 3)

    def y(share: float) -> float:
        return round(BOTTOM - (BOTTOM - TOP) * max(0.0, min(1.0, share)), 2)

    segments, points = [], []
    last_x, last_y = LEFT, y(0.0)
    for step in steps:
        cx, cy = x(step.when), y(step.usage.share)
        segments.append(Segment(last_x, cx, last_y, last_y))  # flat until the commit
        segments.append(Segment(cx, cx, last_y, cy))  # the rise
        points.append(Point(x=cx, y=cy, step=step))
        last_x, last_y = cx, cy
    segments.append(Segment(last_x, RIGHT, last_y, last_y))
    sold_share = float(sold / cap_epsilon) if cap_epsilon > 0 else 0.0
    return BurnDown(
        height=HEIGHT,
        segments=segments,
        points=points,
        cap_y=y(1.0),
        half_y=y(0.5),
        zero_y=y(0.0),
        sold_y=y(sold_share),
        # Above its line, or below it near the cap, so that it never runs into the cap's label.
        sold_label_y=y(sold_share) + (14 if sold_share > 0.88 else -5),
        axis_text_y=BOTTOM + 22,
        start=start,
        end=end,
        cap_epsilon=cap_epsilon,
        cap_delta=cap_delta,
        sold_share=sold_share,
        commits=commits,
        usage=usage,
    )
