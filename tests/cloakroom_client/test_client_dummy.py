"""Trying queries on fake data from the SDK and the `cloakroom` command, against a real HTTP server."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest

from cloakroom_client import Client, CloakroomError
from cloakroom_client.cli import main as cli_main
from marketplace.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery 42"
METADATA = {
    "title": "Clinic visits",
    "epsilon_cap": "2",
    "price_per_epsilon": "10",
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "ward", "kind": "categorical", "categories": ["A", "B", "C"]},
        {"name": "smoker", "kind": "boolean"},
    ],
}


@pytest.fixture
def published(live_server, settings, tmp_path):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("100")
    url = live_server.url
    Client.signup(url, username="olga", email="o@example.org", password=PASSWORD, roles=["owner"])
    Client.signup(url, username="bram", email="b@example.org", password=PASSWORD, roles=["buyer"])
    owner = Client(url, Client.create_api_key(url, username="olga", password=PASSWORD))
    buyer_key = Client.create_api_key(url, username="bram", password=PASSWORD)
    csv_file = tmp_path / "visits.csv"
    csv_file.write_text("age,ward,smoker\n34,A,yes\n51,A,no\n")
    dataset = owner.upload(str(csv_file), METADATA)
    owner.publish(dataset["id"])
    return dataset["id"], buyer_key


def test_the_sdk_tries_a_query_on_fake_data_without_an_account_or_a_purchase(published, live_server):
    dataset_id, _ = published
    visitor = Client(live_server.url)
    answer = visitor.dummy_query(dataset_id, {"aggregate": "count", "group_by": ["ward"]}, epsilon="0.5")
    assert answer["dummy"] is True and "says nothing about the real data" in answer["note"]
    assert answer["epsilon"] == "0.5" and answer["epsilon_charged"] == "0"
    # Every declared ward, about a third of the 1,000 fake rows each (the real file has two rows, in A).
    counts = {g["key"]["ward"]: g["value"] for g in answer["result"]["groups"]}
    assert set(counts) == {"A", "B", "C"} and all(250 < c < 420 for c in counts.values()), counts

    frame = visitor.dummy_table(dataset_id, as_frame=True)
    assert list(frame.columns) == ["age", "ward", "smoker"] and len(frame) == 1000
    assert frame["age"].between(0, 120).all() and set(frame["ward"]) == {"A", "B", "C"}
    assert visitor.dummy_table(dataset_id) == visitor.dummy_table(dataset_id)

    with pytest.raises(CloakroomError) as info:
        visitor.dummy_query(dataset_id, {"aggregate": "mean", "column": "ward"})
    assert info.value.status == 400 and "query.column" in info.value.fields
    assert LedgerEntry.objects.count() == 0


def test_the_cli_prints_a_fake_answer_marked_fake_and_writes_the_fake_table(published, live_server, tmp_path, capsys):
    dataset_id, key = published
    base = ["--url", live_server.url, "--api-key", key]

    assert cli_main([*base, "dummy-query", str(dataset_id), "-a", "mean", "-c", "age", "-g", "smoker"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FAKE DATA: fake data generated from the declared schema; says nothing about the real data")
    lines = out.splitlines()
    assert lines[1].split() == ["smoker", "value", "ci95_low", "ci95_high"]
    assert [line.split()[0] for line in lines[3:5]] == ["False", "True"]
    assert "1,000 fake rows" in out and "nothing charged" in out

    query = json.dumps({"aggregate": "quantile", "column": "age", "quantiles": [0.5]})
    assert cli_main([*base, "dummy-query", str(dataset_id), "--query", query, "--epsilon", "2", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["dummy"] is True and answer["epsilon"] == "2" and answer["query"]["quantiles"] == [0.5]

    assert cli_main([*base, "dummy-query", str(dataset_id), "-a", "sum", "-c", "ward"]) == 1
    assert "query.column" in capsys.readouterr().err

    target = tmp_path / "fake.csv"
    assert cli_main([*base, "dummy-table", str(dataset_id), "-o", str(target)]) == 0
    assert "FAKE DATA" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 1000 and {r["smoker"] for r in rows} == {"true", "false"}
    assert LedgerEntry.objects.count() == 0
    assert Client(live_server.url, key).purchases() == []
