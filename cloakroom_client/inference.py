"""The client's calls for encrypted inference (docs/MODELS.md, "Encrypted inference"), mixed into
:class:`cloakroom_client.client.Client`: publish a trained model, read the catalogue, and
:meth:`Predictions.predict`, which encrypts a table on this machine with a fresh CKKS key, has the
server score the ciphertexts, and decrypts the scores here. The secret key never leaves this process.

TenSEAL is needed for ``predict`` only (``pip install "cloakroom-client[he]"``).
"""

from __future__ import annotations

import io
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from cloakroom_client import models
from cloakroom_client.he import inference as crypto
from cloakroom_client.progress import StatusLine
from cloakroom_client.protocol import inference

OPEN = ("queued", "running")


def rows_per_request(columns: int) -> int:
    """The most rows one request may carry for a model of ``columns`` encoded columns."""
    return min(inference.MAX_BATCHES, max(1, inference.MAX_CIPHERTEXTS // columns)) * inference.SLOTS


def score_frame(listing: dict, scores: np.ndarray, index: Any = None) -> pd.DataFrame:
    """The decrypted scores as a table: one column per score, a binary logistic model's probability of
    its second class (the sigmoid, applied here), and ``prediction``."""
    frame = pd.DataFrame(scores, columns=inference.score_names(listing), index=index)
    classes = listing.get("classes") or []
    if listing["type"] == "logistic_regression" and len(classes) == 2:
        frame[f"probability_{classes[1]}"] = inference.sigmoid(scores[:, 0])
    frame["prediction"] = inference.predictions(listing, scores)
    return frame


class Predictions:
    """Needs the client's ``_request``, ``_raise_for_error``, ``session``, ``url`` and ``timeout``."""

    session: Any
    url: str
    timeout: float

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    @staticmethod
    def _raise_for_error(response: Any) -> None:  # pragma: no cover - the client's
        raise NotImplementedError

    def publish_model(self, job_id: int, *, title: str, price_per_prediction: str | Decimal) -> dict:
        """List a released train job's model (yours) for encrypted inference."""
        body = {"job": int(job_id), "title": title, "price_per_prediction": str(price_per_prediction)}
        return self._request("POST", "models/", json=body)

    def published_models(self) -> list[dict]:
        """The catalogue of published models (the first page)."""
        return self._request("GET", "models/")["results"]

    def published_model(self, model_id: int) -> dict:
        return self._request("GET", f"models/{int(model_id)}/")

    def prediction(self, prediction_id: int) -> dict:
        return self._request("GET", f"predictions/{int(prediction_id)}/")

    def predict(
        self, model_id: int, frame: pd.DataFrame, *, progress: bool = True, timeout: float = 600.0
    ) -> pd.DataFrame:
        """Scores and predictions of a published model on ``frame`` (raw feature columns), computed by the
        server on ciphertexts only. Returns one row per row of ``frame``: the decrypted score(s), a binary
        model's probability, and ``prediction``. Costs the listing's price per row."""
        listing = self.published_model(model_id)
        matrix = models.design_matrix({"model": listing}, frame).to_numpy(dtype=float)
        names = inference.score_names(listing)
        step = rows_per_request(len(listing["columns"]))
        ctx = crypto.new_context()
        public = crypto.public_context_bytes(ctx)
        parts = []
        with StatusLine(enabled=progress) as line:
            for start in range(0, len(matrix), step):
                chunk = matrix[start : start + step]
                where = f"rows {start + 1}-{start + len(chunk)} of {len(matrix)}"
                line.show(f"model {int(model_id)}: encrypting {where}", key=("encrypting", start))
                container = inference.pack_blobs(crypto.encrypt_matrix(ctx, chunk))
                created = self._submit(int(model_id), len(chunk), public, container)
                done = self._wait(created["id"], line, where, timeout)
                line.show(f"model {int(model_id)}: decrypting {where}", key=("decrypting", start))
                count = len(names) * inference.batches(len(chunk))
                blobs = list(inference.iter_blobs(io.BytesIO(self._scores(done["id"])), count=count))
                parts.append(crypto.decrypt_scores(ctx, blobs, rows=len(chunk), scores=len(names)))
        scores = np.concatenate(parts, axis=0) if parts else np.zeros((0, len(names)))
        return score_frame(listing, scores, index=frame.index)

    def _submit(self, model_id: int, rows: int, context: bytes, container: bytes) -> dict:
        files = {
            "context": ("context.bin", context, "application/octet-stream"),
            "ciphertexts": ("ciphertexts.ct", container, "application/octet-stream"),
        }
        return self._request("POST", f"models/{model_id}/predictions/", data={"rows": str(rows)}, files=files)

    def _wait(self, prediction_id: int, line: StatusLine, where: str, timeout: float) -> dict:
        start = time.monotonic()
        delay = 0.2
        while True:
            current = self.prediction(prediction_id)
            elapsed = time.monotonic() - start
            text = f"prediction {prediction_id}: {current['status']:<9} {where} {elapsed:6.1f}s"
            line.show(text, key=current["status"])
            if current["status"] not in OPEN:
                if current["status"] != "ready":
                    raise inference.InferenceError(
                        f"prediction {prediction_id} {current['status']}: {current.get('error') or 'no reason given'}"
                    )
                return current
            if elapsed > timeout:
                raise TimeoutError(f"prediction {prediction_id} is still {current['status']} after {timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def _scores(self, prediction_id: int) -> bytes:
        response = self.session.get(f"{self.url}/api/v1/predictions/{prediction_id}/scores/", timeout=self.timeout)
        self._raise_for_error(response)
        return response.content
