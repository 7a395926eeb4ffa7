"""The dummy table: fake rows from the declared schema alone, reproducible, inside the declaration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from compute.engines import dp
from compute.engines import dummy as engine
from compute.engines.dp import ColumnMeta

SCHEMA = {
    "age": ColumnMeta("age", "numeric", 18.0, 100.0),
    "ratio": ColumnMeta("ratio", "numeric", -0.002, 0.001),
    "region": ColumnMeta("region", "categorical", categories=("north", "south", "east")),
    "member": ColumnMeta("member", "boolean"),
}


def table(dataset_id: int = 7, version: int = 1, rows: int = 2_000, schema=SCHEMA) -> engine.DummyTable:
    return engine.dummy_table(schema, dataset_id=dataset_id, version=version, rows=rows, basis="test")


def test_numbers_lie_within_the_declared_bounds_and_spread_over_them():
    t = table()
    for name in ("age", "ratio"):
        lower, upper = SCHEMA[name].bounds()
        values = t.columns[name]
        assert values.dtype == float and len(values) == 2_000
        assert values.min() >= lower and values.max() <= upper
        # Uniform over the bounds: each quarter of the range holds about a quarter of the rows.
        quarters = np.histogram(values, bins=4, range=(lower, upper))[0]
        assert all(400 < q < 600 for q in quarters), quarters


def test_categories_are_only_the_declared_ones_each_about_as_often():
    column = table().columns["region"]
    assert isinstance(column, pd.Categorical) and list(column.categories) == ["north", "south", "east"]
    counts = pd.Series(np.asarray(column)).value_counts()
    assert set(counts.index) == {"north", "south", "east"}
    assert all(550 < c < 780 for c in counts), counts


def test_booleans_are_a_fair_coin():
    member = table().columns["member"]
    assert member.dtype == bool and 900 < member.sum() < 1_100


def test_the_same_dataset_and_version_give_the_same_table_and_another_version_another():
    first, again = table(), table()
    for name in SCHEMA:
        assert list(np.asarray(first.columns[name])) == list(np.asarray(again.columns[name]))
    assert list(table(version=2).columns["age"]) != list(first.columns["age"])
    assert list(table(dataset_id=8).columns["age"]) != list(first.columns["age"])


def test_a_columns_values_do_not_depend_on_the_other_columns_declared():
    alone = table(schema={"age": SCHEMA["age"]})
    assert list(alone.columns["age"]) == list(table().columns["age"])


def test_the_row_count_is_the_public_one_capped_and_never_a_private_one():
    assert engine.dummy_rows(row_count_public=False, row_count=442) == (engine.DEFAULT_ROWS, engine.ROWS_DEFAULT)
    assert engine.dummy_rows(row_count_public=True, row_count=442) == (442, engine.ROWS_PUBLIC)
    assert engine.dummy_rows(row_count_public=True, row_count=10**9) == (engine.MAX_ROWS, engine.ROWS_CAPPED)
    assert engine.dummy_rows(row_count_public=True, row_count=0)[0] == engine.DEFAULT_ROWS
    with pytest.raises(ValueError):
        table(rows=engine.MAX_ROWS + 1)


def test_the_text_rows_start_with_the_header_and_keep_the_bounds_decimals():
    lines = list(engine.table_lines(SCHEMA, table(rows=3)))
    assert lines[0] == ["age", "ratio", "region", "member"]
    assert len(lines) == 4
    for age, ratio, region, member in lines[1:]:
        assert 18 <= float(age) <= 100 and len(age.split(".")[1]) == 2
        assert -0.002 <= float(ratio) <= 0.001 and len(ratio.split(".")[1]) == 6
        assert region in ("north", "south", "east") and member in ("true", "false")


def test_the_dp_engine_answers_on_the_fake_columns():
    t = table(rows=1_000)
    query = dp.parse_query({"aggregate": "mean", "column": "age", "group_by": ["region"]}, SCHEMA)
    release = dp.run(t.columns, SCHEMA, query, 5.0, random_state=1)
    assert [g.key for g in release.groups] == [{"region": r} for r in ("north", "south", "east")]
    # About the middle of the bounds, as uniform fake ages are.
    assert all(50 < g.value < 68 for g in release.groups), [g.value for g in release.groups]
