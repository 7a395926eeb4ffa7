"""Writes for HE datasets: create one from a bundle manifest, receive its files, check it, escrow its key.

An HE dataset is a ``Dataset`` with mode "he". Its bundle (a public TenSEAL context and CKKS ciphertexts
made on the owner's machine, format v1) arrives in three steps:

1. :func:`he_dataset_create` checks the manifest and the metadata and creates the draft dataset with its
   declared columns (``bundle_status`` "uploading"). Nothing is written to disk yet.
2. :func:`bundle_file_upload` receives one file named in the manifest, streamed to disk in chunks while
   its size and sha256 are checked; a file that does not match is not kept. Uploading a file already
   present is a no-op, so a client resumes by asking :func:`~marketplace.he.selectors.bundle_state` what
   is missing.
3. :func:`bundle_complete` runs the checker (``python -m marketplace.he.checker``) in a subprocess with
   memory and time limits, and marks the bundle "ready" or "rejected" (deleting the rejected files).

Once the bundle is ready the owner may escrow the secret key (:func:`escrow_store`, sealed to the
platform's key-encryption key) so that the escrow worker releases jobs without the owner's key agent, and
take it back (:func:`escrow_remove`). Where the files live: :mod:`marketplace.he.storage`.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import User
from cloakroom_client.protocol.bundle import ManifestError, manifest_files, validate_manifest
from cloakroom_client.protocol.escrow import EscrowError, blob_key_id, key_id
from config.exceptions import Conflict, Forbidden, ValidationFailed
from marketplace.he import storage
from marketplace.he.sandbox import run_bundle_check
from marketplace.he.selectors import bundle_state, expected_files, he_dataset_get, kek_public_key, live_bundle
from marketplace.models import Column, Dataset
from marketplace.services import create_with_unique_slug
from marketplace.signals import key_escrowed

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class HeDatasetInput:
    title: str
    description: str
    epsilon_cap: Decimal
    delta_cap: Decimal
    price_per_epsilon: Decimal
    row_count_public: bool
    key_custody: str = Dataset.KeyCustody.OWNER


def _checked_manifest(manifest: Any) -> dict:
    """The manifest normalised by the format's rules and this server's size limits, or a 400 naming each problem."""
    try:
        return validate_manifest(
            manifest,
            max_file_bytes=settings.CLOAKROOM_MAX_BUNDLE_FILE_BYTES,
            max_total_bytes=settings.CLOAKROOM_MAX_BUNDLE_BYTES,
        )
    except ManifestError as exc:
        fields = {f"manifest.{path}": reasons for path, reasons in exc.problems.items()}
        too_large = "manifest.bytes" in fields and len(fields) == 1
        raise ValidationFailed(
            f"The bundle's manifest is not valid: {exc}",
            code="bundle_too_large" if too_large else "invalid_manifest",
            fields=fields,
        ) from None


def he_dataset_create(*, owner: User, data: HeDatasetInput, manifest: Any) -> tuple[Dataset, bool]:
    """Create a draft HE dataset from a checked manifest; returns ``(dataset, created)``.

    The columns, their declared bounds and categories come from the owner's manifest, never from the
    data (which the server cannot read anyway). When the owner already has a live upload of the same
    bundle (same ``bundle_id`` and manifest), that dataset is returned with ``created`` False, so a client
    that was interrupted resumes instead of starting over. Nothing is written to disk here.
    """
    if not owner.is_owner:
        raise Forbidden("Only accounts with the owner role can list datasets.", code="not_an_owner")
    if data.key_custody != Dataset.KeyCustody.OWNER:
        raise ValidationFailed(
            "key_custody: a dataset starts with the key on your machine ('owner'); to escrow it, upload the "
            "sealed key with PUT /api/v1/datasets/{id}/escrow/ once the bundle is ready (cloakroom he escrow).",
            fields={"key_custody": ["Must be 'owner' at creation; escrow the key once the bundle is ready."]},
        )
    checked = _checked_manifest(manifest)

    existing = live_bundle(owner=owner, bundle_id=checked["bundle_id"])
    if existing is not None:
        return _resume(existing, checked), False
    try:
        with transaction.atomic():
            dataset = create_with_unique_slug(
                owner=owner,
                title=data.title,
                description=data.description,
                mode=Dataset.Mode.HE,
                epsilon_cap=data.epsilon_cap,
                delta_cap=data.delta_cap,
                price_per_epsilon=data.price_per_epsilon,
                row_count_public=data.row_count_public,
                row_count=checked["rows"],
                bundle_id=checked["bundle_id"],
                bundle_manifest=checked,
                bundle_status=Dataset.BundleStatus.UPLOADING,
                key_custody=data.key_custody,
            )
            Column.objects.bulk_create(_columns(dataset, checked))
    except IntegrityError:
        # Two creates of the same bundle raced; the unique constraint let one through. Use it.
        existing = live_bundle(owner=owner, bundle_id=checked["bundle_id"])
        if existing is None:
            raise
        return _resume(existing, checked), False
    logger.info(
        "HE dataset %s created by %s: bundle %s, %d columns, %d files",
        dataset.pk,
        owner.pk,
        dataset.bundle_id,
        len(checked["columns"]),
        len(manifest_files(checked)),
    )
    return dataset, True


def _resume(existing: Dataset, checked: dict) -> Dataset:
    if existing.bundle_manifest != checked:
        raise Conflict(
            f"You already have dataset {existing.pk} for bundle {checked['bundle_id']} with a different manifest. "
            "Encrypt again (a new bundle id), or finish that upload.",
            code="bundle_exists",
            extra={"dataset": existing.pk},
        )
    return existing


def _columns(dataset: Dataset, manifest: dict) -> list[Column]:
    columns = []
    for position, c in enumerate(manifest["columns"]):
        kind = Column.Kind.BOOLEAN if c["kind"] == "boolean" else Column.Kind.NUMERIC
        columns.append(
            Column(
                dataset=dataset,
                position=position,
                name=c["name"],
                kind=kind,
                lower=float(c["lower"]),
                upper=float(c["upper"]),
                source=c["source"],
                category=c.get("category"),
            )
        )
    return columns


def _refuse_unless_uploading(dataset: Dataset) -> None:
    status = dataset.bundle_status
    if status == Dataset.BundleStatus.UPLOADING:
        return
    if status == Dataset.BundleStatus.REJECTED:
        raise Conflict(
            f"This bundle was rejected: {dataset.bundle_error} Fix the bundle and create a new dataset.",
            code="bundle_rejected",
        )
    if status == Dataset.BundleStatus.CHECKING:
        raise Conflict("This bundle is being checked; no more files are accepted.", code="bundle_checking")
    raise Conflict("This bundle is complete and checked; no more files are accepted.", code="bundle_ready")


def _expected_entry(dataset: Dataset, name: str, content_length: int | None) -> dict:
    """The manifest's entry for file ``name``, once the announced length is known to fit it."""
    entry = expected_files(dataset).get(name)
    if entry is None:
        raise ValidationFailed(
            f"{name!r} is not a file of this bundle; the manifest names context.bin and cNNN.NNNN.ct files.",
            code="unknown_file",
            fields={"name": ["Not a file named in the manifest."]},
        )
    cap = settings.CLOAKROOM_MAX_BUNDLE_FILE_BYTES
    if content_length is None:
        raise ValidationFailed(
            "Send the file as the raw request body with a Content-Length header.",
            code="length_required",
            fields={"body": ["Content-Length is required."]},
        )
    if content_length > cap:
        raise ValidationFailed(
            f"{name} is {content_length} bytes; the limit for one bundle file is {cap} bytes.",
            code="file_too_large",
            fields={"body": [f"Larger than the {cap}-byte limit."]},
        )
    if content_length != entry["bytes"]:
        raise ValidationFailed(
            f"{name} is {content_length} bytes; the manifest declares {entry['bytes']}.",
            code="size_mismatch",
            fields={"body": [f"The manifest declares {entry['bytes']} bytes."]},
        )
    return entry


