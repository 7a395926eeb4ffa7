"""Reading an upload's bytes into a table, within :class:`~marketplace.ingest.limits.IngestLimits`.

The file's type is decided from its content (:func:`sniff_format`). The shape of the file is checked
before any data is parsed (Parquet: the row count, column count and uncompressed size its footer
declares; CSV: the byte length and width of the header row), and Parquet data is then decoded in
bounded batches, declared columns only, counting the rows and bytes actually decoded against the same
limits (a footer can lie, and a dictionary-encoded column can expand far beyond its stored size).
"""

from __future__ import annotations

import csv
import io
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketplace.ingest.limits import IngestLimits, UploadRejected, UploadTooLarge

PARQUET_MAGIC = b"PAR1"
# Parquet data is decoded this many rows at a time, so no single step can take more than a batch's
# worth of memory before the running totals are checked.
PARQUET_BATCH_ROWS = 65_536
# Reading a footer's row groups is a loop in Python; a file claiming more than this many is refused.
MAX_PARQUET_ROW_GROUPS = 10_000
# Nesting depth of a Parquet schema that pyarrow will parse; declared columns must be flat anyway.
SCHEMA_DEPTH_LIMIT = 16


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


def _n(value: int) -> str:
    return f"{value:,}"


def _too_many(what: str, found: int, maximum: int, *, limit: str, declared: bool = False) -> UploadTooLarge:
    verb = "declares" if declared else "has"
    return UploadTooLarge(
        f"The file {verb} {_n(found)} {what}; the limit is {_n(maximum)} {what}.",
        limit=limit,
        maximum=maximum,
        found=found,
    )


def _more_rows_than(maximum: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"The file has more than {_n(maximum)} rows; the limit is {_n(maximum)} rows.", limit="rows", maximum=maximum
    )


def check_csv_header(data: bytes, limits: IngestLimits) -> None:
    """Refuse a CSV header row longer than ``max_header_bytes`` or wider than ``max_columns``.

    Only the first ``max_header_bytes`` bytes are looked at, with the csv module (a header may
    quote a field across lines), so a header of a million columns costs nothing to refuse.
    """
    limit = limits.max_header_bytes
    text = data[:limit].decode("utf-8-sig", errors="ignore")
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream)
    try:
        header = next(reader, [])
        ended = stream.tell() < len(text) or len(data) <= limit or text.endswith(("\n", "\r"))
    except csv.Error:  # a field longer than the csv module's own limit
        header, ended = [], len(data) <= limit
    if not ended:
        raise UploadTooLarge(
            f"The CSV header row is longer than {_n(limit)} bytes, the limit for the header row.",
            limit="header_bytes",
            maximum=limit,
        )
    if len(header) > limits.max_columns:
        raise _too_many("columns", len(header), limits.max_columns, limit="columns")


def _check_parquet_footer(metadata: pq.FileMetaData, limits: IngestLimits) -> None:
    """Refuse a file whose footer declares more rows, columns or uncompressed bytes than allowed."""
    if metadata.num_rows > limits.max_rows:
        raise _too_many("rows", metadata.num_rows, limits.max_rows, limit="rows", declared=True)
    if metadata.num_columns > limits.max_columns:
        raise _too_many("columns", metadata.num_columns, limits.max_columns, limit="columns", declared=True)
    if metadata.num_row_groups > MAX_PARQUET_ROW_GROUPS:
        raise _too_many(
            "row groups", metadata.num_row_groups, MAX_PARQUET_ROW_GROUPS, limit="row_groups", declared=True
        )
    size = sum(max(0, metadata.row_group(i).total_byte_size) for i in range(metadata.num_row_groups))
    if size > limits.max_uncompressed_bytes:
        raise _too_many(
            "bytes of uncompressed data", size, limits.max_uncompressed_bytes, limit="uncompressed_bytes", declared=True
        )


_NESTED = (pa.types.is_list, pa.types.is_large_list, pa.types.is_struct, pa.types.is_map, pa.types.is_union)
try:  # pyarrow 16+
    _NESTED += (pa.types.is_list_view, pa.types.is_large_list_view, pa.types.is_fixed_size_list)
except AttributeError:  # pragma: no cover
    pass


