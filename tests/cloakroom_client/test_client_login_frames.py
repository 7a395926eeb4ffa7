"""The SDK's saved keys (Client.login), its DataFrames (as_frame) and the status line of wait(), against
a real HTTP server (pytest-django's live_server)."""

from __future__ import annotations

import io
import json
import stat
import sys
from decimal import Decimal

import pandas as pd
import pytest

from cloakroom_client import Client, CloakroomError
from cloakroom_client.credentials import credentials_path, saved_key
from cloakroom_client.progress import StatusLine, job_status_text

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
def people(live_server, settings, tmp_path):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("100")
    url = live_server.url
    Client.signup(url, username="olga", email="o@example.org", password=PASSWORD, roles=["owner"])
    Client.signup(url, username="bram", email="b@example.org", password=PASSWORD, roles=["buyer"])
    owner = Client.login(url, username="olga", password=PASSWORD, credentials=tmp_path / "owner.json")
    buyer = Client.login(url, username="bram", password=PASSWORD, credentials=tmp_path / "buyer.json")
    return owner, buyer


def _keys(client: Client) -> list[dict]:
    return [k for k in client._request("GET", "api-keys/") if not k.get("revoked_at")]


def test_login_saves_one_key_0600_and_every_later_run_reuses_it(live_server, tmp_path, monkeypatch):
    url = live_server.url
    monkeypatch.setenv("CLOAKROOM_CREDENTIALS", str(tmp_path / "home" / ".cloakroom" / "credentials.json"))
    Client.signup(url, username="bram", email="b@example.org", password=PASSWORD, roles=["buyer"])
    first = Client.login(url + "/", username="bram", password=PASSWORD)
    second = Client.login(url, username="bram", password=PASSWORD)
    assert first.session.headers["Authorization"] == second.session.headers["Authorization"]
    assert len(_keys(second)) == 1  # the second run created no key

    path = credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())["servers"][url]
    assert saved["current"] == "bram" and saved["users"]["bram"]["key"].startswith("ck_")
    assert not list(path.parent.glob(".credentials-*"))  # no temporary file left behind


def test_a_revoked_saved_key_is_replaced_by_a_new_one(live_server, tmp_path):
    url = live_server.url
    book = tmp_path / "credentials.json"
    Client.signup(url, username="bram", email="b@example.org", password=PASSWORD, roles=["buyer"])
    client = Client.login(url, username="bram", password=PASSWORD, credentials=book)
    old = saved_key(url, "bram", book)
    client.revoke_api_key(old["id"])
    again = Client.login(url, username="bram", password=PASSWORD, credentials=book)
    assert again.me()["username"] == "bram"
    assert saved_key(url, "bram", book)["key"] != old["key"]
    with pytest.raises(CloakroomError) as info:
        Client.login(url, username="nobody", password=PASSWORD, credentials=book)
    assert info.value.status in (401, 403)


def test_two_users_of_one_server_keep_a_key_each(live_server, tmp_path):
    url = live_server.url
    book = tmp_path / "credentials.json"
    for name, roles in (("olga", ["owner"]), ("bram", ["buyer"])):
        Client.signup(url, username=name, email=f"{name}@example.org", password=PASSWORD, roles=roles)
    olga = Client.login(url, username="olga", password=PASSWORD, credentials=book)
    Client.login(url, username="bram", password=PASSWORD, credentials=book)
    assert Client.login(url, username="olga", password=PASSWORD, credentials=book).me()["username"] == "olga"
    assert len(_keys(olga)) == 1
    assert saved_key(url, path=book)["username"] == "olga"  # the last to log in is the current user


def test_datasets_and_purchases_as_frames(people, tmp_path):
    owner, buyer = people
    csv = tmp_path / "visits.csv"
    csv.write_text("age,smoker\n34,yes\n51,no\n")
    dataset = owner.upload(str(csv), METADATA)
    owner.publish(dataset["id"])
    purchase = buyer.buy(dataset["id"], "1.5")

    frame = buyer.datasets(as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:6]) == ["id", "title", "mode", "status", "owner", "epsilon_available"]
    assert frame.loc[0, "title"] == "Clinic visits" and frame.loc[0, "id"] == dataset["id"]
    assert frame.loc[0, "price_per_epsilon"] == Decimal("10.00")  # exact, never a float
    assert isinstance(frame.loc[0, "published_at"], pd.Timestamp)
    assert "columns" in frame.columns  # the rest of the API's fields follow

    purchases = buyer.purchases(as_frame=True)
    assert list(purchases.columns[:8]) == [
        "id",
        "dataset",
        "dataset_title",
        "epsilon",
        "epsilon_spent",
        "epsilon_remaining",
        "share_used",
        "price",
    ]
    assert purchases.loc[0, "id"] == purchase["id"]
    assert purchases.loc[0, "epsilon_remaining"] == Decimal("1.5") and purchases.loc[0, "price"] == Decimal("15")
    assert buyer.purchases() == [buyer.purchase(purchase["id"])]  # without as_frame: the dicts, as before
    empty = owner.purchases(as_frame=True)
    assert empty.empty and list(empty.columns)[:3] == ["id", "dataset", "dataset_title"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_on_a_terminal_is_redrawn_and_ended_with_a_newline_even_on_an_error():
    stream = _Terminal()
    with pytest.raises(KeyboardInterrupt), StatusLine(stream) as line:
        line.show("job 1: queued")
        line.show("job 1: running")
        raise KeyboardInterrupt
    assert stream.getvalue() == "\rjob 1: queued\rjob 1: running\n"


def test_the_status_line_off_a_terminal_writes_one_line_per_change():
    stream = io.StringIO()
    with StatusLine(stream) as line:
        for status in ("queued", "queued", "running", "released"):
            line.show(f"job 1: {status}", key=status)
    assert stream.getvalue() == "job 1: queued\njob 1: running\njob 1: released\n"


def test_an_he_job_shows_a_bar_of_its_parts():
    text = job_status_text({"id": 3, "status": "running", "progress": {"done": 1, "total": 4}}, 2.5)
    assert text == "job 3: running      [#####...............] 1/4 parts    2.5s"


def test_wait_ends_its_line_when_the_server_fails_mid_wait(people, monkeypatch):
    _, buyer = people
    calls = iter([{"id": 9, "status": "queued"}])

    def job(job_id):
        try:
            return next(calls)
        except StopIteration:
            raise CloakroomError(503, "unavailable", "down") from None

    monkeypatch.setattr(buyer, "job", job)
    terminal, saved = _Terminal(), sys.stderr
    sys.stderr = terminal  # restored below, before Django's teardown writes to stderr
    try:
        with pytest.raises(CloakroomError):
            buyer.wait(9, poll=0.01)
    finally:
        sys.stderr = saved
    assert terminal.getvalue() == "\rjob 9: queued          0.0s\n"
