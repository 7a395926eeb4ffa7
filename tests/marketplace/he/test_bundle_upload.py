"""The server accepts HE bundles: create from a manifest, upload files, check in a subprocess, publish.

Every bad bundle gets a 400 naming the problem, keeps nothing it should not, and leaves the web process
serving; the secret key never appears in a response or a log line.
"""

from __future__ import annotations

import builtins
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from accounts.services import api_key_create
from cloakroom_client import Client, CloakroomError
from cloakroom_client import upload as upload_module
from cloakroom_client.upload import publish_bundle
from marketplace.models import Column, Dataset
from tests.factories import UserFactory
from tests.fixtures.he_bundles import Bundle, make_context, public_bytes, reseal, secret_markers

pytestmark = pytest.mark.django_db

METADATA = {
    "title": "Ward admissions (encrypted)",
    "description": "Ages and wards, encrypted on the owner's machine.",
    "epsilon_cap": "3",
    "delta_cap": "0.00001",
    "price_per_epsilon": "12.50",
    "row_count_public": False,
}


# -- helpers ---------------------------------------------------------------------------------------------


def create(client, bundle: Bundle, **overrides):
    body = {**METADATA, **overrides, "manifest": bundle.manifest}
    return client.post("/api/v1/datasets/he/", body, format="json")


def put(client, dataset_id: int, name: str, data: bytes, **extra):
    return client.put(
        f"/api/v1/datasets/{dataset_id}/bundle/files/{name}",
        data=data,
        content_type="application/octet-stream",
        **extra,
    )


def upload(client, dataset_id: int, bundle: Bundle, names: list[str] | None = None) -> None:
    for name in names if names is not None else bundle.names():
        response = put(client, dataset_id, name, bundle.file(name).read_bytes())
        assert response.status_code == 201, response.json()


def complete(client, dataset_id: int):
    return client.post(f"/api/v1/datasets/{dataset_id}/bundle/complete/")


def stored(private_storage: Path) -> list[str]:
    """Every file under the private storage root, relative to it."""
    return sorted(str(p.relative_to(private_storage)) for p in private_storage.rglob("*") if p.is_file())


def assert_still_serving(client) -> None:
    """The web process is alive and answers a normal request."""
    response = client.get("/api/v1/me/")
    assert response.status_code == 200 and response.json()["username"]


def assert_rejected_at_complete(owner_client, bundle: Bundle, private_storage: Path, *words: str) -> dict:
    """Upload a bundle that agrees with its own manifest, and expect the check to reject it."""
    reseal(bundle)
    created = create(owner_client, bundle)
    assert created.status_code == 201, created.json()
    dataset_id = created.json()["id"]
    upload(owner_client, dataset_id, bundle)
    response = complete(owner_client, dataset_id)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "bundle_rejected"
    for word in words:
        assert word.lower() in error["message"].lower(), error["message"]
    dataset = Dataset.objects.get(pk=dataset_id)
    assert dataset.bundle_status == Dataset.BundleStatus.REJECTED
    assert all(word.lower() in dataset.bundle_error.lower() for word in words)
    assert stored(private_storage) == []  # the rejected bundle's files are deleted
    state = owner_client.get(f"/api/v1/datasets/{dataset_id}/bundle/").json()
    assert state["bundle_status"] == "rejected" and state["bundle_error"] == dataset.bundle_error
    assert_still_serving(owner_client)
    return error


# -- the happy path --------------------------------------------------------------------------------------


def test_an_owner_creates_uploads_completes_and_publishes_a_bundle(owner_client, bundle, private_storage):
    created = create(owner_client, bundle)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["mode"] == "he" and body["status"] == "draft" and body["bundle_status"] == "uploading"
    assert body["bundle_id"] == bundle.manifest["bundle_id"] and body["key_custody"] == "owner"
    assert [f["file"] for f in body["files"]] == bundle.names() == body["missing"]
    assert body["row_count"] == 300 and body["poly_modulus_degree"] == 4096 and body["job_classes"] == ["sum"]

    upload(owner_client, body["id"], bundle)
    state = owner_client.get(f"/api/v1/datasets/{body['id']}/bundle/").json()
    assert state["missing"] == [] and all(f["present"] for f in state["files"])
    assert state["bytes_present"] == state["bytes_total"] > 0

    completed = complete(owner_client, body["id"])
    assert completed.status_code == 200, completed.json()
    assert completed.json()["bundle_status"] == "ready" and completed.json()["bundle_error"] == ""

    published = owner_client.post(f"/api/v1/datasets/{body['id']}/publish/")
    assert published.status_code == 200 and published.json()["status"] == "published"


