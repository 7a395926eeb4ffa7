"""The SDK's answers as pandas DataFrames, for notebooks.

pandas is imported inside each function, not at the top: it takes about a second to import, and the
``cloakroom`` command, which imports the SDK on every run, never needs it.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

# The columns a frame starts with, in this order (whatever else the API sends follows). Budget and money
# are decimal strings on the wire and Decimal in a frame, so sums stay exact; times become timestamps.
DATASET_COLUMNS = (
    "id",
    "title",
    "mode",
    "status",
    "owner",
    "epsilon_available",
    "price_per_epsilon",
    "row_count",
    "published_at",
)
PURCHASE_COLUMNS = (
    "id",
    "dataset",
    "dataset_title",
    "epsilon",
    "epsilon_spent",
    "epsilon_remaining",
    "share_used",
    "price",
    "created_at",
)
DECIMAL_FIELDS = frozenset(
    {
        "epsilon",
        "epsilon_cap",
        "epsilon_sold",
        "epsilon_available",
        "epsilon_spent",
        "epsilon_remaining",
        "delta",
        "delta_cap",
        "price",
        "price_per_epsilon",
    }
)
TIME_FIELDS = frozenset({"created_at", "published_at", "started_at", "computed_at", "finished_at"})


def _decimal(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str) and value else value


def records_frame(rows: list[dict], leading: tuple[str, ...]) -> Any:
    """A DataFrame of API objects, one row each: the ``leading`` columns first, then the rest."""
    import pandas as pd  # lazily: see the module's docstring

    present = {key for row in rows for key in row}
    order = [c for c in leading if c in present or not rows] + sorted(present - set(leading))
    frame = pd.DataFrame.from_records(rows, columns=order)
    for column in frame.columns:
        if column in DECIMAL_FIELDS:
            frame[column] = frame[column].map(_decimal).astype(object)
        elif column in TIME_FIELDS:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def csv_frame(text: str) -> Any:
    """A DataFrame of a result downloaded as CSV."""
    import pandas as pd  # lazily: see the module's docstring

    return pd.read_csv(io.StringIO(text))
