"""marketplace/ingest/header.py: the columns a file's header offers the owner's form. Names and a kind
guessed from the values' type only; never a bound, a category or any value of the file."""

from __future__ import annotations

import dataclasses
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketplace.ingest import HeaderColumn, IngestLimits, UploadRejected, UploadTooLarge, inspect_header
from marketplace.ingest.header import SAMPLE_ROWS, guess_kind


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    "values, kind",
    [
        (["34", "-2.5", "1e3", ".5", "7."], "numeric"),
        (["0", "1", "1"], "numeric"),  # 0/1 read as numbers first; the owner may make it boolean
        (["yes", "No", "TRUE", "f", "1"], "boolean"),
        (["north", "south"], "categorical"),
        (["1,000", "2"], "categorical"),  # a thousands separator is not a number the upload check reads
        (["1_000"], "categorical"),
        (["nan", "inf"], "categorical"),
        (["34", "", "  ", "51"], "numeric"),  # blank cells say nothing
        ([], "numeric"),
        (["", ""], "numeric"),
    ],
)
def test_the_kind_is_guessed_from_the_values_type(values, kind):
    assert guess_kind(values) == kind


def test_a_csv_header_offers_each_column_with_its_kind_in_the_files_order():
    data = b"age, region ,smoker,visits,notes\n34,north,yes,3,call back\n51,south,no,20,moved\n"

    report = inspect_header(data, filename="clinic.csv")

    assert report.file_format == "csv"
    assert report.columns == [
        HeaderColumn("age", "numeric"),
        HeaderColumn("region", "categorical"),
        HeaderColumn("smoker", "boolean"),
        HeaderColumn("visits", "numeric"),
        HeaderColumn("notes", "categorical"),
    ]
    assert report.skipped == []


def test_the_report_holds_names_and_kinds_only_never_a_value_a_bound_or_a_category():
    data = b"age,ward\n34,zebra-ward\n97,A\n"

    report = inspect_header(data)

    assert [f.name for f in dataclasses.fields(HeaderColumn)] == ["name", "kind"]
    text = repr(report)
    for value in ("zebra-ward", "97", "34"):
        assert value not in text


def test_blank_and_repeated_names_are_not_offered_and_are_said_so():
    report = inspect_header(b"age,,age,ward\n1,2,3,A\n")

    assert report.columns == [HeaderColumn("ward", "categorical")]
    assert report.skipped == ["'age' (repeated in the header)", "a column with a blank name"]


def test_only_the_top_of_the_file_is_read():
    # A word far below the sample would make the column categorical if the whole file were read.
    rows = b"".join(b"%d\n" % i for i in range(SAMPLE_ROWS)) + b"not-a-number\n"
    assert inspect_header(b"count\n" + rows).columns == [HeaderColumn("count", "numeric")]
    assert inspect_header(b"count\n" + rows[:20] + b"oops\n").columns == [HeaderColumn("count", "categorical")]


def test_a_row_cut_by_the_sampled_window_is_not_used():
    limits = IngestLimits(max_header_bytes=1024)
    window = 1024 + 64 * 1024
    # The sampled window ends inside the long row: its first part ("abc777...") is not a number, so
    # guessing from it would make the column categorical; the cut row is not used at all.
    data = b"n\n" + b"1\n" * 10 + b"abc" + b"7" * window + b"\n" + b"2\n" * 10
    assert inspect_header(data, limits=limits).columns == [HeaderColumn("n", "numeric")]
    # The same row whole, within the window, is read and decides the kind.
    assert inspect_header(b"n\n1\nabc7\n", limits=limits).columns == [HeaderColumn("n", "categorical")]


def test_parquet_kinds_come_from_the_column_types_without_decoding_rows():
    table = pa.table(
        {
            "age": pa.array([34, 51], pa.int32()),
            "bmi": pa.array([22.5, 30.1]),
            "smoker": pa.array([True, False]),
            "ward": pa.array(["A", "B"]).dictionary_encode(),
            "seen": pa.array([1, 2], pa.timestamp("s")),
            "tags": pa.array([["a"], ["b"]]),
        }
    )

    report = inspect_header(parquet(table), filename="clinic.parquet")

    assert report.file_format == "parquet"
    assert report.columns == [
        HeaderColumn("age", "numeric"),
        HeaderColumn("bmi", "numeric"),
        HeaderColumn("smoker", "boolean"),
        HeaderColumn("ward", "categorical"),
        HeaderColumn("seen", "categorical"),
    ]
    assert report.skipped == ["'tags' (nested values, not one value per row)"]


def test_a_pandas_index_is_not_offered():
    import pandas as pd

    frame = pd.DataFrame({"age": [1, 2]}, index=pd.Index([10, 11], name="patient"))
    sink = io.BytesIO()
    frame.to_parquet(sink)
    assert inspect_header(sink.getvalue()).columns == [HeaderColumn("age", "numeric")]


def test_a_file_that_is_not_a_table_is_refused_as_an_upload_would_be():
    with pytest.raises(UploadRejected) as caught:
        inspect_header(b"\x00\x01binary")
    assert caught.value.code == "unsupported_file_type"
    with pytest.raises(UploadRejected) as caught:
        inspect_header(b"")
    assert caught.value.code == "empty_file"


def test_a_header_over_the_limits_is_refused_before_anything_is_read():
    with pytest.raises(UploadTooLarge) as caught:
        inspect_header(b",".join(b"c%d" % i for i in range(20)) + b"\n", limits=IngestLimits(max_columns=10))
    assert caught.value.extra["limit"] == "columns"