def is_nested(kind: pa.DataType) -> bool:
    """Whether a Parquet column of this type holds lists, structs or maps rather than one value a row."""
    return any(test(kind) for test in _NESTED)


def _is_text(kind: pa.DataType) -> bool:
    types = pa.types
    return types.is_string(kind) or types.is_large_string(kind) or types.is_binary(kind) or types.is_large_binary(kind)


def _decoded_bytes(array: pa.Array | pa.ChunkedArray) -> int:
    """Bytes ``array`` takes once its dictionary (if any) is expanded into plain values."""
    if isinstance(array, pa.ChunkedArray):
        return sum(_decoded_bytes(chunk) for chunk in array.chunks)
    if pa.types.is_dictionary(array.type):
        lengths = pc.binary_length(array.dictionary) if _is_text(array.dictionary.type) else None
        if lengths is None:
            return array.dictionary.nbytes + array.indices.nbytes
        # Offsets (8 bytes covers int64 offsets) plus each value's bytes, as many times as it is used.
        used = pc.sum(pc.take(lengths, array.indices)).as_py() or 0
        return used + 8 * len(array)
    return array.nbytes


def _unreadable(exc: Exception) -> UploadRejected:
    return UploadRejected([f"The Parquet file could not be read: {exc}"], code="unreadable_file")


def _open_parquet(data: bytes) -> tuple[pq.ParquetFile, pa.Schema]:
    """Parse the footer and the schema it declares; no column data is read."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data), pre_buffer=False, schema_depth_limit=SCHEMA_DEPTH_LIMIT)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        # A corrupt footer or schema fails in pyarrow's C++ reader, whose errors arrive as ArrowException
        # (ArrowInvalid is also a ValueError), OSError (thrift cannot decode the footer) or
        # UnicodeDecodeError (a name or key that is not UTF-8).
        raise _unreadable(exc) from None
    return parquet, schema


def _columns_to_decode(schema: pa.Schema, columns: list[str] | None) -> tuple[list[str], list[str]]:
    """Return the file's column names (its pandas index aside) and those of them to decode.

    A column asked for is decoded only if the file holds it once; a nested one is refused.
    """
    try:
        pandas_meta = schema.pandas_metadata or {}
    except ValueError as exc:  # the file's own JSON: a JSONDecodeError, or a UnicodeDecodeError when not UTF-8
        raise _unreadable(exc) from None
    # Metadata of another shape names no index here; decoding it later fails and refuses the file.
    index_columns = pandas_meta.get("index_columns", []) if isinstance(pandas_meta, dict) else []
    index_names = {c for c in index_columns if isinstance(c, str)} if isinstance(index_columns, list) else set()
    names = [n for n in schema.names if n not in index_names]
    wanted = names if columns is None else [c for c in dict.fromkeys(columns) if names.count(c) == 1]
    problems = []
    columns: dict[str, dict[str, list[str]]] = {}
    for name in wanted:
        kind = schema.field(name).type
        if is_nested(kind):
            problems.append(f"column '{name}': holds nested values ({kind}), not one value per row")
            columns[name] = {"kind": [problems[-1]]}
    if problems:
        raise UploadRejected(problems, columns=columns)
    return names, wanted


def _bounded_batches(parquet: pq.ParquetFile, wanted: list[str], limits: IngestLimits) -> list[pa.RecordBatch]:
    """Decode ``wanted`` batch by batch, refusing the file as soon as the rows or bytes decoded pass the limits."""
    batches: list[pa.RecordBatch] = []
    rows = decoded = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted, use_threads=False):
        rows += batch.num_rows
        if rows > limits.max_rows:  # the footer said fewer
            raise _more_rows_than(limits.max_rows)
        decoded += sum(_decoded_bytes(column) for column in batch.columns)
        if decoded > limits.max_uncompressed_bytes:
            raise UploadTooLarge(
                f"The file's data is larger than {_n(limits.max_uncompressed_bytes)} bytes once "
                "uncompressed; that is the limit.",
                limit="uncompressed_bytes",
                maximum=limits.max_uncompressed_bytes,
            )
        batches.append(batch)
    return batches


def _decode_parquet(
    data: bytes, metadata: pq.FileMetaData, schema: pa.Schema, wanted: list[str], limits: IngestLimits
) -> pd.DataFrame:
    """Decode the ``wanted`` columns within ``limits`` into a frame of plain (not dictionary) columns."""
    # Text columns are decoded as dictionaries, so that a value repeated on every row is counted at
    # its expanded size before it is expanded.
    text_columns = [n for n in wanted if _is_text(schema.field(n).type)]
    parquet = pq.ParquetFile(
        io.BytesIO(data),
        metadata=metadata,
        pre_buffer=False,
        read_dictionary=text_columns,
        schema_depth_limit=SCHEMA_DEPTH_LIMIT,
    )
    batches = _bounded_batches(parquet, wanted, limits)
    table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None
    if table is None:
        table = pa.schema([schema.field(n) for n in wanted]).empty_table()
    for i, field_ in enumerate(table.schema):
        if pa.types.is_dictionary(field_.type):
            table = table.set_column(i, field_.name, table.column(i).cast(field_.type.value_type))
    return table.to_pandas()


def parquet_header(data: bytes, limits: IngestLimits) -> list[tuple[str, pa.DataType]]:
    """The file's columns (its pandas index aside) and their types, from the footer; no data is decoded."""
    parquet, schema = _open_parquet(data)
    _check_parquet_footer(parquet.metadata, limits)
    names, _ = _columns_to_decode(schema, [])
    kept = set(names)
    return [(name, kind) for name, kind in zip(schema.names, schema.types, strict=True) if name in kept]


