"""Fixtures for job tests: a published dataset with a real encrypted file and a buyer's purchase."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import numpy as np
import pytest

from tests.conftest import client_for

SCHEMA_COLUMNS = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "income", "kind": "numeric", "lower": 0, "upper": 200000},
    {"name": "region", "kind": "categorical", "categories": ["north", "south", "east"]},
    {"name": "member", "kind": "boolean"},
]


def make_csv(n: int = 500, seed: int = 3) -> tuple[bytes, dict[str, np.ndarray]]:
    rs = np.random.RandomState(seed)
    cols = {
        "age": rs.randint(18, 90, n).astype(float),
        "income": np.round(rs.uniform(10000, 150000, n), 2),
        "region": rs.choice(["north", "south"], n),
        "member": rs.rand(n) < 0.4,
    }
    lines = ["age,income,region,member"]
    for i in range(n):
        lines.append(
            f"{cols['age'][i]:.0f},{cols['income'][i]:.2f},{cols['region'][i]},{'true' if cols['member'][i] else 'false'}"
        )
    return ("\n".join(lines) + "\n").encode(), cols


@pytest.fixture
def dp_dataset(owner, owner_client):
    data, cols = make_csv()
    upload = io.BytesIO(data)
    upload.name = "people.csv"
    meta = {
        "title": "People",
        "epsilon_cap": "10",
        "delta_cap": "0.00001",
        "price_per_epsilon": "10",
        "columns": SCHEMA_COLUMNS,
    }
    response = owner_client.post(
        "/api/v1/datasets/", {"file": upload, "metadata": json.dumps(meta)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    owner_client.post(f"/api/v1/datasets/{response.json()['id']}/publish/")
    from marketplace.models import Dataset

    dataset = Dataset.objects.get(pk=response.json()["id"])
    dataset.truth = cols
    return dataset


@pytest.fixture
def purchase(buyer, dp_dataset):
    from marketplace.services import purchase_create

    return purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("2"))


@pytest.fixture
def api(buyer):
    return client_for(buyer)
