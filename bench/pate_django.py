"""bench/pate.py's ``--through-api`` runner: the same Adult split, but through Cloakroom itself.

Three owners each list their part of ``adult.data`` (a Parquet upload with the declared schema, clipped
to its bounds, row count public) through the real services; the first creates an ensemble and the other
two join it through ``POST /api/v1/ensembles/`` and ``/{id}/members/`` with their API keys. For each run
a buyer posts its 1,500 unlabelled rows and the setting's ``spec`` body (with ``"student": true``) to
``POST /api/v1/ensembles/{id}/jobs/``; the ``pate`` kind runs in this process (``CELERY_TASK_ALWAYS_EAGER``,
which bench/pate.py sets), and the released job is read back with ``GET /api/v1/jobs/{id}/``. A run's
numbers come from the release and the ledger only: the labels, ``answered`` and ``asked``, the epsilon
committed on each member (the ledger's commit rows, which must agree), the one reserved (the job's), and
the student scored by the client's estimator rebuilt from ``GET /api/v1/jobs/{id}/model/``. The API
releases no data-dependent epsilon, so those columns stay empty.

Import this module only after ``django.setup()`` (its imports reach the models).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from accounts.models import CreditEntry
from accounts.services import api_key_create, user_signup, wallet_change
from bench.models_adult import Table, labels
from cloakroom_client import models as client_models
from compute.engines import pate
from marketplace.models import LedgerEntry
from marketplace.services import DatasetInput, dataset_create, dataset_publish

EPSILON_CAP = Decimal("1000")  # room for every run of every setting on each member
PRICE_PER_LABEL = Decimal("0.01")


def _client(user: Any) -> APIClient:
    _, key = api_key_create(user=user, name="benchmark")
    api = APIClient(SERVER_NAME="127.0.0.1")  # one of the run's ALLOWED_HOSTS
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def _check(response: Any, status: int, what: str) -> dict:
    if response.status_code != status:
        raise RuntimeError(f"{what} answered {response.status_code}: {response.content[:500]!r}")
    return response.json()


def clipped(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    """The buyer's table as it uploads it: the features only, numeric ones clipped to the declared bounds
    (the upload check refuses a value outside them; the job's encoding clips them the same way)."""
    out = frame[table.features].copy()
    for column in table.columns:
        if column["kind"] == "numeric":
            out[column["name"]] = out[column["name"]].clip(column["lower"], column["upper"])
    return out


@dataclass
class ApiRunner:
    """The three owners' ensemble and a buyer with an API key; ``__call__`` is bench/pate.py's Runner."""

    table: Table
    ensemble_id: int
    buyer: APIClient
    unlabelled: bytes  # the buyer's rows as CSV
    evaluation: pd.DataFrame
    bodies: dict[pate.PateSpec, dict[str, Any]] = field(default_factory=dict)

    def for_settings(self, settings: Any, rows: int, delta: float) -> ApiRunner:
        """Post each setting's own ``spec`` body (not its parsed form) for the spec measure() passes."""
        self.bodies = {pate.parse_spec(s.spec, rows, delta=delta): dict(s.spec) for s in settings}
        return self

    def __call__(self, split: Any, spec: pate.PateSpec) -> Any:
        from bench.pate import Run

        body = {**self.bodies.get(spec, spec.canonical()), "student": True}
        t = time.perf_counter()
        upload = SimpleUploadedFile("rows.csv", self.unlabelled, content_type="text/csv")
        job = _check(
            self.buyer.post(
                f"/api/v1/ensembles/{self.ensemble_id}/jobs/",
                {"file": upload, "spec": json.dumps(body)},
                format="multipart",
            ),
            202,
            "POST /api/v1/ensembles/{id}/jobs/",
        )
        released = _check(self.buyer.get(f"/api/v1/jobs/{job['id']}/"), 200, "GET /api/v1/jobs/{id}/")
        run_seconds = time.perf_counter() - t
        if released["status"] != "released":
            raise RuntimeError(f"job {job['id']} is {released['status']}: {released.get('error')}")
        result = released["result"]
        got = np.array(result["labels"], dtype=object)
        mask = np.array([v is not None for v in result["labels"]])
        commits = LedgerEntry.objects.filter(job_id=job["id"], kind=LedgerEntry.Kind.COMMIT)
        charged = {float(c.epsilon) for c in commits}
        if commits.count() != len(released["pate"]["members"]) or len(charged) != 1:
            raise RuntimeError(f"job {job['id']}: the members' commits differ: {sorted(charged)}")
        doc = _check(self.buyer.get(f"/api/v1/jobs/{job['id']}/model/"), 200, "GET /api/v1/jobs/{id}/model/")
        predicted = client_models.estimator(doc).predict(client_models.design_matrix(doc, self.evaluation))
        truth = labels(self.table, self.evaluation)
        return Run(
            asked=int(result["asked"]),
            answered=int(result["answered"]),
            label_accuracy=float(np.mean(got[mask] == split.query_labels[mask])),
            student_accuracy=float(np.mean(np.asarray(predicted).astype(str) == truth)),
            epsilon_charged=charged.pop(),
            epsilon_reserved=float(released["epsilon"]),
            run_seconds=run_seconds,
            student_seconds=None,
        )


def prepare(table: Table, owners: list[pd.DataFrame], buyer: pd.DataFrame, evaluation: pd.DataFrame) -> ApiRunner:
    """Three owners list their parts and join them into an ensemble; a buyer gets credits and a key."""
    suffix = uuid.uuid4().hex[:8]
    password = "bench " + uuid.uuid4().hex
    clients, dataset_ids = [], []
    for k, part in enumerate(owners):
        owner = user_signup(
            username=f"bench-owner{k}-{suffix}",
            email=f"o{k}-{suffix}@bench.invalid",
            password=password,
            roles=["owner"],
        )
        dataset = dataset_create(
            owner=owner,
            data=DatasetInput(
                title=f"{table.name}, owner {k + 1} (bench/pate.py)",
                description=f"Owner {k + 1}'s part of {table.name}'s training split, for bench/pate.py.",
                mode="dp",
                epsilon_cap=EPSILON_CAP,
                delta_cap=Decimal("0.00001"),
                price_per_epsilon=Decimal("1.00"),
                row_count_public=True,  # the teachers follow the owners' public sizes, as the engine runs do
                clip_to_bounds=True,
                columns=table.columns,
            ),
            upload=SimpleUploadedFile(f"owner{k}.parquet", _parquet(part)),
        )
        dataset_publish(owner=owner, dataset_id=dataset.pk)
        clients.append(_client(owner))
        dataset_ids.append(dataset.pk)
    body = {
        "title": f"{table.name} (bench/pate.py)",
        "dataset": dataset_ids[0],
        "price_per_label": f"{PRICE_PER_LABEL}",
    }
    ensemble = _check(clients[0].post("/api/v1/ensembles/", body, format="json"), 201, "POST /api/v1/ensembles/")
    for client, dataset_id in zip(clients[1:], dataset_ids[1:], strict=True):
        path = f"/api/v1/ensembles/{ensemble['id']}/members/"
        _check(client.post(path, {"dataset": dataset_id}, format="json"), 201, "POST /api/v1/ensembles/{id}/members/")
    listed = _check(clients[0].get(f"/api/v1/ensembles/{ensemble['id']}/"), 200, "GET /api/v1/ensembles/{id}/")
    if sorted(m["dataset"] for m in listed["members"]) != sorted(dataset_ids):
        raise RuntimeError(f"the ensemble lists {listed['members']}, not the three owners' datasets")
    user = user_signup(
        username=f"bench-buyer-{suffix}", email=f"buyer-{suffix}@bench.invalid", password=password, roles=["buyer"]
    )
    wallet_change(user=user, amount=Decimal("100000"), kind=CreditEntry.Kind.ADJUSTMENT, memo="benchmark")
    text = io.StringIO()
    clipped(table, buyer).to_csv(text, index=False)
    return ApiRunner(table, ensemble["id"], _client(user), text.getvalue().encode(), evaluation)