def bundle_file_upload(
    *, owner: User, dataset_id: Any, name: str, stream: IO[bytes], content_length: int | None
) -> tuple[Dataset, bool]:
    """Receive one bundle file; returns ``(dataset, stored)``, where ``stored`` is False for a re-upload.

    The body is streamed and checked by :func:`marketplace.he.storage.receive_file`, which only ever puts
    a whole, matching file in place. A rejected file is the only thing refused: the files already
    accepted stay, so the client can fix or retry this one and resume.
    """
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    _refuse_unless_uploading(dataset)
    entry = _expected_entry(dataset, name, content_length)
    folder = storage.bundle_folder(dataset)
    received = storage.receive_file(folder, name, stream, size=entry["bytes"], sha256=entry["sha256"])
    if received is None:
        return dataset, False
    dataset.refresh_from_db(fields=["bundle_status"])
    if dataset.bundle_status == Dataset.BundleStatus.REJECTED:
        # A rejection deleted the folder while this file was in flight; leave nothing behind.
        storage.delete_bundle(folder)
        raise Conflict("This bundle was rejected while the file arrived.", code="bundle_rejected")
    logger.info("HE dataset %s: received %s (%d bytes)", dataset.pk, name, received)
    return dataset, True


def bundle_complete(*, owner: User, dataset_id: Any) -> Dataset:
    """Check the uploaded bundle and mark it ready, or rejected with a reason the owner can act on.

    The check runs synchronously, in this request, in a subprocess with memory and time limits (see
    :func:`marketplace.he.sandbox.run_bundle_check`). That suits the small bundles of today; large bundles
    should move the check to a worker task (queue ``he``) and let the client poll the bundle's state.

    ``bundle_status`` moves uploading -> checking by a conditional UPDATE, so two concurrent calls cannot
    both run the check. A rejected bundle's files are deleted; the dataset stays, with ``bundle_error``.
    """
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    if dataset.bundle_status == Dataset.BundleStatus.READY:
        return dataset
    _refuse_unless_uploading(dataset)
    missing = bundle_state(dataset=dataset)["missing"]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise Conflict(
            f"{len(missing)} file(s) of the bundle are still missing: {shown}.",
            code="bundle_incomplete",
            extra={"missing": missing},
        )
    claimed = Dataset.objects.filter(pk=dataset.pk, bundle_status=Dataset.BundleStatus.UPLOADING).update(
        bundle_status=Dataset.BundleStatus.CHECKING
    )
    if not claimed:
        raise Conflict("This bundle is already being checked.", code="bundle_checking")

    folder = storage.bundle_folder(dataset)
    try:
        storage.write_manifest(folder, dataset.bundle_manifest)
        result = run_bundle_check(folder)
    except BaseException:
        # Our own failure, not the bundle's: let the owner try again.
        Dataset.objects.filter(pk=dataset.pk).update(bundle_status=Dataset.BundleStatus.UPLOADING)
        raise
    if result["ok"]:
        Dataset.objects.filter(pk=dataset.pk).update(bundle_status=Dataset.BundleStatus.READY, bundle_error="")
        dataset.refresh_from_db()
        logger.info("HE dataset %s: bundle %s checked and ready", dataset.pk, dataset.bundle_id)
        return dataset

    errors = [str(e) for e in result["errors"]] or ["The bundle was rejected."]
    reason = " ".join(errors)[:MAX_ERROR_CHARS]
    storage.delete_bundle(folder)
    Dataset.objects.filter(pk=dataset.pk).update(bundle_status=Dataset.BundleStatus.REJECTED, bundle_error=reason)
    logger.warning("HE dataset %s: bundle %s rejected: %s", dataset.pk, dataset.bundle_id, reason)
    raise ValidationFailed(
        f"The bundle was rejected and its files deleted: {reason}",
        code="bundle_rejected",
        fields={"bundle": errors},
    )


