"""An HE job's plan and its files on disk, shared by the steps of the HE ``query`` kind.

The plan is recomputed from the job's stored query and the dataset's manifest (both immutable) each
time a step needs it, so that no step trusts a plan another process wrote down. A job's partial and
final aggregates live beside the bundle, in the private storage root; workers hold only the public
TenSEAL context, loaded after the fork.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from cloakroom_client.protocol.errors import QueryError
from compute.engines.he import plan as server_plan
from compute.kinds.base import query_error
from compute.models import Job
from config.exceptions import Conflict, ValidationFailed
from marketplace.he import bundle_folder
from marketplace.models import Dataset

_CONTEXTS: OrderedDict[tuple[int, str], Any] = OrderedDict()
_CONTEXT_CACHE_SIZE = 4


def he_query_plan(*, dataset: Dataset, query: Any, epsilon: float) -> server_plan.Plan:
    """The server's plan of an HE query; raises the engine's QueryError when the query does not fit."""
    return server_plan.plan(
        query,
        dataset.bundle_manifest,
        epsilon,
        max_weights=settings.CLOAKROOM_HE_MAX_WEIGHTS,
        max_weight=settings.CLOAKROOM_HE_MAX_WEIGHT,
        public_rows=dataset.row_count_public,
    )


def job_plan(job: Job) -> server_plan.Plan:
    """The job's plan, recomputed from its stored query and the dataset's manifest."""
    return he_query_plan(dataset=job.dataset, query=job.spec, epsilon=float(job.epsilon))


def he_query_check(*, dataset: Dataset, query: Any, eps: Decimal, dlt: Decimal) -> server_plan.Plan:
    """Validate a query on an HE dataset (a 400 naming the field when it does not fit)."""
    if dlt:
        raise ValidationFailed(
            "delta: HE jobs use pure epsilon (Laplace and geometric noise); send 0.",
            fields={"delta": ["HE jobs use pure epsilon; send 0."]},
        )
    if dataset.bundle_status != Dataset.BundleStatus.READY:
        raise Conflict("This dataset's encrypted bundle is not ready.", code="dataset_unavailable")
    try:
        return he_query_plan(dataset=dataset, query=query, epsilon=float(eps))
    except QueryError as exc:
        raise query_error(exc) from None


def job_folder(job: Job) -> Path:
    """Where a job's partial and final aggregates live: beside the bundle, in the private root."""
    return bundle_folder(job.dataset) / "jobs" / str(job.pk)


def aggregate_path(job: Job, name: str) -> Path:
    return job_folder(job) / f"{name}.ct"


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it: a reader sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_job_files(job: Job) -> None:
    shutil.rmtree(job_folder(job), ignore_errors=True)


def public_context(dataset: Dataset) -> Any:
    """The dataset's public context, loaded once per worker process (after the fork, never before)."""
    import tenseal as ts  # lazy: only the he workers load TenSEAL, and only after they fork

    key = (dataset.pk, dataset.bundle_manifest["context"]["sha256"])
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        data = (bundle_folder(dataset) / dataset.bundle_manifest["context"]["file"]).read_bytes()
        ctx = ts.context_from(data, n_threads=1)
        if ctx.is_private():  # the bundle check refuses these; never compute with a secret key here
            raise RuntimeError("the stored context holds a secret key")
        _CONTEXTS[key] = ctx
        while len(_CONTEXTS) > _CONTEXT_CACHE_SIZE:
            _CONTEXTS.popitem(last=False)
    else:
        _CONTEXTS.move_to_end(key)
    return ctx
