"""The client's calls for trying queries on fake data (docs/QUERIES.md) and for DP training
(docs/MODELS.md), mixed into :class:`cloakroom_client.client.Client`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from cloakroom_client import models
from cloakroom_client.frames import csv_frame


class TryAndTrain:
    """Needs the client's ``_request``, ``_raise_for_error``, ``session``, ``url`` and ``timeout``."""

    session: Any
    url: str
    timeout: float

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    @staticmethod
    def _raise_for_error(response: Any) -> None:  # pragma: no cover - the client's
        raise NotImplementedError

    def dummy_query(
        self,
        dataset_id: int,
        query: dict,
        *,
        epsilon: str | Decimal | float | None = None,
        delta: str | Decimal | float = "0",
    ) -> dict:
        """Try a query on the dataset's fake table, generated from its declared schema alone: free, at
        once, no purchase needed. The answer (``"dummy": true``) says nothing about the real data; a bad
        query raises the 400 a job would. ``epsilon`` (default 1) sets its noise; nothing is spent."""
        body: dict[str, Any] = {"kind": "query", "query": query, "delta": str(delta)}
        if epsilon is not None:
            body["epsilon"] = str(epsilon)
        return self._request("POST", f"datasets/{int(dataset_id)}/dummy-query/", json=body)

    def dummy_table(self, dataset_id: int, *, as_frame: bool = False):
        """The dataset's fake table (generated from the declared schema; not the real data) as CSV
        text, or with ``as_frame`` a pandas DataFrame."""
        response = self.session.get(f"{self.url}/api/v1/datasets/{int(dataset_id)}/dummy.csv", timeout=self.timeout)
        self._raise_for_error(response)
        return csv_frame(response.text) if as_frame else response.text

    def train(self, purchase: int, model: dict, *, epsilon: str | Decimal | float, delta: str | Decimal | float = "0"):
        """Submit a DP training job (docs/MODELS.md): ``model`` is ``{type, features, label, params}``."""
        body = {
            "purchase": int(purchase),
            "kind": "train",
            "model": model,
            "epsilon": str(epsilon),
            "delta": str(delta),
        }
        return self._request("POST", "jobs/", json=body)

    def model_file(self, job_id: int) -> dict:
        """A released train job's portable model file (plain JSON: parameters, encoding, receipt), or a PATE
        job's student (submitted with ``student=True``)."""
        return self._request("GET", f"jobs/{int(job_id)}/model/")

    def model(self, job_id: int):
        """The released model as a scikit-learn estimator rebuilt from its parameters (needs scikit-learn;
        cloakroom_client.models.design_matrix encodes a table of raw features for it)."""
        return models.estimator(self.model_file(job_id))
