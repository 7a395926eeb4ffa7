"""Encrypted inference for bench/models.py: a logistic regression on breast cancer (30 features) scored
on CKKS ciphertexts (N=8192, scale 2^40) with the project's own code, each side timed on its own.

- **client, encrypt**: ``cloakroom_client.he.inference.encrypt_matrix`` (rows packed column by column,
  one ciphertext per column per batch of 4,096 rows, serialised) and the container
  (``protocol.inference.pack_blobs``); the key is made once, as a client makes one per session;
- **server**: what ``compute.inference.services._score`` does without the files: the public context
  loaded and checked (``compute.engines.he.inference.load_public_context``), the container read
  (``iter_blobs``), every ciphertext loaded and checked, and the scores computed and serialised
  (``score_batches``); the context load is also timed alone;
- **client, decrypt**: ``decrypt_scores`` on the server's ciphertexts, and the link
  (``protocol.inference.predictions``).

The model is a plaintext scikit-learn logistic regression (standardised features, C = 1) fitted on a
70% split and expressed in raw units (what a released Cloakroom model holds), so that the encrypted
predictions on the 30% test split are compared with the plaintext predictions of the very same
parameters (the issue's anchor: "accuracy identical to plaintext", 0.9704). Medians of ``repeats``
runs after one warm-up.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cloakroom_client.he import inference as client
from cloakroom_client.protocol import inference
from compute.engines.he import inference as engine

SPLIT_SEED = 0
TEST_SHARE = 0.3


@dataclass
class HeRow:
    """One request size: medians in seconds, and the bytes each way."""

    rows: int
    ciphertexts: int
    encrypt: float
    server: float
    context: float
    decrypt: float
    upload_bytes: int
    scores_bytes: int

    @property
    def total(self) -> float:
        return self.encrypt + self.server + self.decrypt


@dataclass
class HeResult:
    features: int
    train_rows: int
    test_rows: int
    plaintext_accuracy: float
    encrypted_accuracy: float
    same_predictions: int
    max_score_error: float
    context_bytes: int
    sizes: list[HeRow] = field(default_factory=list)


def breast_cancer_model() -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The plaintext model (a Cloakroom model dict in raw units) and the split it was fitted on."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SHARE, random_state=SPLIT_SEED
    )
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0)
    fitted = LogisticRegression(max_iter=5000).fit((x_train - mean) / scale, y_train)
    coef = fitted.coef_ / scale  # the same scores on the raw features
    intercept = fitted.intercept_ - coef @ mean
    model = {
        "type": "logistic_regression",
        "classes": [0, 1],  # scikit-learn's codes: 0 malignant, 1 benign
        "columns": [str(n) for n in data.feature_names],
        "coefficients": coef.tolist(),
        "intercept": intercept.tolist(),
    }
    return model, x_train, x_test, y_train, y_test


def _median(fn: Callable[[], object], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _server(public: bytes, container: bytes, rows: int, weights: np.ndarray, intercept: np.ndarray) -> list[bytes]:
    ctx = engine.load_public_context(public)
    count = inference.ciphertext_count(rows, weights.shape[1])
    blobs = inference.iter_blobs(io.BytesIO(container), count=count)
    return list(engine.score_batches(ctx, blobs, weights=weights, intercept=intercept, rows=rows))


def time_size(ctx, public: bytes, model: dict, matrix: np.ndarray, repeats: int) -> HeRow:
    """Encrypt, score and decrypt ``matrix``'s rows as one request, each side timed alone."""
    weights, intercept = inference.linear_weights(model)
    rows = matrix.shape[0]
    container = inference.pack_blobs(client.encrypt_matrix(ctx, matrix))
    scores = _server(public, container, rows, weights, intercept)
    return HeRow(
        rows=rows,
        ciphertexts=inference.ciphertext_count(rows, weights.shape[1]),
        encrypt=_median(lambda: inference.pack_blobs(client.encrypt_matrix(ctx, matrix)), repeats),
        server=_median(lambda: _server(public, container, rows, weights, intercept), repeats),
        context=_median(lambda: engine.load_public_context(public), repeats),
        decrypt=_median(
            lambda: inference.predictions(
                model, client.decrypt_scores(ctx, scores, rows=rows, scores=weights.shape[0])
            ),
            repeats,
        ),
        upload_bytes=len(public) + len(container),
        scores_bytes=len(inference.pack_blobs(scores)),
    )


def encrypted_inference(sizes: list[int], repeats: int) -> HeResult:
    """Agreement with the plaintext model on the test split, then the timings per request size (rows
    drawn from the test split, repeated to fill a size larger than it)."""
    model, x_train, x_test, _, y_test = breast_cancer_model()
    weights, intercept = inference.linear_weights(model)
    ctx = client.new_context()
    public = client.public_context_bytes(ctx)

    container = inference.pack_blobs(client.encrypt_matrix(ctx, x_test))
    out = _server(public, container, len(x_test), weights, intercept)
    encrypted = client.decrypt_scores(ctx, out, rows=len(x_test), scores=weights.shape[0])
    plain = x_test @ weights.T + intercept
    got = np.asarray(inference.predictions(model, encrypted))
    want = np.asarray(inference.predictions(model, plain))
    result = HeResult(
        features=x_test.shape[1],
        train_rows=len(x_train),
        test_rows=len(x_test),
        plaintext_accuracy=float(np.mean(want == y_test)),
        encrypted_accuracy=float(np.mean(got == y_test)),
        same_predictions=int(np.sum(got == want)),
        max_score_error=float(np.max(np.abs(encrypted - plain))),
        context_bytes=len(public),
    )
    for rows in sizes:
        matrix = x_test[np.arange(rows) % len(x_test)]
        result.sizes.append(time_size(ctx, public, model, matrix, repeats))
    return result
