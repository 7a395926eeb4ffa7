"""A PATE job's inputs as the engine takes them: the member datasets' rows and the buyer's unlabelled
rows, encoded the same way from the ensemble's declaration alone.

Numeric features are clipped to their declared bounds and scaled to [-1, 1]; a categorical feature is
one 0/1 column per declared category; a boolean is one 0/1 column. No bound or category is read off the
data. The label's classes are its declared categories (false and true for a boolean). Only worker
processes load member rows; they live in memory for the job and are never logged.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from marketplace import storage
from marketplace.datafiles import dataset_columns, dataset_schema
from marketplace.models import Dataset, Ensemble


def classes_of(label: dict[str, Any]) -> list[Any]:
    """The label's classes, from its declaration."""
    return [False, True] if label["kind"] == "boolean" else list(label["categories"])


def _feature(decl: dict[str, Any], values: Any) -> np.ndarray:
    """One declared feature as columns of the encoding (rows x 1, or rows x categories)."""
    if decl["kind"] == "numeric":
        lo, hi = float(decl["lower"]), float(decl["upper"])
        x = np.clip(np.asarray(values, dtype=float), lo, hi)
        return (2.0 * (x - lo) / (hi - lo) - 1.0)[:, None]
    if decl["kind"] == "boolean":
        return np.asarray(values, dtype=bool).astype(float)[:, None]
    categories = list(decl["categories"])
    codes = pd.Categorical(pd.Series(values).astype(str), categories=categories).codes
    onehot = np.zeros((len(codes), len(categories)))
    known = codes >= 0
    onehot[np.flatnonzero(known), codes[known]] = 1.0
    return onehot


def encode(features: list[dict[str, Any]], columns: dict[str, Any]) -> np.ndarray:
    """The rows of ``columns`` (name -> values) as the engine's feature matrix."""
    return np.hstack([_feature(decl, columns[decl["name"]]) for decl in features])


def labels_of(label: dict[str, Any], values: Any) -> np.ndarray:
    """A member's label column as the engine's classes (object array of categories or bools)."""
    if label["kind"] == "boolean":
        return np.asarray(values, dtype=bool).astype(object)
    return np.asarray(pd.Series(values).astype(str), dtype=object)


def member_rows(ensemble: Ensemble, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """A member dataset's rows, decrypted and encoded: (features, labels)."""
    columns = dataset_columns(dataset, dataset_schema(dataset))
    return encode(ensemble.features, columns), labels_of(ensemble.label, columns[ensemble.label["name"]])


def unlabelled_rows(ensemble: Ensemble, path: str) -> np.ndarray:
    """The buyer's stored unlabelled rows (checked at submission), decrypted and encoded."""
    frame = pq.read_table(io.BytesIO(storage.read_decrypted(path))).to_pandas()
    return encode(ensemble.features, {decl["name"]: frame[decl["name"]] for decl in ensemble.features})


def allocation_sizes(datasets: list[Dataset], teachers: int) -> list[int]:
    """The sizes the teachers are spread by. Rows' counts are private unless every member's owner made
    theirs public: an allocation read off private counts would move when a row is added, and with it
    which teacher every row is in. Without them, every member gets an equal share of the teachers."""
    if all(d.row_count_public for d in datasets):
        return [int(d.row_count) for d in datasets]
    return [teachers * 1000] * len(datasets)
