"""The result chart's geometry and labels (compute/presentation.py), on released results as the
engines store them. Pure functions: no database."""

from __future__ import annotations

from compute.presentation import fmt, result_view

MEAN_BY_REGION = {
    "aggregate": "mean",
    "groups": [
        {"key": {"region": "north"}, "value": 25.84, "ci95": [25.14, 26.55]},
        {"key": {"region": "south"}, "value": 31.2, "ci95": [29.875, 32.5]},
        {"key": {"region": "east"}, "value": 1234.5678, "ci95": [1200.004, 1269.1]},
    ],
}


def test_the_interval_ends_are_labelled_with_the_tables_own_numbers():
    view = result_view(MEAN_BY_REGION, {"aggregate": "mean", "column": "age", "group_by": ["region"]})

    assert [(row["low"], row["high"]) for row in view["rows"]] == [
        ("25.14", "26.55"),
        ("29.875", "32.5"),
        ("1,200.00", "1,269.10"),
    ]
    for row, group in zip(view["rows"], MEAN_BY_REGION["groups"]):
        assert (row["low"], row["high"]) == (fmt(group["ci95"][0]), fmt(group["ci95"][1]))
        assert row["has_interval"] is True


def test_the_interval_chart_has_no_axis_ticks_that_could_pass_for_the_interval():
    view = result_view(MEAN_BY_REGION, {"aggregate": "mean", "column": "age"})

    assert not {"axis_low", "axis_high"} & set(view)


def test_each_label_sits_at_its_whisker_end_and_the_data_leave_room_for_the_labels():
    rows = result_view(MEAN_BY_REGION, {"aggregate": "mean", "column": "age"})["rows"]

    for row in rows:
        assert 18 <= row["x_low"] <= row["x_value"] <= row["x_high"] <= 82
    # The lowest end and the highest end of all the intervals are the ones nearest the chart's sides.
    assert min(row["x_low"] for row in rows) == rows[0]["x_low"]
    assert max(row["x_high"] for row in rows) == rows[2]["x_high"]


def test_rows_are_spaced_so_that_the_end_labels_sit_below_their_whisker_and_above_the_next_row():
    view = result_view(MEAN_BY_REGION, {"aggregate": "mean", "column": "age"})
    rows = view["rows"]

    for row, below in zip(rows, rows[1:]):
        assert row["y_line"] + 6 < row["y_ends"] - 10  # the whisker's cap ends above the 13 px text
        assert row["y_ends"] < below["y_label"] - 10
    assert view["height"] >= rows[-1]["y_ends"] + 4


def test_a_value_without_an_interval_draws_no_whisker_and_claims_no_interval():
    result = {"aggregate": "sum", "groups": [{"key": None, "value": 12.5, "ci95": None}]}

    (row,) = result_view(result, {"aggregate": "sum", "column": "x"})["rows"]

    assert row["has_interval"] is False
    assert (row["low"], row["high"]) == ("–", "–")
    assert row["value"] == "12.5"
