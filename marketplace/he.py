"""Services for HE datasets: create one from a bundle manifest, receive its files, check it, read its state.

An HE dataset is a ``Dataset`` with mode "he". Its bundle (a public TenSEAL context and CKKS ciphertexts
made on the owner's machine, format v1) arrives in three steps:

1. :func:`he_dataset_create` checks the manifest and the metadata and creates the draft dataset with its
   declared columns (``bundle_status`` "uploading"). Nothing is written to disk yet.
2. :func:`bundle_file_upload` receives one file named in the manifest, streamed to disk in chunks while
   its size and sha256 are checked; a file that does not match is not kept. Uploading a file already
   present is a no-op, so a client resumes by asking :func:`bundle_state` what is missing.
3. :func:`bundle_complete` runs the checker (``python -m marketplace.he_check``) in a subprocess with
   memory and time limits, and marks the bundle "ready" or "rejected" (deleting the rejected files).

Files live in the private storage root under ``he/<dataset id>/``, which no URL serves. They are not
encrypted again at rest: the ciphertexts are CKKS encryptions under the owner's key and the context is
public, so the platform holds nothing it could read, and a second layer would only cost time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from accounts.models import User
from cloakroom_client.protocol.bundle import MANIFEST_FILE, ManifestError, manifest_files, validate_manifest
from config.exceptions import Conflict, Forbidden, NotFound, ValidationFailed
from marketplace.models import Column, Dataset
from marketplace.services import create_with_unique_slug

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
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


def bundle_folder(dataset: Dataset) -> Path:
    """The dataset's folder in the private storage root.

    The checker subprocess reads the bundle from a local folder, so this needs a filesystem storage;
    an object store would download the bundle to a scratch folder first.
    """
    return Path(default_storage.path(f"he/{dataset.pk}"))


def he_dataset_get(*, owner: User, dataset_id: Any) -> Dataset:
    """The caller's own HE dataset; anyone else's, or a DP dataset, is a 404."""
    try:
        return Dataset.objects.get(pk=dataset_id, owner=owner, mode=Dataset.Mode.HE)
    except (Dataset.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such HE dataset.") from None


def _expected_files(dataset: Dataset) -> dict[str, dict]:
    return {entry["file"]: entry for entry in manifest_files(dataset.bundle_manifest)}


def _present(dataset: Dataset) -> set[str]:
    folder = bundle_folder(dataset)
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def bundle_state(*, dataset: Dataset) -> dict:
    """What the server expects, what it holds, and what is still missing (a read; no side effects)."""
    present = _present(dataset) if dataset.bundle_status == Dataset.BundleStatus.UPLOADING else set()
    if dataset.bundle_status in (Dataset.BundleStatus.CHECKING, Dataset.BundleStatus.READY):
        present = set(_expected_files(dataset))
    files = [
        {"file": e["file"], "bytes": e["bytes"], "sha256": e["sha256"], "present": e["file"] in present}
        for e in manifest_files(dataset.bundle_manifest)
    ]
    return {
        "files": files,
        "missing": [f["file"] for f in files if not f["present"]],
        "bytes_total": sum(f["bytes"] for f in files),
        "bytes_present": sum(f["bytes"] for f in files if f["present"]),
    }


def _manifest_fields(exc: ManifestError) -> dict[str, list[str]]:
    return {f"manifest.{path}": reasons for path, reasons in exc.problems.items()}


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
    try:
        checked = validate_manifest(
            manifest,
            max_file_bytes=settings.CLOAKROOM_MAX_BUNDLE_FILE_BYTES,
            max_total_bytes=settings.CLOAKROOM_MAX_BUNDLE_BYTES,
        )
    except ManifestError as exc:
        fields = _manifest_fields(exc)
        too_large = "manifest.bytes" in fields and len(fields) == 1
        raise ValidationFailed(
            f"The bundle's manifest is not valid: {exc}",
            code="bundle_too_large" if too_large else "invalid_manifest",
            fields=fields,
        ) from None

    existing = _live_bundle(owner, checked["bundle_id"])
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
        existing = _live_bundle(owner, checked["bundle_id"])
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


def _live_bundle(owner: User, bundle_id: str) -> Dataset | None:
    return (
        Dataset.objects.filter(owner=owner, mode=Dataset.Mode.HE, bundle_id=bundle_id)
        .exclude(bundle_status=Dataset.BundleStatus.REJECTED)
        .first()
    )


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


def bundle_file_upload(
    *, owner: User, dataset_id: Any, name: str, stream: IO[bytes], content_length: int | None
) -> tuple[Dataset, bool]:
    """Receive one bundle file; returns ``(dataset, stored)``, where ``stored`` is False for a re-upload.

    The body is streamed to a temporary file beside its final place, one chunk at a time (never whole in
    memory), while its length and sha256 are checked against the manifest. Only a file that matches is
    renamed into place (an atomic rename), so a rejected, interrupted or concurrent upload never leaves a
    partial or wrong file where the checker would read it. A rejected file is the only thing refused: the
    files already accepted stay, so the client can fix or retry this one and resume.
    """
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    _refuse_unless_uploading(dataset)
    entry = _expected_files(dataset).get(name)
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

    folder = bundle_folder(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = folder / f".{name}.{uuid.uuid4().hex}.part"
    try:
        digest, received = hashlib.sha256(), 0
        with open(partial, "wb") as out:
            while received < content_length:
                chunk = stream.read(min(CHUNK_BYTES, content_length - received))
                if not chunk:
                    break
                received += len(chunk)
                digest.update(chunk)
                out.write(chunk)
        if received != entry["bytes"]:
            raise ValidationFailed(
                f"{name}: received {received} of {entry['bytes']} bytes; the upload was cut short. Send it again.",
                code="incomplete_upload",
                fields={"body": [f"Received {received} of {entry['bytes']} bytes."]},
            )
        if digest.hexdigest() != entry["sha256"]:
            raise ValidationFailed(
                f"{name} does not match its sha256 in the manifest; the file differs from the one encrypted.",
                code="hash_mismatch",
                fields={"body": ["The sha256 differs from the manifest's."]},
            )
        if final.exists():
            return dataset, False
        os.replace(partial, final)
    except FileNotFoundError:
        # The folder vanished under us: the bundle was rejected (and deleted) while this file arrived.
        raise Conflict("The bundle changed state during the upload; ask for its state.", code="bundle_changed")
    finally:
        partial.unlink(missing_ok=True)
    dataset.refresh_from_db(fields=["bundle_status"])
    if dataset.bundle_status == Dataset.BundleStatus.REJECTED:
        # A rejection deleted the folder while this file was in flight; leave nothing behind.
        shutil.rmtree(folder, ignore_errors=True)
        raise Conflict("This bundle was rejected while the file arrived.", code="bundle_rejected")
    logger.info("HE dataset %s: received %s (%d bytes)", dataset.pk, name, received)
    return dataset, True


def bundle_complete(*, owner: User, dataset_id: Any) -> Dataset:
    """Check the uploaded bundle and mark it ready, or rejected with a reason the owner can act on.

    The check runs synchronously, in this request, in a subprocess with memory and time limits (see
    :func:`run_bundle_check`). That suits the small bundles of today; large bundles should move the check
    to a worker task (queue ``he``) and let the client poll the bundle's state.

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

    folder = bundle_folder(dataset)
    try:
        (folder / MANIFEST_FILE).write_text(json.dumps(dataset.bundle_manifest), encoding="utf-8")
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
    shutil.rmtree(folder, ignore_errors=True)
    Dataset.objects.filter(pk=dataset.pk).update(bundle_status=Dataset.BundleStatus.REJECTED, bundle_error=reason)
    logger.warning("HE dataset %s: bundle %s rejected: %s", dataset.pk, dataset.bundle_id, reason)
    raise ValidationFailed(
        f"The bundle was rejected and its files deleted: {reason}",
        code="bundle_rejected",
        fields={"bundle": errors},
    )


