"""Unit tests of marketplace/ingest/ (the package): pure functions on bytes and declarations, no database."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketplace.ingest import ColumnSpec, UploadRejected, ingest, read_frame, sniff_format

AGE = ColumnSpec(name="age", kind="numeric", lower=0, upper=120)
WARD = ColumnSpec(name="ward", kind="categorical", categories=("A", "B"))
INSURED = ColumnSpec(name="insured", kind="boolean")
SPECS = [AGE, WARD, INSURED]


def parquet(columns: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def problems(data: bytes, specs=SPECS, **kwargs) -> UploadRejected:
    with pytest.raises(UploadRejected) as caught:
        ingest(data, specs, **kwargs)
    return caught.value


def test_csv_is_read_typed_and_reduced_to_declared_columns():
    result = ingest(b"age,ward,insured,extra\n34,A,yes,x\n71.5,B,0,y\n", SPECS)
    assert result.file_format == "csv" and result.row_count == 2
    assert list(result.frame.columns) == ["age", "ward", "insured"]
    assert result.frame["age"].tolist() == [34.0, 71.5]
    assert result.frame["insured"].tolist() == [True, False]
    assert result.ignored_columns == ["extra"]


def test_parquet_is_read_by_its_magic_bytes():
    data = parquet({"age": [1, 2], "ward": ["A", "B"], "insured": [True, False]})
    result = ingest(data, SPECS, filename="whatever.csv")
    assert result.file_format == "parquet" and result.frame["age"].tolist() == [1.0, 2.0]


def test_the_stored_parquet_round_trips_with_only_declared_columns():
    result = ingest(b"age,ward,insured,secret\n34,A,yes,hidden\n", SPECS)
    table = pq.read_table(io.BytesIO(result.to_parquet_bytes()))
    assert table.column_names == ["age", "ward", "insured"]
    assert b"hidden" not in result.to_parquet_bytes()


def test_a_utf8_byte_order_mark_and_padded_cells_are_tolerated():
    result = ingest(b"\xef\xbb\xbfage , ward,insured\r\n 34, A ,Yes\r\n", SPECS)
    assert result.frame.iloc[0].tolist() == [34.0, "A", True]


@pytest.mark.parametrize(
    "word, value", [("true", True), ("T", True), ("Y", True), ("1", True), ("no", False), ("F", False), ("0", False)]
)
def test_boolean_words_are_understood(word, value):
    result = ingest(f"insured\n{word}\n".encode(), [INSURED])
    assert result.frame["insured"].tolist() == [value]


def test_bounds_are_inclusive():
    assert ingest(b"age\n0\n120\n", [AGE]).frame["age"].tolist() == [0.0, 120.0]


def test_clipping_moves_values_to_the_bounds_and_counts_them():
    result = ingest(b"age\n-5\n60\n500\n", [AGE], clip=True)
    assert result.frame["age"].tolist() == [0.0, 60.0, 120.0]
    assert result.clipped == {"age": 2}


def test_clipping_does_not_excuse_unparseable_numbers():
    assert "not finite numbers" in problems(b"age\n500\nlots\n", [AGE], clip=True).problems[0]


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity", "1e400", "12abc", "1,5"])
def test_non_finite_or_unparseable_numbers_are_refused(cell):
    rejection = problems(f'age\n"{cell}"\n'.encode(), [AGE])
    assert "column 'age'" in rejection.problems[0] and "row 1" in rejection.problems[0]


def test_a_rejection_names_the_first_five_rows_and_the_total():
    data = b"age\n" + b"".join(b"%d\n" % v for v in [1, 200, 2, 300, 400, 500, 600, 700, 800])
    (message,) = problems(data, [AGE]).problems
    assert message.startswith("column 'age': 7 values are outside the declared bounds [0, 120]")
    assert "rows 2, 4, 5, 6, 7, \u2026" in message and "first: '200'" in message


def test_categories_are_matched_exactly_as_declared():
    (message,) = problems(b"ward\nA\na\nB\n", [WARD]).problems
    assert "column 'ward': 1 value is not among the declared categories (row 2; first: 'a')" in message


def test_a_missing_column_lists_the_columns_found():
    rejection = problems(b"age,colour\n1,red\n")
    assert rejection.code == "missing_column"
    assert "'ward', 'insured'" in rejection.problems[0] and "'colour'" in rejection.problems[0]


def test_a_column_repeated_in_the_header_is_refused():
    (message,) = problems(b"age,age\n1,200\n", [AGE]).problems
    assert "column 'age' appears more than once" in message


def test_rows_wider_than_the_header_are_refused_rather_than_shifted():
    rejection = problems(b"age,ward\n7,1,A\n8,2,B\n", [AGE, WARD])
    assert rejection.code == "unreadable_file" and "more fields than its header" in rejection.problems[0]


def test_a_ragged_csv_is_refused():
    assert problems(b"age,ward\n1,A\n2,B,extra\n", [AGE, WARD]).code == "unreadable_file"


def test_missing_parquet_values_are_reported_as_missing():
    data = parquet({"age": pa.array([1.0, None, 3.0])})
    (message,) = problems(data, [AGE]).problems
    assert "column 'age': 1 value is missing (row 2" in message


def test_parquet_booleans_and_numbers_keep_their_types():
    data = parquet({"age": pa.array([1, 2], pa.int8()), "insured": [False, True]})
    frame = ingest(data, [AGE, INSURED]).frame
    assert frame["age"].dtype == np.float64 and frame["insured"].tolist() == [False, True]


def test_a_parquet_column_repeated_is_refused():
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["age", "age"])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    # pyarrow itself refuses to pick one of two same-named columns; either way nothing is stored.
    assert "age" in problems(sink.getvalue(), [AGE]).problems[0]


@pytest.mark.parametrize(
    "data, filename, code",
    [
        (b"", "a.csv", "empty_file"),
        (b"\x00\x01\x02", "a.csv", "unsupported_file_type"),
        (b"age\n1\n", "a.parquet", "unsupported_file_type"),
        (b"\xc3\x28 bad utf-8", "a.csv", "unsupported_file_type"),
        (b"PAR1 garbage in between PAR1", "a.parquet", None),
    ],
)
def test_sniffing_decides_the_type_from_the_bytes(data, filename, code):
    if code is None:
        assert sniff_format(data, filename) == "parquet"
        with pytest.raises(UploadRejected) as caught:
            read_frame(data, "parquet")
        assert caught.value.code == "unreadable_file"
    else:
        with pytest.raises(UploadRejected) as caught:
            sniff_format(data, filename)
        assert caught.value.code == code


def test_a_multibyte_character_cut_at_the_sniffing_window_is_still_csv():
    text = "ward\n" + "A\n" * 32766 + "é"
    data = text.encode("utf-8")
    assert len(data[:65536]) == 65536 and sniff_format(data) == "csv"


def test_an_empty_file_and_a_header_only_file_are_distinct_rejections():
    assert problems(b"").problems == ["The file is empty."]
    assert problems(b"age,ward,insured\n").problems == ["the file has a header but no data rows"]


@pytest.mark.parametrize(
    "data, column, parts",
    [
        (b"age,ward,insured\n150,A,yes\n", "age", ["upper"]),
        (b"age,ward,insured\n-1,A,yes\n", "age", ["lower"]),
        (b"age,ward,insured\n-1,A,yes\n121,B,no\n", "age", ["lower", "upper"]),
        (b"age,ward,insured\nold,A,yes\n", "age", ["kind"]),
        (b"age,ward,insured\n3,C,yes\n", "ward", ["categories"]),
        (b"age,ward,insured\n3,A,maybe\n", "insured", ["kind"]),
        (b"age,ward,insured\n,A,yes\n", "age", [""]),
        (b"age,insured\n3,yes\n", "ward", ["name"]),
        (b"age,ward,ward,insured\n3,A,B,yes\n", "ward", ["name"]),
    ],
)
def test_each_problem_names_its_column_and_the_part_of_the_declaration_it_points_at(data, column, parts):
    rejected = problems(data)
    assert list(rejected.columns) == [column]
    assert list(rejected.columns[column]) == parts
    for reasons in rejected.columns[column].values():
        assert f"'{column}'" in reasons[0]


def test_a_problem_of_the_file_itself_names_no_column():
    assert problems(b"age,ward,insured\n").columns == {}
