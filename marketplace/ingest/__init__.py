"""Reading an owner's upload and checking it against the declared schema.

Three modules: :mod:`~marketplace.ingest.limits` (the limits and the refusals),
:mod:`~marketplace.ingest.readers` (bytes to a table) and :mod:`~marketplace.ingest.checks` (the table
against the declaration, and :func:`ingest`, the two together); and
:mod:`~marketplace.ingest.header`, the columns a file's header offers the owner's form (names and a
kind guessed from the values' type, never bounds or categories).

Pure functions on bytes and column declarations (no Django), so they are tested alone. The file is
untrusted input: it is size-capped by the caller, its type is decided from its content, it is parsed
as text or Parquet only (never unpickled), and every declared column is checked before anything is
stored. Only declared columns are kept; bounds and categories come from the declaration, never
from the data.

A small file can still describe a huge table: a Parquet file of a few hundred kilobytes may declare
fifty million rows, and a CSV header may list a million columns. So the shape of the file is checked
against :class:`IngestLimits` *before* any data is parsed (Parquet: the row count, column count and
uncompressed size its footer declares; CSV: the byte length and width of the header row), and
Parquet data is then decoded in bounded batches, declared columns only, counting the rows and bytes
actually decoded against the same limits (a footer can lie, and a dictionary-encoded column can
expand far beyond its stored size). A file over a limit raises :class:`UploadTooLarge`.
"""

from marketplace.ingest.checks import ColumnSpec, IngestResult, check_against_schema, ingest
from marketplace.ingest.header import HeaderColumn, HeaderReport, inspect_header
from marketplace.ingest.limits import IngestLimits, UploadRejected, UploadTooLarge
from marketplace.ingest.readers import PARQUET_BATCH_ROWS, check_csv_header, read_frame, sniff_format

__all__ = [
    "PARQUET_BATCH_ROWS",
    "ColumnSpec",
    "HeaderColumn",
    "HeaderReport",
    "IngestLimits",
    "IngestResult",
    "UploadRejected",
    "UploadTooLarge",
    "check_against_schema",
    "check_csv_header",
    "ingest",
    "inspect_header",
    "read_frame",
    "sniff_format",
]
