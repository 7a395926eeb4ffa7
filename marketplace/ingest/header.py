"""The columns an upload's header offers to the owner's form: names and a suggested kind, nothing more.

A suggestion saves typing the schema by hand; it is not a declaration. The kind is guessed from the
*type* of the values only (a CSV cell that reads as a number, or as a true/false word; a Parquet
column's type), from at most :data:`SAMPLE_ROWS` rows at the top of a CSV file and no rows at all of
a Parquet file. Bounds and categories are never suggested: they are part of the privacy guarantee
(the noise of every answer is scaled to them), so the owner declares them, and reading them off the
data would leak the data into the guarantee. Nothing read here is kept, returned or logged beyond the
names and kinds.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from marketplace.ingest.checks import FALSE_WORDS, TRUE_WORDS
from marketplace.ingest.limits import IngestLimits
from marketplace.ingest.readers import check_csv_header, is_nested, parquet_header, sniff_format

# A CSV file's kinds are guessed from this many data rows at most, read from at most this many bytes
# past the header row's limit.
SAMPLE_ROWS = 50
SAMPLE_BYTES = 64 * 1024
# A number as the upload check reads one (pandas.to_numeric): no thousands separators, no "1_000".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORDS = TRUE_WORDS | FALSE_WORDS

NUMERIC, CATEGORICAL, BOOLEAN = "numeric", "categorical", "boolean"


@dataclass(frozen=True)
class HeaderColumn:
    name: str
    kind: str


@dataclass
class HeaderReport:
    """The file's offered columns, in the file's order, and the names it could not offer."""

    file_format: str
    columns: list[HeaderColumn] = field(default_factory=list)
    # Names left out, each with the reason (repeated, nested values, blank).
    skipped: list[str] = field(default_factory=list)


def guess_kind(values: Iterable[str]) -> str:
    """``boolean`` when every value is a true/false word (and not all are numbers), else ``numeric``
    when every value is a number, else ``categorical``. Blank cells say nothing; no values at all is
    ``numeric``, the form's default."""
    seen = [v.strip() for v in values if v.strip()]
    numbers = all(_NUMBER.fullmatch(v) for v in seen)
    if seen and all(v.lower() in _WORDS for v in seen) and not numbers:
        return BOOLEAN
    return NUMERIC if numbers else CATEGORICAL


def _parquet_kind(kind: pa.DataType) -> str:
    types = pa.types
    if types.is_dictionary(kind):
        kind = kind.value_type
    if types.is_boolean(kind):
        return BOOLEAN
    if types.is_integer(kind) or types.is_floating(kind) or types.is_decimal(kind) or types.is_null(kind):
        return NUMERIC
    return CATEGORICAL


def _csv_rows(data: bytes, limits: IngestLimits) -> list[list[str]]:
    """The header row and up to SAMPLE_ROWS rows after it, from the top of the file only."""
    check_csv_header(data, limits)
    window = data[: limits.max_header_bytes + SAMPLE_BYTES]
    if len(window) < len(data):
        # The window ends inside a row, which would be guessed from cut short: it ends at the last line
        # break instead (the header row's own end is within it, check_csv_header made sure).
        window = window[: window.rfind(b"\n") + 1] or window
    text = window.decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    try:
        return list(itertools.islice(reader, SAMPLE_ROWS + 1))
    except csv.Error:  # a field longer than the csv module's limit: offer the names, guess nothing
        return [next(csv.reader(io.StringIO(text, newline="")), [])]


def _offer(report: HeaderReport, named: list[tuple[str, str | None]]) -> HeaderReport:
    """Offer each name once, in order; a blank, repeated or unusable one is listed as skipped."""
    counts: dict[str, int] = {}
    for name, _ in named:
        counts[name] = counts.get(name, 0) + 1
    for name, kind in named:
        if not name:
            report.skipped.append("a column with a blank name")
        elif counts[name] > 1:
            if f"'{name}' (repeated in the header)" not in report.skipped:
                report.skipped.append(f"'{name}' (repeated in the header)")
        elif kind is None:
            report.skipped.append(f"'{name}' (nested values, not one value per row)")
        else:
            report.columns.append(HeaderColumn(name=name, kind=kind))
    return report


def inspect_header(data: bytes, *, filename: str = "", limits: IngestLimits | None = None) -> HeaderReport:
    """The columns ``data``'s header offers. Raises UploadRejected or UploadTooLarge, as an upload would,
    for a file that is not a table or is over the limits of its shape."""
    limits = limits or IngestLimits.from_settings()
    file_format = sniff_format(data, filename)
    report = HeaderReport(file_format=file_format)
    if file_format == "parquet":
        named = [
            (name.strip(), None if is_nested(kind) else _parquet_kind(kind))
            for name, kind in parquet_header(data, limits)
        ]
        return _offer(report, named)
    rows = _csv_rows(data, limits)
    header = [name.strip() for name in (rows[0] if rows else [])]
    body = rows[1:]
    named = [(name, guess_kind(row[i] for row in body if i < len(row))) for i, name in enumerate(header)]
    return _offer(report, named)