def escrow_store(*, owner: User, dataset_id: Any, blob: bytes) -> Dataset:
    """Keep an owner's sealed secret key and hand the dataset's releases to the escrow worker.

    The blob is checked by its header only (its KEK must be the platform's current one); nobody here
    can open it. It is written atomically beside the bundle. Once this commits,
    :data:`marketplace.signals.key_escrowed` is sent with the dataset; compute's receiver queues the jobs
    already waiting for the key for the escrow worker.
    """
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    if dataset.bundle_status != Dataset.BundleStatus.READY:
        raise Conflict("Escrow the key once the bundle is ready.", code="bundle_not_ready")
    if len(blob) > storage.MAX_ESCROW_BYTES:
        raise ValidationFailed(
            f"body: a sealed key is at most {storage.MAX_ESCROW_BYTES} bytes.", fields={"body": ["Too large."]}
        )
    try:
        sealed_to = blob_key_id(blob)
    except EscrowError as exc:
        raise ValidationFailed(f"body: {exc}.", fields={"body": [str(exc)]}) from None
    if sealed_to != key_id(base64.b64decode(kek_public_key())):
        raise ValidationFailed(
            "body: the key is sealed to another key-encryption key; fetch GET /api/v1/he/escrow-key/ and seal again.",
            fields={"body": ["Sealed to another key-encryption key."]},
        )
    storage.write_escrow(dataset, blob)
    Dataset.objects.filter(pk=dataset.pk).update(key_custody=Dataset.KeyCustody.ESCROW)
    dataset.refresh_from_db()
    transaction.on_commit(lambda: key_escrowed.send(sender=Dataset, dataset=dataset))
    logger.info("dataset %s: secret key escrowed (sealed, %d bytes)", dataset.pk, len(blob))
    return dataset


def escrow_remove(*, owner: User, dataset_id: Any) -> Dataset:
    """Take the key back: delete the sealed key; releases wait for the owner's key agent again."""
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    storage.delete_escrow(dataset)
    Dataset.objects.filter(pk=dataset.pk).update(key_custody=Dataset.KeyCustody.OWNER)
    dataset.refresh_from_db()
    return dataset