def _read_parquet(data: bytes, columns: list[str] | None, limits: IngestLimits) -> pd.DataFrame:
    """Check the footer, then decode the columns asked for (all when None) batch by batch."""
    parquet, schema = _open_parquet(data)
    _check_parquet_footer(parquet.metadata, limits)
    names, wanted = _columns_to_decode(schema, columns)
    try:
        frame = _decode_parquet(data, parquet.metadata, schema, wanted, limits)
    except UploadTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 (to_pandas interprets the file's own pandas metadata in Python, and crafted metadata raises KeyError, TypeError, AttributeError, ...)
        raise _unreadable(exc) from None
    # The file's own column names, in order, for the checks (missing, repeated, ignored columns).
    frame.attrs["header"] = names
    return frame


def read_frame(
    data: bytes, file_format: str, *, columns: list[str] | None = None, limits: IngestLimits | None = None
) -> pd.DataFrame:
    """Parse the upload. CSV cells are read as text so that the schema decides every type.

    ``columns``: for Parquet, decode only these (the declared ones); the others are never read.
    ``limits``: the shape the file may have (:class:`IngestLimits`), checked before parsing.
    """
    limits = limits or IngestLimits.from_settings()
    if file_format == "parquet":
        return _read_parquet(data, columns, limits)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadRejected(["The CSV file is not UTF-8 text."], code="unsupported_file_type") from None
    if not text.strip():
        raise UploadRejected(["The file is empty."], code="empty_file")
    check_csv_header(data, limits)
    try:
        # index_col=False: when every data row has one field more than the header, pandas would
        # otherwise take the first field as an unnamed index and shift every value one column to
        # the left, silently storing ages as wards. Here the extra fields raise a ParserWarning,
        # which is turned into a rejection below, so misaligned rows are never stored.
        # nrows: one row past the limit is enough to know the file is over it.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text),
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                index_col=False,
                nrows=limits.max_rows + 1,
            )
    except pd.errors.ParserWarning:
        raise UploadRejected(
            ["The CSV file has rows with more fields than its header row; check the delimiters and quoting."],
            code="unreadable_file",
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UploadRejected([f"The CSV file could not be parsed: {exc}".strip()], code="unreadable_file") from None
    if len(frame) > limits.max_rows:
        raise _more_rows_than(limits.max_rows)
    frame.columns = [str(c).strip() for c in frame.columns]
    # pandas renames a repeated header ("age", "age" -> "age", "age.1"), which would silently
    # keep the first of two columns; the header as written is kept so the check can refuse it.
    header = next(csv.reader(io.StringIO(text)), [])
    frame.attrs["header"] = [h.strip() for h in header]
    return frame
