"""The parts of bench/models.py that go through Cloakroom itself: the table listed and bought through the
real services, each model trained by ``POST /api/v1/jobs/`` (kind ``train``) with an API key, and the
released ``result.model`` read back with ``GET /api/v1/jobs/{id}/`` and scored by the client's own
``cloakroom_client.models`` (the buyer's side). Whatever engine the ``train`` kind runs is what is measured.

Import this module only after ``django.setup()`` (its imports reach the models). Celery tasks run in
this process (``CELERY_TASK_ALWAYS_EAGER``, which bench/models.py sets, or the tests' ``eager_tasks``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.models import CreditEntry
from accounts.services import api_key_create, user_signup, wallet_change
from bench.models_adult import Table
from cloakroom_client import models as client_models
from marketplace.services import DatasetInput, dataset_create, dataset_publish, purchase_create


@dataclass
class Listed:
    """A bought table: the buyer's API client and purchase."""

    api: APIClient
    purchase_id: int
    serial: int = 0


def prepare(table: Table, epsilon_each: Decimal) -> Listed:
    """An owner lists the table (Parquet upload, the declared schema, clipped to its bounds), a buyer
    with an API key buys ``epsilon_each`` of it."""
    suffix = uuid.uuid4().hex[:8]
    password = "bench " + uuid.uuid4().hex
    owner = user_signup(
        username=f"bench-owner-{suffix}", email=f"owner-{suffix}@bench.invalid", password=password, roles=["owner"]
    )
    buyer = user_signup(
        username=f"bench-buyer-{suffix}", email=f"buyer-{suffix}@bench.invalid", password=password, roles=["buyer"]
    )
    price = Decimal("1.00")
    wallet_change(user=buyer, amount=price * epsilon_each, kind=CreditEntry.Kind.ADJUSTMENT, memo="benchmark")
    _, api_key = api_key_create(user=buyer, name="benchmark")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(table.train, preserve_index=False), sink)
    dataset = dataset_create(
        owner=owner,
        data=DatasetInput(
            title=f"{table.name} (bench/models.py)",
            description=f"{table.name}, training split, for bench/models.py.",
            mode="dp",
            epsilon_cap=epsilon_each,
            delta_cap=Decimal("0.00001"),
            price_per_epsilon=price,
            row_count_public=False,
            clip_to_bounds=True,
            columns=table.columns,
        ),
        upload=SimpleUploadedFile("train.parquet", sink.getvalue().to_pybytes()),
    )
    dataset_publish(owner=owner, dataset_id=dataset.pk)
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=epsilon_each)
    api = APIClient(SERVER_NAME="127.0.0.1")  # one of the run's ALLOWED_HOSTS
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return Listed(api, purchase.pk)


def train(listed: Listed, table: Table, epsilon: float) -> dict:
    """One logistic regression on every feature, through the job API; the released ``result.model``.

    Each job's epsilon is ``epsilon`` plus a millionth per job of the run, so that no job is a free
    repeat (``reused``) of an earlier one with the same request."""
    listed.serial += 1
    spent = Decimal(repr(epsilon)) + listed.serial * Decimal("0.000001")
    body = {
        "purchase": listed.purchase_id,
        "kind": "train",
        "model": {"type": "logistic_regression", "features": table.features, "label": table.label},
        "epsilon": f"{spent:f}",
        "delta": "0",
    }
    response = listed.api.post("/api/v1/jobs/", body, format="json")
    if response.status_code != 202:
        raise RuntimeError(f"POST /api/v1/jobs/ answered {response.status_code}: {response.content[:500]!r}")
    job = response.json()
    if job.get("reused"):
        raise RuntimeError(f"job {job['id']} was a free repeat of an earlier one")
    released = listed.api.get(f"/api/v1/jobs/{job['id']}/").json()
    if released["status"] != "released":
        raise RuntimeError(f"job {job['id']} is {released['status']}: {released.get('error')}")
    return released["result"]["model"]


def accuracy(model: dict, table: Table) -> float:
    """The released model's test accuracy, as a buyer computes it: the client's estimator rebuilt from
    the parameters, on the client's design matrix of the raw test rows."""
    doc = {"model": model}
    predicted = client_models.estimator(doc).predict(client_models.design_matrix(doc, table.test))
    return float(np.mean(np.asarray(predicted).astype(str) == table.test[table.label].astype(str).to_numpy()))