def run_bundle_check(folder: Path) -> dict:
    """Run ``python -m marketplace.he_check <folder>`` in a fresh subprocess; return ``{"ok", "errors"}``.

    The child sets its own address-space and CPU limits before it touches the bundle, and the wall-clock
    timeout kills it if it hangs, so no bundle can crash or hang the calling process. The child gets a
    bare environment: it needs no settings and must never see the platform's secrets.
    """
    timeout = settings.CLOAKROOM_BUNDLE_CHECK_TIMEOUT
    command = [
        sys.executable,
        "-m",
        "marketplace.he_check",
        str(folder),
        "--memory-bytes",
        str(settings.CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES),
        "--cpu-seconds",
        str(max(1, math.ceil(timeout))),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(settings.BASE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        # One thread each: fewer threads reserve less address space under the child's memory limit.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            cwd=str(settings.BASE_DIR),
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "errors": [
                f"Checking the bundle took longer than {timeout} s and was stopped; the files may be malformed."
            ],
        }
    if completed.returncode < 0:
        try:
            name = signal.Signals(-completed.returncode).name
        except ValueError:
            name = f"signal {-completed.returncode}"
        logger.warning("bundle checker for %s stopped by %s", folder.name, name)
        return {
            "ok": False,
            "errors": [
                f"Reading the bundle crashed the checker ({name}): a file is malformed, or needs more memory "
                "or CPU time than allowed."
            ],
        }
    lines = completed.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
        ok, errors = result["ok"], result["errors"]
        if not isinstance(ok, bool) or not isinstance(errors, list):
            raise ValueError("bad shape")
    except (IndexError, ValueError, KeyError, TypeError):
        logger.warning("bundle checker for %s exited %s without a result", folder.name, completed.returncode)
        return {"ok": False, "errors": ["The checker could not read the bundle (it stopped without an answer)."]}
    if completed.returncode != 0 and ok:
        return {"ok": False, "errors": ["The checker failed while reading the bundle."]}
    return {"ok": ok, "errors": [str(e)[:1000] for e in errors]}


# -- key escrow -------------------------------------------------------------------------------------

ESCROW_FILE = "escrow.sealed"
MAX_ESCROW_BYTES = 16 * 1024 * 1024


def escrow_path(dataset: Dataset) -> Path:
    return bundle_folder(dataset) / ESCROW_FILE


def kek_public_key() -> str:
    """The public half of the platform's key-encryption key, or a 409 when escrow is not set up."""
    from cloakroom_client.protocol.escrow import public_from_private

    if settings.CLOAKROOM_KEK_PUBLIC_KEY:
        return settings.CLOAKROOM_KEK_PUBLIC_KEY
    if settings.CLOAKROOM_KEK_PRIVATE_KEY:  # single-machine setups (the demo) configure only this
        return public_from_private(settings.CLOAKROOM_KEK_PRIVATE_KEY)
    raise Conflict(
        "Key escrow is not set up on this server (no CLOAKROOM_KEK_PUBLIC_KEY); keep the key and run the key agent.",
        code="escrow_unavailable",
    )


def escrow_store(*, owner: User, dataset_id: Any, blob: bytes) -> Dataset:
    """Keep an owner's sealed secret key and hand the dataset's releases to the escrow worker.

    The blob is checked by its header only (its KEK must be the platform's current one); nobody here
    can open it. It is written atomically beside the bundle, and jobs already waiting for the key are
    queued for the escrow worker.
    """
    import base64

    from cloakroom_client.protocol.escrow import EscrowError, blob_key_id, key_id

    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    if dataset.bundle_status != Dataset.BundleStatus.READY:
        raise Conflict("Escrow the key once the bundle is ready.", code="bundle_not_ready")
    if len(blob) > MAX_ESCROW_BYTES:
        raise ValidationFailed(
            f"body: a sealed key is at most {MAX_ESCROW_BYTES} bytes.", fields={"body": ["Too large."]}
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
    path = escrow_path(dataset)
    tmp = path.with_name(f".{ESCROW_FILE}.{uuid.uuid4().hex}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    Dataset.objects.filter(pk=dataset.pk).update(key_custody=Dataset.KeyCustody.ESCROW)
    dataset.refresh_from_db()
    from compute.kinds.he_query.key_holder import escrow_waiting_send as enqueue_waiting_for_escrow

    transaction.on_commit(lambda: enqueue_waiting_for_escrow(dataset=dataset))
    logger.info("dataset %s: secret key escrowed (sealed, %d bytes)", dataset.pk, len(blob))
    return dataset


def escrow_remove(*, owner: User, dataset_id: Any) -> Dataset:
    """Take the key back: delete the sealed key; releases wait for the owner's key agent again."""
    dataset = he_dataset_get(owner=owner, dataset_id=dataset_id)
    escrow_path(dataset).unlink(missing_ok=True)
    Dataset.objects.filter(pk=dataset.pk).update(key_custody=Dataset.KeyCustody.OWNER)
    dataset.refresh_from_db()
    return dataset
