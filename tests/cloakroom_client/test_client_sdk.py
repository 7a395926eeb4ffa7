"""The SDK and the `cloakroom` command against a real HTTP server (pytest-django's live_server)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from cloakroom_client import Client, CloakroomError
from cloakroom_client.cli import main as cli_main

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery 42"
METADATA = {
    "title": "Clinic visits",
    "epsilon_cap": "2",
    "price_per_epsilon": "10",
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "smoker", "kind": "boolean"},
    ],
}


@pytest.fixture
def people(live_server, settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("100")
    url = live_server.url
    Client.signup(url, username="olga", email="o@example.org", password=PASSWORD, roles=["owner"])
    Client.signup(url, username="bram", email="b@example.org", password=PASSWORD, roles=["buyer"])
    owner = Client(url, Client.create_api_key(url, username="olga", password=PASSWORD))
    buyer = Client(url, Client.create_api_key(url, username="bram", password=PASSWORD))
    return owner, buyer


def test_an_owner_uploads_and_a_buyer_buys_through_the_sdk(people, tmp_path):
    owner, buyer = people
    csv = tmp_path / "visits.csv"
    csv.write_text("age,smoker\n34,yes\n51,no\n")
    draft = owner.upload(str(csv), METADATA)
    assert draft["status"] == "draft"
    owner.publish(draft["id"])

    found = buyer.datasets(search="clinic")
    assert [d["id"] for d in found] == [draft["id"]]
    purchase = buyer.buy(draft["id"], "1.5")
    assert purchase["price"] == "15.00" and purchase["epsilon_remaining"] == "1.500000"
    assert buyer.me()["credits"] == "85.00"
    assert [p["id"] for p in buyer.purchases()] == [purchase["id"]]


def test_the_sdk_raises_the_apis_error_with_its_code_and_fields(people, tmp_path):
    owner, buyer = people
    csv = tmp_path / "visits.csv"
    csv.write_text("age,smoker\n34,yes\n")
    dataset = owner.upload(str(csv), METADATA)
    owner.publish(dataset["id"])
    with pytest.raises(CloakroomError) as info:
        buyer.buy(dataset["id"], "5")
    assert info.value.status == 409 and info.value.code == "insufficient_budget"
    assert "2" in info.value.message  # says what remains
    with pytest.raises(CloakroomError) as info:
        buyer.buy(dataset["id"], "-1")
    assert info.value.status == 400 and "epsilon" in info.value.fields


def test_the_cli_lists_datasets_and_buys(people, tmp_path, capsys, live_server):
    owner, buyer = people
    csv = tmp_path / "visits.csv"
    csv.write_text("age,smoker\n34,yes\n")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(METADATA))
    key = buyer.session.headers["Authorization"].split()[1]
    owner_key = owner.session.headers["Authorization"].split()[1]
    assert (
        cli_main(["--url", live_server.url, "--api-key", owner_key, "upload", str(csv), "--metadata", str(meta)]) == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert cli_main(["--url", live_server.url, "--api-key", owner_key, "publish", str(created["id"])]) == 0
    capsys.readouterr()
    assert cli_main(["--url", live_server.url, "--api-key", key, "datasets"]) == 0
    assert "Clinic visits" in capsys.readouterr().out
    assert cli_main(["--url", live_server.url, "--api-key", key, "buy", str(created["id"]), "9"]) == 1
    assert "Not enough budget" in capsys.readouterr().err


def test_a_buyer_estimates_submits_waits_and_reads_a_dataframe(people, tmp_path, eager_tasks, capsys):
    owner, buyer = people
    csv = tmp_path / "visits.csv"
    csv.write_text("age,smoker\n" + "".join(f"{20 + i % 60},{'yes' if i % 3 else 'no'}\n" for i in range(300)))
    dataset = owner.upload(str(csv), METADATA)
    owner.publish(dataset["id"])
    purchase = buyer.buy(dataset["id"], "1")
    query = {"aggregate": "count", "group_by": ["smoker"]}
    est = buyer.estimate(purchase["id"], query, epsilon="0.5")
    assert est["exact"] is True and est["ci95_halfwidth"] > 0
    job = buyer.submit(purchase["id"], query, epsilon="0.5")
    done = buyer.wait(job, timeout=30, poll=0.1)
    assert done["status"] == "released"
    assert "released" in capsys.readouterr().err  # the progress line
    frame = buyer.result_frame(done)
    assert list(frame.columns) == ["smoker", "value", "ci95_low", "ci95_high"]
    assert list(frame["smoker"]) == [False, True]
    assert abs(frame.loc[frame["smoker"], "value"].iloc[0] - 200) < 40
    assert buyer.ledger(purchase["id"])["epsilon_committed"] == "0.500000"
