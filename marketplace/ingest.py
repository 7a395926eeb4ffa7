"""Reading an owner's upload and checking it against the declared schema.

Pure functions on bytes and column declarations (no Django), so they are tested alone. The file is
untrusted input: it is size-capped by the caller, its type is decided from its content, it is parsed
as text or Parquet only (never unpickled), and every declared column is checked before anything is
stored. Only declared columns are kept; bounds and categories come from the declaration, never
from the data.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from compute.engines.dp import ColumnMeta

PARQUET_MAGIC = b"PAR1"
MAX_ROWS_LISTED = 5
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


# One description of a declared column serves both the upload checks and the DP engine.
ColumnSpec = ColumnMeta


class UploadRejected(Exception):
    """The file cannot be stored. ``problems`` are sentences a person can act on."""

    def __init__(self, problems: list[str], *, code: str = "invalid_file") -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.code = code


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


def sniff_format(data: bytes, filename: str = "") -> str:
    """Decide 'csv' or 'parquet' from the bytes themselves; the file name is only a hint."""
    if not data:
        raise UploadRejected(["The file is empty."], code="empty_file")
    if data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC:
        return "parquet"
    if filename.lower().endswith((".parquet", ".pq")):
        raise UploadRejected(
            ["The file is named like Parquet but is not a valid Parquet file."], code="unsupported_file_type"
        )
    head = data[:65536]
    if b"\x00" in head:
        raise UploadRejected(
            ["The file is neither CSV text nor Parquet (it contains binary data)."], code="unsupported_file_type"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 64 KiB boundary is fine; anything earlier is not UTF-8.
        if exc.start < len(head) - 4:
            raise UploadRejected(
                ["The file is neither Parquet nor UTF-8 CSV text."], code="unsupported_file_type"
            ) from None
    return "csv"


def read_frame(data: bytes, file_format: str) -> pd.DataFrame:
    """Parse the upload. CSV cells are read as text so that the schema decides every type."""
    if file_format == "parquet":
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise UploadRejected([f"The Parquet file could not be read: {exc}"], code="unreadable_file") from None
        return table.to_pandas()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadRejected(["The CSV file is not UTF-8 text."], code="unsupported_file_type") from None
    if not text.strip():
        raise UploadRejected(["The file is empty."], code="empty_file")
    try:
        # index_col=False: when every data row has one field more than the header, pandas would
        # otherwise take the first field as an unnamed index and shift every value one column to
        # the left, silently storing ages as wards. Here the extra fields raise a ParserWarning,
        # which is turned into a rejection below, so misaligned rows are never stored.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
    except pd.errors.ParserWarning:
        raise UploadRejected(
            ["The CSV file has rows with more fields than its header row; check the delimiters and quoting."],
            code="unreadable_file",
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UploadRejected([f"The CSV file could not be parsed: {exc}".strip()], code="unreadable_file") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # pandas renames a repeated header ("age", "age" -> "age", "age.1"), which would silently
    # keep the first of two columns; the header as written is kept so the check can refuse it.
    header = next(csv.reader(io.StringIO(text)), [])
    frame.attrs["header"] = [h.strip() for h in header]
    return frame


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
    present = set(frame.columns)
    missing = [s.name for s in specs if s.name not in present]
    if missing:
        found = ", ".join(repr(c) for c in list(frame.columns)[:20]) or "none"
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
    header = frame.attrs.get("header") or list(frame.columns)
    for spec in specs:
        raw = frame[spec.name]
        if isinstance(raw, pd.DataFrame) or header.count(spec.name) > 1:
            problems.append(f"column '{spec.name}' appears more than once in the file")
            continue
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
    return pd.DataFrame(out), clipped, [c for c in frame.columns if c not in {s.name for s in specs}]


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else str(x)


def ingest(data: bytes, specs: list[ColumnSpec], *, filename: str = "", clip: bool = False) -> IngestResult:
    file_format = sniff_format(data, filename)
    frame = read_frame(data, file_format)
    checked, clipped, ignored = check_against_schema(frame, specs, clip=clip)
    return IngestResult(
        frame=checked, file_format=file_format, row_count=len(checked), ignored_columns=ignored, clipped=clipped
    )