def test_the_columns_and_their_bounds_come_from_the_manifest(owner_client, bundle):
    dataset_id = create(owner_client, bundle).json()["id"]
    columns = list(Column.objects.filter(dataset_id=dataset_id).order_by("position"))
    assert [(c.name, c.kind, c.lower, c.upper, c.source, c.category) for c in columns] == [
        ("age", "numeric", 0.0, 120.0, "age", None),
        ("ward=A", "numeric", 0.0, 1.0, "ward", "A"),
    ]
    detail = owner_client.get(f"/api/v1/datasets/{dataset_id}/").json()
    assert [c["name"] for c in detail["columns"]] == ["age", "ward=A"] and detail["mode"] == "he"


def test_a_bundle_for_sums_and_products_is_accepted(owner_client, product_bundle):
    dataset_id = create(owner_client, product_bundle).json()["id"]
    upload(owner_client, dataset_id, product_bundle)
    response = complete(owner_client, dataset_id)
    assert response.status_code == 200, response.json()
    assert response.json()["poly_modulus_degree"] == 8192 and response.json()["job_classes"] == ["sum", "product"]


def test_files_are_stored_under_the_private_root_by_their_manifest_names(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    assert stored(private_storage) == []  # creating the dataset writes nothing
    upload(owner_client, dataset_id, bundle)
    assert stored(private_storage) == sorted(f"he/{dataset_id}/{name}" for name in bundle.names())
    for name in bundle.names():
        assert (private_storage / "he" / str(dataset_id) / name).read_bytes() == bundle.file(name).read_bytes()


def test_reuploading_an_identical_file_is_a_no_op(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    data = bundle.file("context.bin").read_bytes()
    assert put(owner_client, dataset_id, "context.bin", data).status_code == 201
    again = put(owner_client, dataset_id, "context.bin", data)
    assert again.status_code == 200 and again.json()["stored"] is False
    assert stored(private_storage) == [f"he/{dataset_id}/context.bin"]


def test_an_interrupted_upload_resumes_from_the_missing_files(owner_client, big_bundle):
    names = big_bundle.names()
    assert len(names) == 7
    dataset_id = create(owner_client, big_bundle).json()["id"]
    upload(owner_client, dataset_id, big_bundle, names[:3])

    state = owner_client.get(f"/api/v1/datasets/{dataset_id}/bundle/").json()
    assert state["missing"] == names[3:]
    early = complete(owner_client, dataset_id)
    assert early.status_code == 409 and early.json()["error"]["code"] == "bundle_incomplete"
    assert early.json()["error"]["missing"] == names[3:]

    upload(owner_client, dataset_id, big_bundle, state["missing"])
    assert complete(owner_client, dataset_id).json()["bundle_status"] == "ready"


def test_creating_the_same_bundle_again_returns_the_upload_in_progress(owner_client, bundle):
    first = create(owner_client, bundle)
    again = create(owner_client, bundle)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Dataset.objects.count() == 1


def test_the_same_bundle_id_with_another_manifest_is_a_conflict(owner_client, bundle):
    create(owner_client, bundle)
    bundle.manifest["rows"] = 299
    response = create(owner_client, bundle)
    assert response.status_code == 409 and response.json()["error"]["code"] == "bundle_exists"
    assert Dataset.objects.count() == 1


def test_publish_refuses_an_he_dataset_whose_bundle_is_not_ready(owner_client, bundle):
    dataset_id = create(owner_client, bundle).json()["id"]
    upload(owner_client, dataset_id, bundle)
    response = owner_client.post(f"/api/v1/datasets/{dataset_id}/publish/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "bundle_not_ready"
    assert Dataset.objects.get(pk=dataset_id).status == Dataset.Status.DRAFT


def test_no_file_is_accepted_once_the_bundle_is_ready(owner_client, bundle):
    dataset_id = create(owner_client, bundle).json()["id"]
    upload(owner_client, dataset_id, bundle)
    complete(owner_client, dataset_id)
    response = put(owner_client, dataset_id, "context.bin", bundle.file("context.bin").read_bytes())
    assert response.status_code == 409 and response.json()["error"]["code"] == "bundle_ready"


# -- who may do what -------------------------------------------------------------------------------------


def test_another_user_gets_a_404_for_every_bundle_endpoint(owner_client, outsider_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    data = bundle.file("context.bin").read_bytes()
    assert outsider_client.get(f"/api/v1/datasets/{dataset_id}/bundle/").status_code == 404
    assert put(outsider_client, dataset_id, "context.bin", data).status_code == 404
    assert complete(outsider_client, dataset_id).status_code == 404
    assert outsider_client.post(f"/api/v1/datasets/{dataset_id}/publish/").status_code == 404
    assert stored(private_storage) == []


def test_an_anonymous_caller_cannot_create_an_he_dataset(anon, bundle):
    assert create(anon, bundle).status_code == 401
    assert Dataset.objects.count() == 0


def test_an_account_without_the_owner_role_cannot_create_an_he_dataset(buyer_client, bundle):
    response = create(buyer_client, bundle)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_an_owner"
    assert Dataset.objects.count() == 0


def test_the_bundle_endpoints_do_not_serve_dp_datasets(owner_client, dataset):
    assert owner_client.get(f"/api/v1/datasets/{dataset.pk}/bundle/").status_code == 404


# -- bad manifests: 400 at creation, nothing stored -----------------------------------------------------


def _set(path: str, value):
    def mutate(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _add_file(manifest: dict) -> None:
    manifest["columns"][0]["files"].append({**manifest["columns"][0]["files"][0], "file": "c000.0001.ct"})


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("scheme", "bfv"), "manifest.scheme"),
        (_set("format", "something-else"), "manifest.format"),
        (_set("version", 2), "manifest.version"),
        (_set("poly_modulus_degree", 16384), "manifest.poly_modulus_degree"),
        (_set("coeff_mod_bit_sizes", [60, 40, 60]), "manifest.coeff_mod_bit_sizes"),
        (_set("global_scale_bits", 30), "manifest.global_scale_bits"),
        (_set("job_classes", ["sum", "rotate"]), "manifest.job_classes"),
        (_set("slots", 4096), "manifest.slots"),
        (_set("rows", 0), "manifest.rows"),
        (_set("rows", 5000), "manifest.columns.0.files"),  # 5000 rows need three files per column, not one
        (_add_file, "manifest.columns.0.files"),  # two files for 300 rows
        (_set("columns.0.files.0.file", "../../etc/passwd"), "manifest.columns.0.files.0.file"),
        (_set("columns.0.files.0.bytes", -5), "manifest.columns.0.files.0.bytes"),
        (_set("columns.0.kind", "categorical"), "manifest.columns.0.kind"),
        (_set("columns.0.upper", None), "manifest.columns.0.lower"),
        (_set("columns.1.name", "ward=B"), "manifest.columns.1.name"),
        (_set("context.file", "key.bin"), "manifest.context.file"),
        (_set("bundle_id", "not-a-uuid"), "manifest.bundle_id"),
    ],
)
def test_a_manifest_that_breaks_the_format_is_refused_at_creation(owner_client, bundle, private_storage, mutate, field):
    mutate(bundle.manifest)
    response = create(owner_client, bundle)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid_manifest" and field in error["fields"], error
    assert Dataset.objects.count() == 0 and Column.objects.count() == 0
    assert stored(private_storage) == []
    assert_still_serving(owner_client)


def test_a_manifest_declaring_a_file_over_the_size_limit_is_refused(owner_client, bundle, settings, private_storage):
    settings.CLOAKROOM_MAX_BUNDLE_FILE_BYTES = 100_000  # the context is larger than this
    response = create(owner_client, bundle)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bundle_too_large"
    assert "context.bin" in response.json()["error"]["message"]
    assert Dataset.objects.count() == 0 and stored(private_storage) == []
    assert_still_serving(owner_client)


def test_a_manifest_declaring_a_bundle_over_the_total_limit_is_refused(owner_client, bundle, settings):
    settings.CLOAKROOM_MAX_BUNDLE_BYTES = 200_000
    response = create(owner_client, bundle)
    assert response.status_code == 400 and response.json()["error"]["code"] == "bundle_too_large"
    assert "200000" in response.json()["error"]["message"]
    assert Dataset.objects.count() == 0
    assert_still_serving(owner_client)


def test_a_manifest_that_is_not_json_is_refused(owner_client, bundle):
    response = owner_client.post("/api/v1/datasets/he/", {**METADATA, "manifest": "{not json"}, format="json")
    assert response.status_code == 400 and "manifest" in response.json()["error"]["fields"]
    assert Dataset.objects.count() == 0


def test_metadata_without_an_epsilon_cap_is_refused(owner_client, bundle):
    body = {k: v for k, v in METADATA.items() if k != "epsilon_cap"}
    response = owner_client.post("/api/v1/datasets/he/", {**body, "manifest": bundle.manifest}, format="json")
    assert response.status_code == 400 and "epsilon_cap" in response.json()["error"]["fields"]
    assert Dataset.objects.count() == 0


def test_a_new_he_dataset_starts_with_the_key_held_by_the_owner(owner_client, bundle):
    response = create(owner_client, bundle, key_custody="escrow")
    assert response.status_code == 400 and "key_custody" in response.json()["error"]["fields"]
    assert Dataset.objects.count() == 0


def test_metadata_and_manifest_may_come_as_multipart_parts(owner_client, bundle):
    manifest = open(bundle.folder / "manifest.json", "rb")  # noqa: SIM115 - closed by the test client
    response = owner_client.post(
        "/api/v1/datasets/he/", {"metadata": json.dumps(METADATA), "manifest": manifest}, format="multipart"
    )
    manifest.close()
    assert response.status_code == 201, response.json()
    assert response.json()["title"] == METADATA["title"] and response.json()["price_per_epsilon"] == "12.50"


# -- bad uploads: 400, the file is not kept --------------------------------------------------------------


def test_a_file_not_named_in_the_manifest_is_refused(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    response = put(owner_client, dataset_id, "c009.0000.ct", b"x" * 100)
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_file"
    assert "name" in response.json()["error"]["fields"]
    assert stored(private_storage) == []
    assert_still_serving(owner_client)


def test_a_body_longer_or_shorter_than_the_declared_bytes_is_refused(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    data = bundle.file("c000.0000.ct").read_bytes()
    for body in (data[: len(data) // 2], data + b"\0" * 10):
        response = put(owner_client, dataset_id, "c000.0000.ct", body)
        assert response.status_code == 400 and response.json()["error"]["code"] == "size_mismatch"
        assert str(len(data)) in response.json()["error"]["message"]
    assert stored(private_storage) == []
    assert_still_serving(owner_client)


def test_random_bytes_of_the_declared_length_fail_the_hash_check(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    upload(owner_client, dataset_id, bundle, ["context.bin"])
    size = bundle.manifest["columns"][0]["files"][0]["bytes"]
    response = put(owner_client, dataset_id, "c000.0000.ct", os.urandom(size))
    assert response.status_code == 400 and response.json()["error"]["code"] == "hash_mismatch"
    # Only the file that matched its manifest entry is kept, so the upload can go on.
    assert stored(private_storage) == [f"he/{dataset_id}/context.bin"]
    assert_still_serving(owner_client)


def test_a_file_over_the_per_file_limit_is_refused_before_it_is_read(owner_client, bundle, settings, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    settings.CLOAKROOM_MAX_BUNDLE_FILE_BYTES = 1000
    response = put(owner_client, dataset_id, "context.bin", bundle.file("context.bin").read_bytes())
    assert response.status_code == 400 and response.json()["error"]["code"] == "file_too_large"
    assert stored(private_storage) == []
    assert_still_serving(owner_client)


def test_a_body_cut_short_leaves_no_partial_file(owner_client, bundle, private_storage):
    dataset_id = create(owner_client, bundle).json()["id"]
    data = bundle.file("context.bin").read_bytes()
    # The header promises the whole file, but the stream ends half way, as when a client dies.
    short = io.BytesIO(data[: len(data) // 2])
    response = put(owner_client, dataset_id, "context.bin", data, **{"wsgi.input": short})
    assert response.status_code == 400 and response.json()["error"]["code"] == "incomplete_upload"
    assert stored(private_storage) == []
    assert_still_serving(owner_client)


def test_an_upload_with_another_content_type_is_refused(owner_client, bundle):
    dataset_id = create(owner_client, bundle).json()["id"]
    response = owner_client.put(
        f"/api/v1/datasets/{dataset_id}/bundle/files/context.bin", data=b"{}", content_type="application/json"
    )
    assert response.status_code == 415


# -- bad bundles: 400 at complete, files deleted, the dataset says why ----------------------------------


def test_a_truncated_ciphertext_is_rejected(owner_client, bundle, private_storage):
    path = bundle.file("c000.0000.ct")
    path.write_bytes(path.read_bytes()[:30000])
    assert_rejected_at_complete(owner_client, bundle, private_storage, "c000.0000.ct", "not a CKKS ciphertext")


def test_a_truncated_context_is_rejected(owner_client, bundle, private_storage):
    path = bundle.file("context.bin")
    path.write_bytes(path.read_bytes()[:5000])
    assert_rejected_at_complete(owner_client, bundle, private_storage, "context.bin", "not a TenSEAL context")


def test_random_bytes_as_the_context_are_rejected(owner_client, bundle, private_storage):
    bundle.file("context.bin").write_bytes(os.urandom(50_000))
    assert_rejected_at_complete(owner_client, bundle, private_storage, "not a TenSEAL context")


def test_a_bfv_context_is_rejected(owner_client, bundle, private_storage):
    import tenseal as ts

    bfv = ts.context(ts.SCHEME_TYPE.BFV, 4096, plain_modulus=1032193)
    bundle.file("context.bin").write_bytes(public_bytes(bfv, relin=False))
    assert_rejected_at_complete(owner_client, bundle, private_storage, "BFV", "only CKKS")


def test_a_context_carrying_a_secret_key_is_rejected_without_echoing_it(owner_client, bundle, private_storage, caplog):
    caplog.set_level("DEBUG")
    bundle.file("context.bin").write_bytes(bundle.secret_context)
    reseal(bundle)
    created = create(owner_client, bundle)
    dataset_id = created.json()["id"]
    responses = [created]
    for name in bundle.names():
        responses.append(put(owner_client, dataset_id, name, bundle.file(name).read_bytes()))
    responses.append(complete(owner_client, dataset_id))
    responses.append(owner_client.get(f"/api/v1/datasets/{dataset_id}/bundle/"))
    rejected = responses[-2]
    assert rejected.status_code == 400 and "secret key" in rejected.json()["error"]["message"]
    assert Dataset.objects.get(pk=dataset_id).bundle_status == Dataset.BundleStatus.REJECTED
    assert stored(private_storage) == []
    logs = caplog.text.encode("utf-8", "replace")
    for marker in secret_markers(bundle.secret):
        assert all(marker not in r.content for r in responses)
        assert marker not in logs
        assert marker not in Dataset.objects.get(pk=dataset_id).bundle_error.encode()
    assert_still_serving(owner_client)


def test_a_context_with_galois_keys_is_rejected(owner_client, bundle, private_storage):
    context = make_context()
    context.generate_galois_keys()
    bundle.file("context.bin").write_bytes(public_bytes(context, galois=True, relin=False))
    assert_rejected_at_complete(owner_client, bundle, private_storage, "Galois keys")


def test_a_context_with_other_parameters_than_the_manifest_is_rejected(owner_client, bundle, private_storage):
    bundle.file("context.bin").write_bytes(public_bytes(make_context(("sum", "product"))))
    assert_rejected_at_complete(owner_client, bundle, private_storage, "poly modulus degree 8192")


def test_random_bytes_as_a_ciphertext_are_rejected(owner_client, bundle, private_storage):
    bundle.file("c001.0000.ct").write_bytes(os.urandom(80_000))
    assert_rejected_at_complete(owner_client, bundle, private_storage, "c001.0000.ct", "not a CKKS ciphertext")


def test_a_ciphertext_that_does_not_fill_every_slot_is_rejected(owner_client, bundle, private_storage):
    import tenseal as ts

    # A vector of 300 values (no zero padding) disagrees with the format: the packing is part of the contract.
    context = ts.context_from(bundle.secret_context)
    bundle.file("c000.0000.ct").write_bytes(ts.ckks_vector(context, [1.0] * 300).serialize())
    assert_rejected_at_complete(owner_client, bundle, private_storage, "c000.0000.ct", "2048 slots")


def test_a_ciphertext_made_with_other_parameters_is_rejected(owner_client, bundle, private_storage):
    import tenseal as ts

    other = make_context(("sum", "product"))
    bundle.file("c000.0000.ct").write_bytes(ts.ckks_vector(other, [1.0] * 4096).serialize())
    assert_rejected_at_complete(owner_client, bundle, private_storage, "c000.0000.ct")


def test_a_check_that_runs_past_its_time_limit_is_stopped_and_rejects(owner_client, bundle, private_storage, settings):
    settings.CLOAKROOM_BUNDLE_CHECK_TIMEOUT = 0.05
    assert_rejected_at_complete(owner_client, bundle, private_storage, "took longer")


def test_a_check_that_needs_more_memory_than_allowed_rejects_and_the_server_lives(
    owner_client, bundle, private_storage, settings
):
    # 64 MiB of address space is too little to load TenSEAL at all: the child fails, the web process does not.
    settings.CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES = 64 * 1024 * 1024
    assert_rejected_at_complete(owner_client, bundle, private_storage)


def test_a_rejected_bundle_can_be_sent_again_as_a_new_dataset(owner_client, bundle, private_storage, bundle_templates):
    good = bundle.file("context.bin").read_bytes()
    bundle.file("context.bin").write_bytes(os.urandom(5000))
    assert_rejected_at_complete(owner_client, bundle, private_storage)
    bundle.file("context.bin").write_bytes(good)
    reseal(bundle)
    again = create(owner_client, bundle)
    assert again.status_code == 201
    upload(owner_client, again.json()["id"], bundle)
    assert complete(owner_client, again.json()["id"]).json()["bundle_status"] == "ready"


# -- the client: publish_bundle against a real HTTP server -----------------------------------------------


@pytest.fixture
def owner_sdk(live_server, transactional_db):
    user = UserFactory(username="olga", is_owner=True)
    _, key = api_key_create(user=user, name="sdk")
    return Client(live_server.url, key)


@pytest.mark.django_db(transaction=True)
def test_publish_bundle_uploads_checks_and_publishes(owner_sdk, bundle, capsys):
    result = publish_bundle(owner_sdk, bundle.folder, METADATA)
    assert result["status"] == "published" and result["bundle_status"] == "ready" and result["missing"] == []
    assert Dataset.objects.get(pk=result["id"]).price_per_epsilon == Decimal("12.50")
    err = capsys.readouterr().err
    assert "100.0%" in err and "upload [" in err


@pytest.mark.django_db(transaction=True)
def test_publish_bundle_leaves_a_draft_when_asked_not_to_publish(owner_sdk, bundle):
    result = publish_bundle(owner_sdk, bundle.folder, {**METADATA, "publish": False}, progress=False)
    assert result["status"] == "draft" and result["bundle_status"] == "ready"


@pytest.mark.django_db(transaction=True)
def test_publish_bundle_resumes_after_an_interrupted_upload(owner_sdk, big_bundle, private_storage, monkeypatch):
    names = big_bundle.names()
    real_read = upload_module._ProgressReader.read
    sent: dict[str, int] = {"bytes": 0}

    def dying_read(self, size=-1):
        # The client "crashes" half way through the fourth file.
        chunk = real_read(self, size)
        sent["bytes"] += len(chunk)
        if self._handle.name.endswith(names[3]) and self._handle.tell() > 20_000:
            raise ConnectionError("the network went away")
        return chunk

    monkeypatch.setattr(upload_module._ProgressReader, "read", dying_read)
    with pytest.raises(Exception, match="network went away"):
        publish_bundle(owner_sdk, big_bundle.folder, METADATA, progress=False)
    owner_sdk.session.close()
    dataset = Dataset.objects.get()
    assert dataset.bundle_status == Dataset.BundleStatus.UPLOADING
    monkeypatch.setattr(upload_module._ProgressReader, "read", real_read)

    put_names: list[str] = []
    real_request = owner_sdk.session.request

    def recording(method, url, **kwargs):
        if method == "PUT":
            put_names.append(url.rsplit("/", 1)[-1])
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(owner_sdk.session, "request", recording)
    result = publish_bundle(owner_sdk, big_bundle.folder, METADATA, progress=False)
    assert result["id"] == dataset.pk and result["status"] == "published"
    assert put_names == names[3:]  # only what was missing is sent again
    assert Dataset.objects.count() == 1
    folder = private_storage / "he" / str(dataset.pk)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names, "manifest.json"])  # no partial file left


@pytest.mark.django_db(transaction=True)
def test_publish_bundle_never_opens_the_keystore(owner_sdk, bundle, monkeypatch):
    monkeypatch.setenv("CLOAKROOM_KEYSTORE", str(bundle.keystore))
    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(os.path.abspath(str(file)) if isinstance(file, (str, os.PathLike)) else repr(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    publish_bundle(owner_sdk, bundle.folder, METADATA, progress=False)
    monkeypatch.undo()
    assert any(p.endswith("manifest.json") for p in opened)  # the recorder saw the client's reads
    assert not [p for p in opened if p.startswith(str(bundle.keystore))]


@pytest.mark.django_db(transaction=True)
def test_publish_bundle_raises_the_servers_reason_for_a_bad_bundle(owner_sdk, bundle, caplog):
    bundle.file("context.bin").write_bytes(bundle.secret_context)
    reseal(bundle)
    with pytest.raises(CloakroomError) as info:
        publish_bundle(owner_sdk, bundle.folder, METADATA, progress=False)
    assert info.value.status == 400 and info.value.code == "bundle_rejected"
    assert "secret key" in info.value.message
    text = (str(info.value.body) + caplog.text).encode()
    assert not any(marker in text for marker in secret_markers(bundle.secret))
    assert owner_sdk.me()["username"] == "olga"  # the server still answers


# -- the contract: a bundle written by `cloakroom he encrypt` is accepted as it is -------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("job_classes", [("sum",), ("sum", "product")])
def test_a_bundle_from_the_owner_clis_encrypt_is_accepted_and_published(owner_sdk, tmp_path, job_classes):
    from cloakroom_client import he as owner_he

    csv = tmp_path / "admissions.csv"
    csv.write_text(
        "age,ward,insured\n" + "".join(f"{20 + i % 70},{'ABC'[i % 3]},{'yes' if i % 2 else 'no'}\n" for i in range(700))
    )
    schema = [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "ward", "kind": "categorical", "categories": ["A", "B", "C"]},
        {"name": "insured", "kind": "boolean"},
    ]
    manifest = owner_he.encrypt_csv(
        csv, schema, tmp_path / "bundle", job_classes=job_classes, keystore=tmp_path / "keys", progress=False
    )
    result = publish_bundle(owner_sdk, tmp_path / "bundle", METADATA, progress=False)
    assert result["status"] == "published" and result["bundle_status"] == "ready"
    assert result["bundle_id"] == manifest["bundle_id"] and result["row_count"] == 700
    assert [(c["name"], c["kind"], c["source"], c["category"]) for c in result["columns"]] == [
        ("age", "numeric", "age", None),
        ("ward=A", "numeric", "ward", "A"),
        ("ward=B", "numeric", "ward", "B"),
        ("ward=C", "numeric", "ward", "C"),
        ("insured", "boolean", "insured", None),
    ]
