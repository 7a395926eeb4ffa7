"""Key escrow: the owner seals the secret key to the platform's key-encryption key (KEK); only the escrow
worker's task opens it and releases jobs without the owner's key agent. Celery runs eagerly here; the
sealed box is tested directly."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import tenseal as ts

from cloakroom_client import he as client_he
from cloakroom_client.protocol import escrow
from compute.kinds.he_query.key_holder import escrow_release
from compute.models import Job
from marketplace.he import ESCROW_FILE
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.he_bundles import secret_markers
from tests.fixtures.he_jobs import submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def kek(settings):
    private, public = escrow.new_kek()
    settings.CLOAKROOM_KEK_PRIVATE_KEY = private
    settings.CLOAKROOM_KEK_PUBLIC_KEY = public
    return private, public


def _secret(table):
    return client_he.load_secret_context(table.manifest["bundle_id"], table.keystore)


def test_a_sealed_key_opens_only_with_the_kek_and_any_change_is_detected():
    private, public = escrow.new_kek()
    other_private, _ = escrow.new_kek()
    blob = escrow.seal(b"secret context bytes", public)
    assert escrow.unseal(blob, private) == b"secret context bytes"
    assert b"secret context bytes" not in blob
    with pytest.raises(escrow.EscrowError, match="another key-encryption key"):
        escrow.unseal(blob, other_private)
    for position in (5, escrow.HEADER_BYTES - 1, len(blob) - 1):
        altered = bytearray(blob)
        altered[position] ^= 1
        with pytest.raises(escrow.EscrowError):
            escrow.unseal(bytes(altered), private)
    with pytest.raises(escrow.EscrowError, match="not a sealed"):
        escrow.blob_key_id(b"random bytes" * 10)
    assert escrow.public_from_private(private) == public


def test_the_escrow_secret_holds_only_the_secret_key_and_still_decrypts(table):
    secret = _secret(table)
    reduced = ts.context_from(escrow.escrow_secret_bytes(secret))
    assert reduced.is_private() and not reduced.has_galois_keys() and not reduced.has_relin_keys()
    vector = ts.ckks_vector(secret, [1.5, 2.5])
    assert np.allclose(ts.ckks_vector_from(reduced, vector.serialize()).decrypt()[:2], [1.5, 2.5], atol=1e-4)


def test_escrowed_key_releases_jobs_without_a_key_agent(
    kek,
    owner_client,
    buyer_client,
    he_purchase,
    table,
    eager_tasks,
    django_capture_on_commit_callbacks,
    private_storage,
):
    # A job waiting before the key is escrowed is picked up when it arrives.
    waiting = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "age"}, "0.5", django_capture_on_commit_callbacks
    )
    assert Job.objects.get(pk=waiting.json()["id"]).status == Job.Status.AWAITING_KEY

    key = owner_client.get("/api/v1/he/escrow-key/").json()
    assert key["public_key"] == kek[1] and key["algorithm"] == escrow.ALGORITHM
    secret = _secret(table)
    blob = escrow.seal(escrow.escrow_secret_bytes(secret), key["public_key"])
    dataset_id = Dataset.objects.get(mode="he").pk
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.put(
            f"/api/v1/datasets/{dataset_id}/escrow/", data=blob, content_type="application/octet-stream"
        )
    assert response.status_code == 200, response.json()
    assert response.json()["key_custody"] == "escrow"
    assert Job.objects.get(pk=waiting.json()["id"]).status == Job.Status.RELEASED

    # New jobs go from the workers to the escrow worker and are released with no one else involved.
    later = submit(
        buyer_client, he_purchase, {"aggregate": "mean", "column": "bmi"}, "1", django_capture_on_commit_callbacks
    )
    body = buyer_client.get(f"/api/v1/jobs/{later.json()['id']}/").json()
    assert body["status"] == "released", body
    assert abs(body["result"]["groups"][0]["value"] - table.frame["bmi"].mean()) < 1.0
    assert LedgerEntry.objects.filter(job_id=later.json()["id"], kind="commit").count() == 1

    # What the platform stores is the sealed blob only: no form of the secret key is readable in it.
    stored = (private_storage / "he" / str(dataset_id) / ESCROW_FILE).read_bytes()
    assert stored == blob
    key_bytes_path = private_storage / "sk.bin"
    secret.secret_key().data.save(str(key_bytes_path))
    key_bytes = key_bytes_path.read_bytes()
    assert not any(marker in stored for marker in secret_markers(key_bytes))

    # Taking the key back: jobs wait for the key agent again.
    assert owner_client.delete(f"/api/v1/datasets/{dataset_id}/escrow/").json()["key_custody"] == "owner"
    assert not (private_storage / "he" / str(dataset_id) / ESCROW_FILE).exists()
    again = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "bmi"}, "0.5", django_capture_on_commit_callbacks
    )
    assert Job.objects.get(pk=again.json()["id"]).status == Job.Status.AWAITING_KEY


def test_a_worker_without_the_kek_private_key_releases_nothing(
    kek, settings, owner_client, buyer_client, he_purchase, table, eager_tasks, django_capture_on_commit_callbacks
):
    dataset_id = Dataset.objects.get(mode="he").pk
    blob = escrow.seal(escrow.escrow_secret_bytes(_secret(table)), kek[1])
    owner_client.put(f"/api/v1/datasets/{dataset_id}/escrow/", data=blob, content_type="application/octet-stream")
    settings.CLOAKROOM_KEK_PRIVATE_KEY = ""  # a web or he worker: it has only the public half
    job_id = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "age"}, "1", django_capture_on_commit_callbacks
    ).json()["id"]
    assert escrow_release(job_id=job_id) == "no key-encryption key"
    assert Job.objects.get(pk=job_id).status == Job.Status.AWAITING_KEY


@pytest.mark.parametrize(
    ("make_body", "field"),
    [
        (lambda public: b"not a sealed key at all, just some bytes", "body"),
        (lambda public: escrow.seal(b"x", escrow.new_kek()[1]), "body"),
    ],
)
def test_bad_escrow_uploads_get_a_400_and_change_nothing(
    kek, owner_client, he_purchase, private_storage, make_body, field
):
    dataset_id = Dataset.objects.get(mode="he").pk
    response = owner_client.put(
        f"/api/v1/datasets/{dataset_id}/escrow/", data=make_body(kek[1]), content_type="application/octet-stream"
    )
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.json()
    assert Dataset.objects.get(pk=dataset_id).key_custody == "owner"
    assert not (private_storage / "he" / str(dataset_id) / ESCROW_FILE).exists()


def test_escrow_is_refused_when_the_server_has_no_kek(owner_client, he_purchase, settings):
    settings.CLOAKROOM_KEK_PRIVATE_KEY = settings.CLOAKROOM_KEK_PUBLIC_KEY = ""
    response = owner_client.get("/api/v1/he/escrow-key/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "escrow_unavailable"


def test_only_the_owner_can_escrow(kek, buyer_client, outsider_client, he_purchase):
    dataset_id = Dataset.objects.get(mode="he").pk
    blob = escrow.seal(b"x" * 100, kek[1])
    for client in (buyer_client, outsider_client):
        response = client.put(
            f"/api/v1/datasets/{dataset_id}/escrow/", data=blob, content_type="application/octet-stream"
        )
        assert response.status_code in (403, 404)
    assert base64.b64decode(kek[1])  # the fixture's key is a real one
