"""Hugging Face datasets (a hub name, a ``save_to_disk`` folder, or local data files), read as records.

``datasets`` is optional; it is imported only here. Positions are row indices: a map-style dataset resumes in
O(1) (Arrow random access); a streaming one skips ``row`` rows, which reads them again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError, SourceError
from .records import SourceRecord
from .stream import start_field

BATCH_ROWS = 1024


def _import_datasets():
    try:
        import datasets
    except ImportError as e:
        raise ConfigError(
            "reading a Hugging Face dataset needs the `datasets` package: pip install 'tokenmill[hf]'"
        ) from e
    return datasets


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")
    )


def _load(name_or_path, config, split, revision, data_files, streaming, cache_dir):
    datasets = _import_datasets()
    if data_files is None and _is_saved_dataset(name_or_path):
        ds = datasets.load_from_disk(name_or_path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise SourceError(
                    f"no split {split!r} in this saved dataset (it has {', '.join(ds)})", path=name_or_path
                )
            ds = ds[split]
        if streaming:
            ds = ds.to_iterable_dataset()
        return ds
    try:
        return datasets.load_dataset(
            name_or_path,
            config,
            split=split,
            revision=revision,
            data_files=data_files,
            streaming=streaming,
            cache_dir=cache_dir,
        )
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        raise SourceError(f"cannot load the dataset: {e}", path=name_or_path, reason="unreadable") from e


def read_hf(
    name_or_path: str,
    *,
    config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    data_files: Any = None,
    streaming: bool = False,
    start: dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> Iterator[SourceRecord]:
    """Rows of a dataset split as records (``row`` = 0-based index, position ``{"row": next row}``).

    ``name_or_path`` is a hub name (``org/name``), a builder (``json``, ``parquet``, ... with ``data_files``),
    or a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``. Remote code never runs.
    """
    row = 0 if start is None else start_field(start, "row", name_or_path, "dataset")
    ds = _load(name_or_path, config, split, revision, data_files, streaming, cache_dir)
    label = name_or_path if split is None else f"{name_or_path}[{split}]"
    return _stream_rows(ds, label, row) if streaming else _map_rows(ds, label, row)


def _map_rows(ds, label: str, row: int) -> Iterator[SourceRecord]:
    n = len(ds)
    while row < n:
        batch = ds[row : min(row + BATCH_ROWS, n)]
        keys = list(batch)
        count = min(row + BATCH_ROWS, n) - row
        records = (
            [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))] if keys else [{}] * count
        )
        for record in records:
            yield SourceRecord(record, label, None, row, {"row": row + 1})
            row += 1


def _stream_rows(ds, label: str, row: int) -> Iterator[SourceRecord]:
    if row:
        ds = ds.skip(row)
    for record in ds:
        yield SourceRecord(dict(record), label, None, row, {"row": row + 1})
        row += 1
