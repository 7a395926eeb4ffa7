"""Reads for HE datasets: the owner's dataset, its bundle's upload state, the platform's escrow key."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from accounts.models import User
from cloakroom_client.protocol.bundle import manifest_files
from cloakroom_client.protocol.escrow import public_from_private
from config.exceptions import Conflict
from config.lookups import get_or_404
from marketplace.he.storage import present_files
from marketplace.models import Dataset


def he_dataset_get(*, owner: User, dataset_id: Any) -> Dataset:
    """The caller's own HE dataset; anyone else's, or a DP dataset, is a 404."""
    return get_or_404(Dataset.objects, message="No such HE dataset.", pk=dataset_id, owner=owner, mode=Dataset.Mode.HE)


def expected_files(dataset: Dataset) -> dict[str, dict]:
    """The files the dataset's manifest names, by file name: ``{"file", "bytes", "sha256"}`` each."""
    return {entry["file"]: entry for entry in manifest_files(dataset.bundle_manifest)}


def bundle_state(*, dataset: Dataset) -> dict:
    """What the server expects, what it holds, and what is still missing (a read; no side effects)."""
    present = present_files(dataset) if dataset.bundle_status == Dataset.BundleStatus.UPLOADING else set()
    if dataset.bundle_status in (Dataset.BundleStatus.CHECKING, Dataset.BundleStatus.READY):
        present = set(expected_files(dataset))
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


def live_bundle(*, owner: User, bundle_id: str) -> Dataset | None:
    """The owner's dataset for ``bundle_id`` that is not rejected (uploading, checking or ready), if any."""
    return (
        Dataset.objects.filter(owner=owner, mode=Dataset.Mode.HE, bundle_id=bundle_id)
        .exclude(bundle_status=Dataset.BundleStatus.REJECTED)
        .first()
    )


def kek_public_key() -> str:
    """The public half of the platform's key-encryption key, or a 409 when escrow is not set up."""
    if settings.CLOAKROOM_KEK_PUBLIC_KEY:
        return settings.CLOAKROOM_KEK_PUBLIC_KEY
    if settings.CLOAKROOM_KEK_PRIVATE_KEY:  # single-machine setups (the demo) configure only this
        return public_from_private(settings.CLOAKROOM_KEK_PRIVATE_KEY)
    raise Conflict(
        "Key escrow is not set up on this server (no CLOAKROOM_KEK_PUBLIC_KEY); keep the key and run the key agent.",
        code="escrow_unavailable",
    )
