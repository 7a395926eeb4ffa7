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


def check_against_schema(
    frame: pd.DataFrame, specs: list[ColumnSpec], *, clip: bool
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """Return the frame reduced to the declared columns, typed, and clipped when asked.

    Raises :class:`UploadRejected` listing every problem found, column by column.
    """
    problems: list[str] = []
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
    if len(frame) == 0:
        problems.append("the file has a header but no data rows")
    if problems:
        raise UploadRejected(problems, code="missing_column" if missing else "empty_file")

    out: dict[str, pd.Series] = {}
    clipped: dict[str, int] = {}
    for spec in specs:
        if header.count(spec.name) > 1 or isinstance(frame.get(spec.name), pd.DataFrame):
            problems.append(f"column '{spec.name}' appears more than once in the file")
            continue
        raw = frame[spec.name]
        raw = raw.reset_index(drop=True)
        missing_mask = _missing_mask(raw)
        if missing_mask.any():
            problems.append(_describe(spec.name, "are missing", missing_mask, raw.astype(object).fillna("")))
            continue
        if spec.kind == "numeric":
            if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_timedelta64_dtype(raw):
                # pandas would turn these into nanosecond counts, which are not the owner's numbers.
                problems.append(f"column '{spec.name}': holds dates or durations, not numbers")
                continue
            if pd.api.types.is_bool_dtype(raw):
                values = raw.astype(float)
            else:
                values = pd.to_numeric(raw, errors="coerce")
            bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                problems.append(_describe(spec.name, "are not finite numbers", bad, raw))
                continue
            values = values.astype(float)
            outside = ((values < spec.lower) | (values > spec.upper)).to_numpy()
            if outside.any():
                if clip:
                    clipped[spec.name] = int(outside.sum())
                    values = values.clip(lower=spec.lower, upper=spec.upper)
                else:
                    problems.append(
                        _describe(
                            spec.name,
                            f"are outside the declared bounds [{_fmt(spec.lower)}, {_fmt(spec.upper)}]",
                            outside,
                            raw,
                        )
                        + "; correct them, widen the bounds, or ask for clipping"
                    )
                    continue
            out[spec.name] = values
        elif spec.kind == "categorical":
            text = raw.astype(str).str.strip()
            unknown = ~text.isin(set(spec.categories)).to_numpy()
            if unknown.any():
                problems.append(_describe(spec.name, "are not among the declared categories", unknown, text))
                continue
            out[spec.name] = text.astype(object)
        elif spec.kind == "boolean":
            if pd.api.types.is_bool_dtype(raw):
                out[spec.name] = raw.astype(bool)
                continue
            text = raw.astype(str).str.strip().str.lower()
            is_true = text.isin(TRUE_WORDS).to_numpy()
            is_false = text.isin(FALSE_WORDS).to_numpy()
            bad = ~(is_true | is_false)
            if bad.any():
                problems.append(_describe(spec.name, "are not booleans (use true/false, yes/no or 1/0)", bad, raw))
                continue
            out[spec.name] = pd.Series(is_true, dtype=bool)
        else:  # pragma: no cover - the metadata serializer only lets the three kinds through
            problems.append(f"column '{spec.name}': unknown kind {spec.kind!r}")
    if problems:
        raise UploadRejected(problems)
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
