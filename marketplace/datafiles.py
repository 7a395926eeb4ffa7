"""Loading a stored DP dataset into the column arrays the engine takes.

Only worker processes call this. The decrypted rows live in memory for the job and in a small
per-process cache keyed by the stored file, never on disk in the clear and never in a log.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from compute.engines.dp import ColumnMeta
from marketplace import storage
from marketplace.models import Column, Dataset

_CACHE_SIZE = 2
_cache: OrderedDict[tuple[int, str], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def dataset_schema(dataset: Dataset) -> dict[str, ColumnMeta]:
    """The declared schema as the engine's column descriptions."""
    return {
        c.name: ColumnMeta(
            name=c.name,
            kind=c.kind,
            lower=c.lower,
            upper=c.upper,
            categories=tuple(c.categories or ()),
        )
        for c in Column.objects.filter(dataset=dataset).order_by("position")
    }


def dataset_columns(dataset: Dataset, schema: dict[str, ColumnMeta]) -> dict[str, Any]:
    """Decrypt and decode the stored file: numeric columns as float arrays, booleans as bool
    arrays, categorical columns as pandas Categoricals with exactly the declared categories."""
    key = (dataset.pk, dataset.file_path)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    table = pq.read_table(io.BytesIO(storage.read_decrypted(dataset.file_path)))
    frame = table.to_pandas()
    columns: dict[str, Any] = {}
    for name, meta in schema.items():
        series = frame[name]
        if meta.kind == "numeric":
            columns[name] = series.to_numpy(dtype=float)
        elif meta.kind == "boolean":
            columns[name] = series.to_numpy(dtype=bool)
        else:
            columns[name] = pd.Categorical(series.astype(str), categories=list(meta.categories))
    del frame, table
    with _lock:
        _cache[key] = columns
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return columns


def clear_cache() -> None:
    with _lock:
        _cache.clear()
