"""The parts of bench/dp_jobs.py that go through the project's own code: listing and buying the
datasets through the real services, and timing the loader and the engine in this process.

Import this module only after ``django.setup()``: its imports reach the models, which Django refuses
to load before it is set up, and setting it up needs the settings of the run (bench/dp_jobs.py puts
them in the environment first).
"""

from __future__ import annotations

import statistics
import time
import uuid
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connections
from dp_engine import QUERIES, SCHEMA, frame, timed
from dp_jobs_report import Listing

from accounts.models import CreditEntry
from accounts.services import api_key_create, user_signup, wallet_change
from compute.engines import dp
from marketplace import datafiles, storage
from marketplace.models import Dataset
from marketplace.services import DatasetInput, dataset_create, dataset_publish, purchase_create

# The declared schema of the uploaded datasets: literals from dp_engine.SCHEMA, never read off data.
COLUMNS = [
    {"name": "income", "kind": "numeric", "lower": SCHEMA["income"].lower, "upper": SCHEMA["income"].upper},
    {"name": "region", "kind": "categorical", "categories": list(SCHEMA["region"].categories)},
]


def prepare(sizes: list[int], epsilon_each: Decimal) -> tuple[str, list[Listing]]:
    """Migrate, then create an owner, a buyer with an API key, and one bought dataset per size."""
    call_command("migrate", verbosity=0, interactive=False)
    password = "bench " + uuid.uuid4().hex
    owner = user_signup(username="bench-owner", email="owner@bench.invalid", password=password, roles=["owner"])
    buyer = user_signup(username="bench-buyer", email="buyer@bench.invalid", password=password, roles=["buyer"])
    price = Decimal("1.00")
    wallet_change(
        user=buyer, amount=price * epsilon_each * len(sizes), kind=CreditEntry.Kind.ADJUSTMENT, memo="benchmark"
    )
    _, api_key = api_key_create(user=buyer, name="benchmark")

    listings = []
    for n in sizes:
        f = frame(n)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(f, preserve_index=False), sink)
        upload = SimpleUploadedFile(f"bench-{n}.parquet", sink.getvalue().to_pybytes())
        started = time.perf_counter()
        dataset = dataset_create(
            owner=owner,
            data=DatasetInput(
                title=f"Benchmark {n} rows",
                description="Synthetic incomes by region for bench/dp_jobs.py.",
                mode="dp",
                epsilon_cap=epsilon_each,
                delta_cap=Decimal("0.00001"),
                price_per_epsilon=price,
                row_count_public=False,
                clip_to_bounds=False,
                columns=COLUMNS,
            ),
            upload=upload,
        )
        dataset_publish(owner=owner, dataset_id=dataset.pk)
        seconds = time.perf_counter() - started
        purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=epsilon_each)
        listings.append(Listing(n, f, dataset.pk, purchase.pk, seconds))
    # This process holds no connection while the servers run, so the database can be dropped.
    connections.close_all()
    return api_key, listings


def in_process_times(listing: Listing, repeats: int, epsilon: float) -> tuple[float, float, dict[str, float]]:
    """Cold load (decrypt + Parquet decode + Categoricals) and the decrypt alone, then the engine's
    median per query on the loaded columns: the worker's work without the queue and the database."""
    dataset = Dataset.objects.get(pk=listing.dataset_id)
    schema = datafiles.dataset_schema(dataset)
    loads, decrypts = [], []
    for _ in range(3):
        datafiles.clear_cache()
        t = time.perf_counter()
        storage.read_decrypted(dataset.file_path)
        decrypts.append(time.perf_counter() - t)
        t = time.perf_counter()
        columns = datafiles.dataset_columns(dataset, schema)
        loads.append(time.perf_counter() - t)
    engine = {}
    for name, (raw, _) in QUERIES.items():
        query = dp.parse_query(raw, schema)
        engine[name], _ = timed(lambda q=query: dp.run(columns, schema, q, epsilon), repeats)
    datafiles.clear_cache()
    connections.close_all()
    return statistics.median(loads), statistics.median(decrypts), engine
