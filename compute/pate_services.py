"""Submitting a PATE job to an ensemble (docs/PATE.md): check the buyer's table and spec, reserve the
same rho on every member dataset, hold the credits, create the job and queue it on ``ml``.

The table is untrusted input, checked like any upload (marketplace/ingest) against the ensemble's
declared features: size-capped, parsed as CSV or Parquet only, every declared feature present and within
its declared bounds and categories; only those columns are kept. It is stored encrypted at rest in the
private storage root like a dataset's file, never served by any URL, and deleted once the job is done.
A refusal anywhere leaves no job, no ledger row, no credit move and no file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import User
from compute.engines import accounting
from compute.kinds.base import query_error
from compute.kinds.pate import epsilon_of
from compute.models import Job
from compute.pate_budget import members_record, members_reserve
from compute.pate_payment import payment_hold, payment_hold_amount
from compute.pate_student import student_flag
from compute.services import job_send
from config.exceptions import Conflict, Forbidden, ValidationFailed
from config.lookups import get_or_404
from marketplace import storage
from marketplace.ensembles.selectors import ensemble_member_datasets
from marketplace.ingest import ColumnSpec, UploadRejected, ingest
from marketplace.models import Ensemble
from marketplace.parsers import json_loads_strict
from marketplace.services import read_upload

logger = logging.getLogger(__name__)


def _spec_body(raw: Any) -> Any:
    """The ``spec`` part: a JSON object (text in a multipart form), or nothing for every default."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str):
        raw = json_loads_strict(raw, "spec")
    if not isinstance(raw, dict):
        raise ValidationFailed(
            "spec: must be a JSON object.", code="invalid_query", fields={"spec": ["Must be an object."]}
        )
    return raw


def _checked_table(ensemble: Ensemble, upload: Any) -> tuple[bytes, int]:
    """The buyer's rows checked against the ensemble's features, as the Parquet bytes to store."""
    if upload is None:
        raise ValidationFailed(
            "Attach the unlabelled rows as the 'file' part.", fields={"file": ["No file was submitted."]}
        )
    raw = read_upload(upload)
    specs = [
        ColumnSpec(
            name=f["name"],
            kind=f["kind"],
            lower=f.get("lower"),
            upper=f.get("upper"),
            categories=tuple(f.get("categories") or ()),
        )
        for f in ensemble.features
    ]
    try:
        result = ingest(raw, specs, filename=getattr(upload, "name", ""))
    except UploadRejected as exc:
        raise ValidationFailed(
            "file: the rows do not match the ensemble's features: " + "; ".join(exc.problems),
            code=exc.code,
            fields={"file": exc.problems},
        ) from None
    if result.row_count == 0:
        raise ValidationFailed("file: the table has no rows.", code="empty_file", fields={"file": ["No rows."]})
    return result.to_parquet_bytes(), result.row_count


def pate_submit(
    *, buyer: User, ensemble_id: Any, upload: Any, spec: Any, idempotency_key: str | None = None
) -> tuple[Job, bool]:
    """Validate, reserve every member's budget, hold the credits and queue a PATE job. Returns
    ``(job, created)``; ``created`` is False when the same ``Idempotency-Key`` answered before."""
    from compute.engines import pate as engine  # it imports scikit-learn: loaded on a first submission only

    if not buyer.is_buyer:
        raise Forbidden("Only accounts with the buyer role can submit jobs.", code="not_a_buyer")
    ensemble = get_or_404(Ensemble.objects, message="No such ensemble.", pk=ensemble_id)
    if idempotency_key:
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier, False
    # ``student`` is the marketplace's, not the engine's: a post-processing of the labels (pate_student.py).
    body, student = student_flag(_spec_body(spec))
    data, rows = _checked_table(ensemble, upload)
    datasets = ensemble_member_datasets(ensemble=ensemble)
    if not datasets:
        raise Conflict("This ensemble has no published member dataset to label with.", code="ensemble_empty")
    delta = min(d.delta_cap for d in datasets)
    try:
        parsed = engine.parse_spec(body, rows, delta=float(delta))
        # The data-independent bound for max_queries, rounded up as the ledger stores it.
        rho = accounting.rho_charge(engine.reserved_rho(parsed))
    except engine.QueryError as exc:
        raise query_error(exc) from None
    price = ensemble.price_per_label
    canonical = {
        "pate": parsed.canonical(),
        "members": [d.pk for d in datasets],
        "rows": rows,
        "max_queries": parsed.max_queries,
        "price_per_label": f"{price:f}",
    }
    if student:
        canonical["student"] = True
    hold = payment_hold_amount(price_per_label=price, max_queries=parsed.max_queries)
    path = storage.store_encrypted(data, folder="pate-inputs")
    try:
        with transaction.atomic():
            charges = members_reserve(dataset_ids=[d.pk for d in datasets], rho=rho)
            job = Job.objects.create(
                buyer=buyer,
                dataset=datasets[0],
                purchase=None,
                ensemble=ensemble,
                kind=Job.Kind.PATE,
                spec=canonical,
                spec_hash=hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest(),
                epsilon=epsilon_of(rho, delta),
                delta=delta,
                rho=rho,
                dataset_version=datasets[0].version,
                idempotency_key=idempotency_key or None,
                input_path=path,
            )
            members_record(job, charges)
            payment_hold(job)
            transaction.on_commit(lambda: job_send(job))
    except IntegrityError:
        storage.delete_stored(path)
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier, False
    except BaseException:
        storage.delete_stored(path)
        raise
    logger.info(
        "job %s queued: PATE on ensemble %s for buyer %s, %s members, rho %s, %s credits held",
        job.pk,
        ensemble.pk,
        buyer.pk,
        len(datasets),
        rho,
        hold,
    )
    return job, True
