"""Fixtures for HE jobs: a table encrypted once per session with the owner CLI's encrypt_csv (sums and
products, two ciphertexts per column), and a published HE dataset made from it with a buyer's purchase."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import he as client_he
from tests.he.test_bundle_upload import complete, create, upload

ROWS = 5000  # two ciphertexts per column at N=8192
SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 50},
    {"name": "ward", "kind": "categorical", "categories": ["A", "B"]},
]


class EncryptedTable:
    def __init__(self, folder: Path, manifest: dict, keystore: Path, frame: pd.DataFrame):
        self.folder, self.manifest, self.keystore, self.frame = folder, manifest, keystore, frame

    def file(self, name: str) -> Path:
        return self.folder / name

    def names(self) -> list[str]:
        return [self.manifest["context"]["file"]] + [f["file"] for c in self.manifest["columns"] for f in c["files"]]


@pytest.fixture(scope="session")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("he_jobs_api")
    rng = np.random.default_rng(5)
    age = np.round(rng.uniform(0, 100, ROWS), 1)
    frame = pd.DataFrame(
        {
            "age": age,
            "bmi": np.round(np.clip(20 + 0.1 * age + rng.normal(0, 3, ROWS), 10, 50), 2),
            "ward": rng.choice(["A", "B"], ROWS),
        }
    )
    frame.to_csv(root / "t.csv", index=False)
    manifest = client_he.encrypt_csv(
        root / "t.csv", SCHEMA, root / "bundle", job_classes=("sum", "product"), keystore=root / "keys", progress=False
    )
    return EncryptedTable(root / "bundle", manifest, root / "keys", frame)


@pytest.fixture
def he_purchase(owner_client, buyer_client, table, private_storage):
    created = create(owner_client, table, epsilon_cap="10", row_count_public=True)
    assert created.status_code == 201, created.json()
    dataset_id = created.json()["id"]
    upload(owner_client, dataset_id, table)
    assert complete(owner_client, dataset_id).status_code == 200
    assert owner_client.post(f"/api/v1/datasets/{dataset_id}/publish/").status_code == 200
    bought = buyer_client.post("/api/v1/purchases/", {"dataset": dataset_id, "epsilon": "5"}, format="json")
    assert bought.status_code == 201, bought.json()
    return bought.json()["id"]


def submit(buyer_client, purchase_id, query, epsilon="1", capture=None, **extra):
    body = {"purchase": purchase_id, "query": query, "epsilon": epsilon, **extra}
    if capture is None:
        return buyer_client.post("/api/v1/jobs/", body, format="json")
    with capture(execute=True):
        return buyer_client.post("/api/v1/jobs/", body, format="json")
