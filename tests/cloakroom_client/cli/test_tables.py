"""The terminal tables and the query flags of the buyer's commands, without a server."""

from __future__ import annotations

import argparse

import pytest

from cloakroom_client.cli import build_parser
from cloakroom_client.cli.compute import QueryError, build_query, parse_where
from cloakroom_client.cli.tables import csv_table, describe_query, format_cell, format_table, key_value_table


def test_numbers_are_shortened_and_right_aligned_and_words_left_aligned():
    table = format_table(
        ["sex", "value", "ci95_low"],
        [["female", "25.0712345678", "-0.000123456"], ["male", "3", None]],
    )
    assert table.splitlines() == [
        "sex       value    ci95_low",
        "------  -------  ----------",
        "female  25.0712  -0.0001235",
        "male          3",  # right-aligned under "value"; the empty cell leaves no trailing space
    ]


def test_every_line_of_a_table_ends_its_number_column_where_the_rule_ends():
    table = format_table(["a", "long header"], [["x", 1.5], ["a longer word", 12345.678]])
    lines = table.splitlines()
    assert lines[0] == "a              long header"
    assert {len(line) for line in lines} == {len(lines[1])}
    assert lines[2].endswith(" 1.5000") and lines[3].endswith(" 12345.6780")


def test_cells_are_formatted_for_a_person():
    assert format_cell(None) == ""
    assert format_cell(True) == "True"
    assert format_cell(7) == "7"
    assert format_cell("200.0") == "200"
    assert format_cell("0.5") == "0.5"
    assert format_cell(1 / 3) == "0.3333"
    assert format_cell("12.345678") == "12.3457"
    assert format_cell("north") == "north"
    assert format_cell("[0.0, 18.0)") == "[0.0, 18.0)"
    assert format_cell("007") == "007"  # digits that are a label stay as written


def test_a_downloaded_csv_becomes_a_table_and_an_empty_one_says_so():
    text = "smoker,value,ci95_low,ci95_high\r\nFalse,99.5,97.1,101.9\r\nTrue,201.25,198.8,203.7\r\n"
    table = csv_table(text)
    assert table.splitlines()[0].split() == ["smoker", "value", "ci95_low", "ci95_high"]
    assert table.splitlines()[3].split() == ["True", "201.2500", "198.8000", "203.7000"]
    assert csv_table("") == "(no rows)"


def test_key_value_table_aligns_the_values():
    assert key_value_table([("epsilon", "0.5"), ("noise_scale", 2.0)]) == "epsilon      0.5\nnoise_scale  2"


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ({"aggregate": "mean", "column": "bmi", "group_by": ["sex"]}, "mean of bmi by sex"),
        ({"aggregate": "count", "filters": [{"column": "age", "op": "range", "low": 18}]}, "count where age"),
        (
            {"aggregate": "sum", "column": "age", "filter": {"column": "ward", "category": "A"}},
            "sum of age where ward=A",
        ),
        ({"aggregate": "regression", "target": "y", "columns": ["a", "b"]}, "regression of y on a, b"),
        ("not a query", "query"),
    ],
)
def test_describe_query(query, label):
    assert describe_query(query) == label


def test_where_reads_eq_in_and_ranges():
    assert parse_where("region=north") == {"column": "region", "op": "eq", "value": "north"}
    assert parse_where("smoker=true") == {"column": "smoker", "op": "eq", "value": True}
    assert parse_where("region=north,south") == {"column": "region", "op": "in", "values": ["north", "south"]}
    assert parse_where("age=18..65") == {"column": "age", "op": "range", "low": 18.0, "high": 65.0}
    assert parse_where("age=..65") == {"column": "age", "op": "range", "low": None, "high": 65.0}
    for bad in ("age", "=3", "age=", "age=a..b"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_where(bad)


def test_a_query_is_built_from_flags_or_json_and_flags_override(tmp_path):
    parser = build_parser()
    args = parser.parse_args(
        ["query", "4", "-a", "quantile", "-c", "age", "-g", "sex", "-w", "age=0..90", "--quantiles", "0.25,0.5"]
        + ["--epsilon", "1"]
    )
    assert build_query(args) == {
        "aggregate": "quantile",
        "column": "age",
        "group_by": ["sex"],
        "filters": [{"column": "age", "op": "range", "low": 0.0, "high": 90.0}],
        "quantiles": [0.25, 0.5],
    }
    (tmp_path / "q.json").write_text('{"aggregate": "histogram", "column": "age", "bins": 4}')
    args = parser.parse_args(["estimate", "4", "--query", f"@{tmp_path / 'q.json'}", "--bins", "0,18,65,120"])
    assert build_query(args) == {"aggregate": "histogram", "column": "age", "bins": [0.0, 18.0, 65.0, 120.0]}
    with pytest.raises(QueryError, match="--aggregate"):
        build_query(parser.parse_args(["estimate", "4", "--column", "age"]))
    with pytest.raises(QueryError, match="JSON object"):
        build_query(parser.parse_args(["estimate", "4", "--query", "[1]"]))
