"""`client.pate(...)` and `cloakroom pate`: a table of unlabelled rows labelled by an ensemble through
a real HTTP server (pytest-django's live_server), eager tasks and the real engine."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from accounts.services import api_key_create
from cloakroom_client import Client
from cloakroom_client.cli.main import main
from tests.fixtures.pate import pate_rows

pytestmark = pytest.mark.django_db(transaction=True)

# Little noise, so the labels are the teachers' (who agree): a large budget for it.
SPEC = {"teachers": 15, "threshold": 8, "sigma1": 4, "sigma2": 2, "max_queries": 30}


@pytest.fixture(autouse=True)
def large_caps(pate_ensemble):
    from decimal import Decimal

    from marketplace.models import Dataset

    for dataset in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        dataset.epsilon_cap = Decimal("100")
        dataset.save()


@pytest.fixture
def buyer_sdk(live_server, buyer, eager_tasks):
    _, key = api_key_create(user=buyer, name="sdk")
    return Client(live_server.url, key), key


def test_client_pate_returns_a_frame_of_labels_on_the_rows_index(pate_ensemble, buyer_sdk):
    client, _ = buyer_sdk
    text, truth = pate_rows(40, seed=5, labelled=False)
    frame = pd.read_csv(io.StringIO(text)).set_axis(pd.RangeIndex(100, 140))
    labels = client.pate(pate_ensemble["id"], frame, progress=False, **SPEC)
    assert list(labels.index) == list(frame.index) and list(labels.columns) == ["label"]
    answered = labels["label"].notna()
    assert labels.attrs["asked"] == 30 and labels.attrs["answered"] == int(answered.sum()) > 0
    assert not answered.iloc[30:].any()
    assert (labels["label"][answered].to_numpy() == truth[answered.to_numpy()]).mean() >= 0.9
    assert labels.attrs["delta"] == 1e-5 and labels.attrs["epsilon"] > 0
    assert [e["id"] for e in client.ensembles()] == [pate_ensemble["id"]]


def test_the_pate_command_writes_a_csv_of_labels(pate_ensemble, buyer_sdk, live_server, tmp_path, capsys):
    _, key = buyer_sdk
    rows = tmp_path / "rows.csv"
    rows.write_text(pate_rows(12, seed=6, labelled=False)[0])
    out = tmp_path / "labels.csv"
    spec = '{"teachers": 15, "threshold": 8, "sigma1": 4, "sigma2": 2}'
    code = main(
        ["--url", live_server.url, "--api-key", key, "pate", str(pate_ensemble["id"]), str(rows), "--out", str(out),
         "--spec", spec, "--no-progress"]
    )  # fmt: skip
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["row", "label"] and list(table["row"]) == list(range(1, 13))
    assert "rows labelled" in capsys.readouterr().err


def test_the_pate_command_with_student_writes_a_model_file_that_rebuilds(
    pate_ensemble, buyer_sdk, live_server, tmp_path, capsys
):
    import json

    import numpy as np

    from cloakroom_client import models as sdk_models

    _, key = buyer_sdk
    rows = tmp_path / "rows.csv"
    text, truth = pate_rows(40, seed=7, labelled=False)
    rows.write_text(text)
    student = tmp_path / "student.json"
    code = main(
        ["--url", live_server.url, "--api-key", key, "pate", str(pate_ensemble["id"]), str(rows), "--out",
         str(tmp_path / "labels.csv"), "--spec", json.dumps(SPEC), "--student", str(student), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "of 30 asked rows labelled" in err and f"wrote {student}" in err
    doc = json.loads(student.read_text())
    assert doc["format"] == "cloakroom-model" and doc["model"]["label"] == "outcome"
    frame = pd.read_csv(rows)
    predicted = sdk_models.estimator(doc).predict(sdk_models.design_matrix(doc, frame))
    assert np.mean(predicted == truth) >= 0.9
