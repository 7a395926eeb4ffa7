"""Fixtures for HE bundles: real TenSEAL bundles in format v1, built here so the server can be tested
before (and independently of) the owner CLI's encrypt command.

:func:`build_bundle` writes a bundle directory (manifest.json, the public context.bin, one CKKS vector per
column chunk) and keeps the full secret context outside it, in a keystore folder, the way the CLI does.
Helpers alter a bundle and, when a test wants a bundle that agrees with its own manifest but is bad
inside, recompute the manifest's sizes and hashes (:func:`reseal`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PARAMETERS = {
    ("sum",): (4096, [40, 20, 40], 20),
    ("sum", "product"): (8192, [60, 40, 40, 60], 40),
}


@dataclass
class Bundle:
    folder: Path
    manifest: dict
    secret: bytes  # the serialized secret key (SEAL bytes); must never appear in a response or a log
    secret_context: bytes  # the full context with its secret key, as the keystore holds it
    keystore: Path

    def file(self, name: str) -> Path:
        return self.folder / name

    def names(self) -> list[str]:
        return [self.manifest["context"]["file"]] + [f["file"] for c in self.manifest["columns"] for f in c["files"]]

    def save_manifest(self) -> None:
        (self.folder / "manifest.json").write_text(json.dumps(self.manifest, indent=1))


def _entry(path: Path) -> dict:
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_context(job_classes: tuple[str, ...] = ("sum",)):
    import tenseal as ts

    degree, bits, scale_bits = PARAMETERS[job_classes]
    context = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=bits)
    context.global_scale = 2.0**scale_bits
    return context


def public_bytes(context, *, galois: bool = False, relin: bool = True) -> bytes:
    public = context.copy()
    public.make_context_public()
    return public.serialize(save_galois_keys=galois, save_relin_keys=relin)


def build_bundle(
    root: Path,
    *,
    rows: int = 300,
    job_classes: tuple[str, ...] = ("sum",),
    seed: int = 7,
) -> Bundle:
    """Encrypt a small table (age in 0..120, and ward=A as an indicator) into a bundle under ``root``."""
    import tenseal as ts

    degree, bits, scale_bits = PARAMETERS[job_classes]
    slots = degree // 2
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(45, 20, rows), 0, 120)
    ward_a = (rng.integers(0, 3, rows) == 0).astype(float)

    context = make_context(job_classes)
    folder = root / "bundle"
    folder.mkdir(parents=True)
    (folder / "context.bin").write_bytes(public_bytes(context, relin="product" in job_classes))

    chunks = math.ceil(rows / slots)
    columns = []
    for index, (spec, values) in enumerate(
        [
            ({"name": "age", "source": "age", "kind": "numeric", "lower": 0, "upper": 120}, age),
            (
                {"name": "ward=A", "source": "ward", "kind": "indicator", "category": "A", "lower": 0, "upper": 1},
                ward_a,
            ),
        ]
    ):
        files = []
        for chunk in range(chunks):
            packed = np.zeros(slots)
            part = values[chunk * slots : (chunk + 1) * slots]
            packed[: len(part)] = part
            path = folder / f"c{index:03d}.{chunk:04d}.ct"
            path.write_bytes(ts.ckks_vector(context, packed.tolist()).serialize())
            files.append(_entry(path))
        columns.append({**spec, "files": files})

    manifest = {
        "format": "cloakroom-he-bundle",
        "version": 1,
        "bundle_id": uuid.uuid4().hex,
        "scheme": "ckks",
        "poly_modulus_degree": degree,
        "coeff_mod_bit_sizes": bits,
        "global_scale_bits": scale_bits,
        "job_classes": list(job_classes),
        "slots": slots,
        "rows": rows,
        "context": _entry(folder / "context.bin"),
        "columns": columns,
    }
    keystore = root / "keystore"
    keystore.mkdir(mode=0o700)
    secret_context = context.serialize(save_secret_key=True)
    (keystore / f"{manifest['bundle_id']}.secret").write_bytes(secret_context)
    key_file = root / "secret-key.seal"
    context.secret_key().data.save(str(key_file))
    secret = key_file.read_bytes()
    key_file.unlink()
    bundle = Bundle(folder, manifest, secret, secret_context, keystore)
    bundle.save_manifest()
    return bundle


def reseal(bundle: Bundle) -> None:
    """Recompute every size and hash in the manifest from the files, so only the check inside can fail."""
    bundle.manifest["context"] = _entry(bundle.folder / "context.bin")
    for column in bundle.manifest["columns"]:
        column["files"] = [_entry(bundle.folder / f["file"]) for f in column["files"]]
    bundle.save_manifest()


def secret_markers(secret: bytes) -> list[bytes]:
    """Forms in which a piece of the secret key could leak: raw, hex and base64 of a slice from its middle."""
    import base64

    middle = secret[len(secret) // 2 : len(secret) // 2 + 48]
    return [middle, middle.hex().encode(), base64.b64encode(middle), base64.urlsafe_b64encode(middle)]


_TEMPLATES: dict[tuple, Path] = {}


@pytest.fixture(scope="session")
def bundle_templates(tmp_path_factory):
    """Bundles are built once per session and copied for each test (key generation takes a moment)."""

    def get(rows: int, job_classes: tuple[str, ...]) -> Path:
        key = (rows, job_classes)
        if key not in _TEMPLATES:
            root = tmp_path_factory.mktemp(f"template-{rows}-{'-'.join(job_classes)}")
            build_bundle(root, rows=rows, job_classes=job_classes)
            _TEMPLATES[key] = root
        return _TEMPLATES[key]

    return get


def _copy(template: Path, dest: Path) -> Bundle:
    shutil.copytree(template, dest)
    manifest = json.loads((dest / "bundle" / "manifest.json").read_text())
    keystore = dest / "keystore"
    secret_context = (keystore / f"{manifest['bundle_id']}.secret").read_bytes()
    import tenseal as ts

    secret_ctx = ts.context_from(secret_context)
    key_file = dest / "secret-key.seal"
    secret_ctx.secret_key().data.save(str(key_file))
    secret = key_file.read_bytes()
    key_file.unlink()
    # Each test gets its own bundle id, so tests never meet each other's uploads.
    manifest["bundle_id"] = uuid.uuid4().hex
    bundle = Bundle(dest / "bundle", manifest, secret, secret_context, keystore)
    (keystore / f"{manifest['bundle_id']}.secret").write_bytes(secret_context)
    bundle.save_manifest()
    # The owner's machine keeps its own copy of the manifest and the epsilon cap beside the key
    # (what `cloakroom he encrypt` and `cloakroom he publish` write): the key agent plans from them.
    from cloakroom_client.he import manifest_copy_path, write_policy

    manifest_copy_path(manifest["bundle_id"], keystore).write_text(json.dumps(manifest))
    write_policy(manifest["bundle_id"], "1000", keystore)
    return bundle


@pytest.fixture
def bundle(bundle_templates, tmp_path) -> Bundle:
    """A valid sum-only bundle: N=4096 [40, 20, 40], scale 2^20, 300 rows (one ciphertext per column)."""
    return _copy(bundle_templates(300, ("sum",)), tmp_path / "owner")


@pytest.fixture
def big_bundle(bundle_templates, tmp_path) -> Bundle:
    """A valid sum-only bundle of 5000 rows: three ciphertexts per column, seven files in all."""
    return _copy(bundle_templates(5000, ("sum",)), tmp_path / "owner")


@pytest.fixture
def product_bundle(bundle_templates, tmp_path) -> Bundle:
    """A valid bundle for sums and products: N=8192 [60, 40, 40, 60], scale 2^40."""
    return _copy(bundle_templates(300, ("sum", "product")), tmp_path / "owner")


# Fixtures for the HE job tests (imported last: that module uses the helpers above).
from tests.he.jobs_fixtures import he_purchase, table  # noqa: E402, F401
