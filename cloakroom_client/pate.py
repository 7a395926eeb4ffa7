"""The client's calls for PATE (docs/PATE.md): ensembles, and labels for a table of unlabelled rows,
mixed into :class:`cloakroom_client.client.Client`."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd


class Ensembles:
    """Needs the client's ``_request``, ``_pages`` and ``wait``."""

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    def _pages(self, path: str, params: dict | None = None) -> Any:  # pragma: no cover - the client's
        raise NotImplementedError

    def wait(self, job: Any, *, timeout: float = 300.0, poll: float = 0.5, progress: bool = True) -> dict:
        raise NotImplementedError  # pragma: no cover - the client's

    def ensembles(self) -> list[dict]:
        """Every ensemble: its members, schema (``features``, ``label``) and ``price_per_label``."""
        return list(self._pages("ensembles/"))

    def ensemble(self, ensemble_id: int) -> dict:
        return self._request("GET", f"ensembles/{int(ensemble_id)}/")

    def create_ensemble(
        self, *, title: str, dataset: int, price_per_label: str, description: str = "", label: str | None = None
    ) -> dict:
        """Create an ensemble from one of your published DP datasets (its first member)."""
        body: dict[str, Any] = {
            "title": title,
            "description": description,
            "dataset": int(dataset),
            "price_per_label": str(price_per_label),
        }
        if label:
            body["label"] = label
        return self._request("POST", "ensembles/", json=body)

    def join_ensemble(self, ensemble_id: int, dataset: int) -> dict:
        """Add one of your datasets to an ensemble (its declared columns must be the ensemble's)."""
        return self._request("POST", f"ensembles/{int(ensemble_id)}/members/", json={"dataset": int(dataset)})

    def leave_ensemble(self, ensemble_id: int, dataset: int) -> None:
        """Take one of your datasets out of an ensemble, for jobs submitted from now on."""
        self._request("DELETE", f"ensembles/{int(ensemble_id)}/members/{int(dataset)}/")

    def submit_pate(self, ensemble_id: int, frame: pd.DataFrame, **spec: Any) -> dict:
        """Submit a PATE job on ``frame`` (the ensemble's feature columns); returns the job, queued."""
        data = frame.to_csv(index=False).encode()
        return self._request(
            "POST",
            f"ensembles/{int(ensemble_id)}/jobs/",
            files={"file": ("rows.csv", io.BytesIO(data), "text/csv")},
            data={"spec": json.dumps(spec)},
        )

    def pate(
        self, ensemble_id: int, frame: pd.DataFrame, *, timeout: float = 600.0, progress: bool = True, **spec: Any
    ) -> pd.DataFrame:
        """Label the rows of ``frame`` by the ensemble's teachers (``spec``: teachers, threshold, sigma1,
        sigma2, max_queries, teacher_model, epsilon, seed, student; omitted ones get defaults). Waits for
        the job and returns a DataFrame on ``frame``'s index with ``label`` (None where not answered); its
        ``attrs`` hold the job id, answered, asked, epsilon and delta, and ``student`` (whether one was
        released: with ``student=True``, ``client.model(attrs["job"])`` rebuilds it in scikit-learn).
        Raises CloakroomError on a refusal and RuntimeError when the job fails."""
        job = self.wait(self.submit_pate(ensemble_id, frame, **spec), timeout=timeout, progress=progress)
        if job["status"] != "released":
            raise RuntimeError(f"PATE job {job['id']} {job['status']}: {job.get('error') or 'no labels'}")
        result = job["result"]
        labels = pd.DataFrame({"label": pd.Series(result["labels"], index=frame.index, dtype=object)})
        labels.attrs.update({"job": job["id"], **{k: result[k] for k in ("answered", "asked", "epsilon", "delta")}})
        labels.attrs["student"] = result.get("student") is not None
        return labels
