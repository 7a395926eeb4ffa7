"""Checking a parsed table against the owner's declared columns: types, bounds, categories, missing
values. Only declared columns are kept; bounds and categories come from the declaration, never from
the data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from compute.engines.dp import ColumnMeta
from marketplace.ingest.limits import IngestLimits, UploadRejected
from marketplace.ingest.readers import read_frame, sniff_format

MAX_ROWS_LISTED = 5
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


# One description of a declared column serves both the upload checks and the DP engine.
ColumnSpec = ColumnMeta


@dataclass
class IngestResult:
    frame: pd.DataFrame
    file_format: str
    row_count: int
    ignored_columns: list[str] = field(default_factory=list)
    clipped: dict[str, int] = field(default_factory=dict)

    def to_parquet_bytes(self) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(self.frame, preserve_index=False), sink, compression="zstd")
        return sink.getvalue()


def _rows(mask: np.ndarray) -> list[int]:
    """1-based data row numbers (the first row after the header is row 1)."""
    return [int(i) + 1 for i in np.flatnonzero(mask)[:MAX_ROWS_LISTED]]


def _describe(name: str, what: str, mask: np.ndarray, values: pd.Series) -> str:
    count = int(mask.sum())
    rows = ", ".join(str(r) for r in _rows(mask))
    more = "" if count <= MAX_ROWS_LISTED else ", …"
    first = values[mask].iloc[0]
    if count == 1:
        what = what.replace("are ", "is ", 1)
    noun = "value" if count == 1 else "values"
    label = "row" if count == 1 else "rows"
    return f"column '{name}': {count} {noun} {what} ({label} {rows}{more}; first: {str(first)[:40]!r})"


def _missing_mask(series: pd.Series) -> np.ndarray:
    mask = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        mask = mask | series.astype(str).str.strip().eq("").to_numpy()
    return mask


class _ColumnProblem(Exception):
    """One declared column cannot be stored; the message is the sentence listed for it.

    ``fields``: the parts of the column's declaration the problem points at (``kind``, ``lower``, ...);
    none means the column as a whole.
    """

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields or ("",)


def _check_header(frame: pd.DataFrame, specs: list[ColumnSpec]) -> list[str]:
    """Return the file's own header; refuse a file missing a declared column or holding no rows."""
    problems: list[str] = []
    columns: dict[str, dict[str, list[str]]] = {}
    # The file's own header: a Parquet frame holds only the declared columns that were decoded.
    header = list(frame.attrs.get("header") or frame.columns)
    present = set(header)
    missing = [s.name for s in specs if s.name not in present]
    if missing:
        found = ", ".join(repr(c) for c in header[:20]) or "none"
        problems.append(
            f"declared column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} "
            f"not found in the file (columns found: {found})"
        )
        for name in missing:
            columns[name] = {"name": [f"column '{name}' is not in the file (columns found: {found})"]}
    if len(frame) == 0:
        problems.append("the file has a header but no data rows")
    if problems:
        raise UploadRejected(problems, code="missing_column" if missing else "empty_file", columns=columns)
    return header


def _numeric_column(spec: ColumnSpec, raw: pd.Series, clip: bool, clipped: dict[str, int]) -> pd.Series:
    """Finite floats within the declared bounds; with ``clip``, values outside are clipped and counted."""
    if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_timedelta64_dtype(raw):
        # pandas would turn these into nanosecond counts, which are not the owner's numbers.
        raise _ColumnProblem(f"column '{spec.name}': holds dates or durations, not numbers", "kind")
    values = raw.astype(float) if pd.api.types.is_bool_dtype(raw) else pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        raise _ColumnProblem(_describe(spec.name, "are not finite numbers", bad, raw), "kind")
    values = values.astype(float)
    below, above = (values < spec.lower).to_numpy(), (values > spec.upper).to_numpy()
    outside = below | above
    if not outside.any():
        return values
    if not clip:
        # The bound each side's values pass is the one to widen, so the problem points at it.
        sides = [side for side, mask in (("lower", below), ("upper", above)) if mask.any()]
        raise _ColumnProblem(
            _describe(
                spec.name,
                f"are outside the declared bounds [{_fmt(spec.lower)}, {_fmt(spec.upper)}]",
                outside,
                raw,
            )
            + "; correct them, widen the bounds, or ask for clipping",
            *sides,
        )
    clipped[spec.name] = int(outside.sum())
    return values.clip(lower=spec.lower, upper=spec.upper)


