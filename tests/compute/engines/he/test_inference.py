"""Encrypted inference, crypto alone (no Django): the client's packing and keys
(cloakroom_client/he/inference.py), the server's scores (compute/engines/he/inference.py), and the
format between them (cloakroom_client/protocol/inference.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tenseal as ts
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from cloakroom_client.he import inference as client
from cloakroom_client.protocol import inference
from compute.engines.he import inference as engine


@pytest.fixture(scope="module")
def secret():
    return client.new_context()


@pytest.fixture(scope="module")
def public(secret):
    return engine.load_public_context(client.public_context_bytes(secret))


def roundtrip(secret, public, matrix, weights, intercept):
    rows = matrix.shape[0]
    blobs = client.encrypt_matrix(secret, matrix)
    container = inference.pack_blobs(blobs)
    received = inference.iter_blobs(io.BytesIO(container), count=len(blobs))
    out = list(engine.score_batches(public, received, weights=weights, intercept=intercept, rows=rows))
    return client.decrypt_scores(secret, out, rows=rows, scores=weights.shape[0])


def test_an_encrypted_row_decrypts_to_itself(secret):
    values = np.linspace(-3, 3, inference.SLOTS)
    (blob,) = client.encrypt_matrix(secret, values.reshape(-1, 1))
    decrypted = ts.ckks_vector_from(secret, blob).decrypt()
    assert np.max(np.abs(np.asarray(decrypted) - values)) < 1e-5


def test_packed_dot_products_equal_the_plaintext_scores_within_the_ckks_error(secret, public):
    rng = np.random.default_rng(1)
    rows = inference.SLOTS + 37  # a full batch and a partial one
    matrix = rng.uniform(-100, 2500, size=(rows, 5))
    weights = rng.normal(size=(3, 5)) * 0.01
    intercept = rng.normal(size=3)
    scores = roundtrip(secret, public, matrix, weights, intercept)
    assert scores.shape == (rows, 3)
    assert np.max(np.abs(scores - (matrix @ weights.T + intercept))) < 1e-3


def test_slots_past_the_paid_rows_come_back_as_zeros(secret, public):
    matrix = np.ones((inference.SLOTS, 2)) * 5.0  # the client packs a whole batch ...
    blobs = client.encrypt_matrix(secret, matrix)
    (out,) = engine.score_batches(public, blobs, weights=np.array([[1.0, 2.0]]), intercept=np.array([1.0]), rows=3)
    values = ts.ckks_vector_from(secret, out).decrypt()  # ... but pays for 3 rows
    assert np.allclose(values[:3], 16.0, atol=1e-3)
    assert np.max(np.abs(values[3:])) < 1e-3


def test_a_logistic_model_predicts_the_same_labels_on_the_breast_cancer_table(secret, public):
    data = load_breast_cancer()
    x, y = data.data, data.target
    fitted = LogisticRegression(max_iter=5000).fit(x, y)
    model = {
        "type": "logistic_regression",
        "classes": ["malignant", "benign"],
        "columns": list(data.feature_names),
        "coefficients": fitted.coef_.tolist(),
        "intercept": fitted.intercept_.tolist(),
    }
    weights, intercept = inference.linear_weights(model)
    scores = roundtrip(secret, public, x, weights, intercept)
    plain = fitted.decision_function(x)
    assert np.max(np.abs(scores[:, 0] - plain)) < 1e-3
    expected = [model["classes"][i] for i in fitted.predict(x)]
    assert inference.predictions(model, scores) == expected


def test_the_server_refuses_a_context_with_the_secret_key(secret):
    with pytest.raises(engine.RefusedInput, match="secret key"):
        engine.load_public_context(secret.serialize(save_secret_key=True))


def test_the_server_refuses_other_parameters():
    other = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=4096, coeff_mod_bit_sizes=[40, 20, 40])
    other.make_context_public()
    with pytest.raises(engine.RefusedInput, match="poly modulus degree"):
        engine.load_public_context(other.serialize())


def test_the_server_refuses_a_ciphertext_that_is_not_fresh(secret, public):
    vector = ts.ckks_vector(secret, [1.0] * inference.SLOTS) * 2.0  # one level down already
    with pytest.raises(engine.RefusedInput, match="fresh encryption"):
        list(engine.score_batches(public, [vector.serialize()], weights=np.ones((1, 1)), intercept=np.zeros(1), rows=1))


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"nope", "not a ciphertext container"),
        (inference.pack_blobs([b"a"]), "holds 1 ciphertexts; 2"),
        (inference.pack_blobs([b"a", b"b", b"c"]), "more than the 2"),
        (inference.pack_blobs([b"a", b""]), "empty"),
        (inference.pack_blobs([b"a", b"bb"])[:-1], "truncated"),
    ],
)
def test_a_bad_container_is_refused(data, problem):
    with pytest.raises(inference.InferenceError, match=problem):
        inference.check_container(io.BytesIO(data), count=2)


def test_the_link_is_applied_on_the_client():
    binary = {"type": "logistic_regression", "classes": ["no", "yes"]}
    assert inference.predictions(binary, np.array([[-0.5], [2.0]])) == ["no", "yes"]
    multi = {"type": "logistic_regression", "classes": ["a", "b", "c"]}
    assert inference.predictions(multi, np.array([[0.1, 0.3, -1.0]])) == ["b"]
    assert inference.score_names(multi) == ["score_a", "score_b", "score_c"]
    assert inference.predictions({"type": "linear_regression"}, np.array([[4.5]])) == [4.5]


def test_too_many_rows_for_one_request_are_refused():
    with pytest.raises(inference.InferenceError, match="rows must be at most"):
        inference.ciphertext_count(inference.SLOTS * 3, 120)
    assert inference.ciphertext_count(inference.SLOTS + 1, 30) == 60