def _categorical_column(spec: ColumnSpec, raw: pd.Series) -> pd.Series:
    """The stripped text of each cell, every one among the declared categories."""
    text = raw.astype(str).str.strip()
    unknown = ~text.isin(set(spec.categories)).to_numpy()
    if unknown.any():
        raise _ColumnProblem(_describe(spec.name, "are not among the declared categories", unknown, text), "categories")
    return text.astype(object)


def _boolean_column(spec: ColumnSpec, raw: pd.Series) -> pd.Series:
    """Booleans as stored, or the words of TRUE_WORDS and FALSE_WORDS in any case."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(bool)
    text = raw.astype(str).str.strip().str.lower()
    is_true = text.isin(TRUE_WORDS).to_numpy()
    is_false = text.isin(FALSE_WORDS).to_numpy()
    bad = ~(is_true | is_false)
    if bad.any():
        raise _ColumnProblem(_describe(spec.name, "are not booleans (use true/false, yes/no or 1/0)", bad, raw), "kind")
    return pd.Series(is_true, dtype=bool)


def _checked_column(
    frame: pd.DataFrame, header: list[str], spec: ColumnSpec, clip: bool, clipped: dict[str, int]
) -> pd.Series:
    """One declared column, typed; raises :class:`_ColumnProblem` with the first problem found in it."""
    if header.count(spec.name) > 1 or isinstance(frame.get(spec.name), pd.DataFrame):
        raise _ColumnProblem(f"column '{spec.name}' appears more than once in the file", "name")
    raw = frame[spec.name]
    raw = raw.reset_index(drop=True)
    missing_mask = _missing_mask(raw)
    if missing_mask.any():
        raise _ColumnProblem(_describe(spec.name, "are missing", missing_mask, raw.astype(object).fillna("")))
    if spec.kind == "numeric":
        return _numeric_column(spec, raw, clip, clipped)
    if spec.kind == "categorical":
        return _categorical_column(spec, raw)
    if spec.kind == "boolean":
        return _boolean_column(spec, raw)
    # The metadata serializer only lets the three kinds through.
    raise _ColumnProblem(f"column '{spec.name}': unknown kind {spec.kind!r}")  # pragma: no cover


def check_against_schema(
    frame: pd.DataFrame, specs: list[ColumnSpec], *, clip: bool
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """Return the frame reduced to the declared columns, typed, and clipped when asked.

    Raises :class:`UploadRejected` listing every problem found, column by column (the first in each),
    each also under its column's name in ``columns``.
    """
    header = _check_header(frame, specs)
    problems: list[str] = []
    columns: dict[str, dict[str, list[str]]] = {}
    out: dict[str, pd.Series] = {}
    clipped: dict[str, int] = {}
    for spec in specs:
        try:
            out[spec.name] = _checked_column(frame, header, spec, clip, clipped)
        except _ColumnProblem as problem:
            problems.append(str(problem))
            columns[spec.name] = {name: [str(problem)] for name in problem.fields}
    if problems:
        raise UploadRejected(problems, columns=columns)
    return pd.DataFrame(out), clipped, [c for c in header if c not in {s.name for s in specs}]


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else str(x)


def ingest(
    data: bytes,
    specs: list[ColumnSpec],
    *,
    filename: str = "",
    clip: bool = False,
    limits: IngestLimits | None = None,
) -> IngestResult:
    """Read ``data`` and check it against ``specs``; raises UploadRejected or UploadTooLarge.

    ``limits`` default to the settings' (:meth:`IngestLimits.from_settings`).
    """
    file_format = sniff_format(data, filename)
    frame = read_frame(data, file_format, columns=[s.name for s in specs], limits=limits)
    checked, clipped, ignored = check_against_schema(frame, specs, clip=clip)
    return IngestResult(
        frame=checked, file_format=file_format, row_count=len(checked), ignored_columns=ignored, clipped=clipped
    )
