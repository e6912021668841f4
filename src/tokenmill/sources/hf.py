"""Hugging Face datasets (a hub name, a ``save_to_disk`` folder, or local data files), read as records.

``datasets`` is optional; it is imported only here. Positions are row indices: a map-style dataset resumes in
O(1) (Arrow random access); a streaming one skips ``row`` rows, which reads them again.

A source is described by :class:`HFSource`: the arguments of ``datasets.load_dataset`` as data (the blog's
``load_dataset("codeparrot/github-code", streaming=True, split="train", languages=["Python"])`` is
``{name: codeparrot/github-code, streaming: true, split: train, languages: [Python]}``). Its :meth:`HFSource.key`
names it among a cache's sources, so another dataset, config, split, revision, set of data files or argument is
another source: refused on a finished cache unless appended or rebuilt, like another file.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, SourceError
from .records import SourceRecord
from .stream import start_field

BATCH_ROWS = 1024
# the keys an HF source names itself; any other key is a load_dataset keyword argument (languages, data_dir, ...)
HF_KEYS = ("name", "config", "split", "revision", "data_files", "streaming", "validation_split", "kwargs")
# load_dataset arguments that a file may not set: remote code runs only when asked on the command line
REFUSED_KWARGS = {
    "trust_remote_code": "trust_remote_code runs code from the hub; pass --trust-remote-code on the command line",
    "split": "give split as its own key",
    "streaming": "give streaming as its own key",
}


@dataclass(frozen=True)
class HFSource:
    """One split of a Hugging Face dataset, as ``datasets.load_dataset`` would be asked for it.

    ``kwargs`` are further ``load_dataset`` keyword arguments, passed through as they are. ``validation_split``
    names the dataset's own held-out split (``test``, ``validation``) to use as tokenmill's validation split.
    ``streaming`` decides how rows are read, not which: it is no part of :meth:`key`.
    """

    name: str
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: Any = None
    streaming: bool = False
    validation_split: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: Any, where: str = "hf") -> HFSource:
        """Parse a YAML/CLI mapping (or a bare name); errors name the key as ``where.key``."""
        if isinstance(value, HFSource):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}: must be a dataset name or a mapping (name, split, ...), got {value!r}"
            )
        data = dict(value)
        name = data.pop("name", None) or data.pop("path", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{where}.name: a Hugging Face source needs a name (hub name, builder or folder)"
            )
        kwargs = data.pop("kwargs", None) or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"{where}.kwargs: must be a mapping of load_dataset arguments, got {kwargs!r}")
        kwargs = dict(kwargs)
        for key in list(data):
            if key not in HF_KEYS:
                close = difflib.get_close_matches(str(key), HF_KEYS, n=1, cutoff=0.8)
                if close:  # a misspelt key of ours, not a load_dataset argument
                    raise ConfigError(f"{where}.{key}: unknown key; did you mean {close[0]!r}?")
                kwargs[str(key)] = data.pop(key)
        for key, why in REFUSED_KWARGS.items():
            if key in kwargs:
                raise ConfigError(f"{where}.{key}: {why}")
        for key in ("config", "split", "revision", "validation_split"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigError(f"{where}.{key}: must be a string, got {data[key]!r}")
        if not isinstance(data.get("streaming", False), bool):
            raise ConfigError(f"{where}.streaming: must be true or false, got {data['streaming']!r}")
        files = data.get("data_files")
        if files is not None and not _valid_data_files(files):
            raise ConfigError(
                f"{where}.data_files: must be a path, a list of paths, or a mapping of split to paths"
            )
        try:
            json.dumps(kwargs)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: load_dataset arguments must be plain data (YAML values)") from None
        return cls(
            name=name,
            config=data.get("config"),
            split=data.get("split") or "train",
            revision=data.get("revision"),
            data_files=files,
            streaming=bool(data.get("streaming", False)),
            validation_split=data.get("validation_split"),
            kwargs=kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in configs and ledgers (defaults left out); ``from_dict`` reads it back."""
        out: dict[str, Any] = {"name": self.name, "split": self.split}
        for key in ("config", "revision", "data_files", "validation_split"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.streaming:
            out["streaming"] = True
        if self.kwargs:
            out["kwargs"] = dict(self.kwargs)
        return out

    def identity(self) -> dict[str, Any]:
        """What decides the rows: name, config, split, revision, data files and arguments (not streaming)."""
        out = self.to_dict()
        out.pop("streaming", None)
        out.pop("validation_split", None)
        return out

    def key(self) -> str:
        """A readable, exact name among a cache's sources: ``hf:NAME[:CONFIG][SPLIT][@REV] {other arguments}``."""
        head = f"hf:{self.name}" + (f":{self.config}" if self.config else "") + f"[{self.split}]"
        head += f"@{self.revision}" if self.revision else ""
        rest = {k: v for k, v in self.identity().items() if k not in ("name", "config", "split", "revision")}
        return head + (" " + json.dumps(rest, sort_keys=True, separators=(",", ":")) if rest else "")

    @property
    def reads_whole_split(self) -> bool:
        """Whether ``load_dataset`` downloads and converts the whole split before the first row (not streamed, not
        a ``save_to_disk`` folder, which is memory-mapped as it is)."""
        return not self.streaming and not (self.data_files is None and _is_saved_dataset(self.name))

    def for_split(self, split: str) -> HFSource:
        """The same dataset and arguments, another split (the dataset's own validation split)."""
        return HFSource(
            self.name, self.config, split, self.revision, self.data_files, self.streaming, None, self.kwargs
        )

    def read(
        self, start: dict[str, Any] | None = None, cache_dir: str | None = None
    ) -> Iterator[SourceRecord]:
        return read_hf(
            self.name,
            config=self.config,
            split=self.split,
            revision=self.revision,
            data_files=self.data_files,
            streaming=self.streaming,
            start=start,
            cache_dir=cache_dir,
            **self.kwargs,
        )


def _valid_data_files(files: Any) -> bool:
    if isinstance(files, str):
        return True
    if isinstance(files, list):
        return all(isinstance(f, str) for f in files)
    if isinstance(files, Mapping):
        return all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(f, str) for f in v))
            for v in files.values()
        )
    return False


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


def _load(name_or_path, config, split, revision, data_files, streaming, cache_dir, kwargs):
    datasets = _import_datasets()
    if data_files is None and _is_saved_dataset(name_or_path):
        if kwargs:
            raise ConfigError(
                f"{name_or_path}: a save_to_disk folder takes no load_dataset arguments "
                f"({', '.join(sorted(kwargs))}); filter it before saving, or name the hub dataset"
            )
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
            **kwargs,
        )
    except (FileNotFoundError, ValueError, ConnectionError, TypeError) as e:
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
    **load_kwargs: Any,
) -> Iterator[SourceRecord]:
    """Rows of a dataset split as records (``row`` = 0-based index, position ``{"row": next row}``).

    ``name_or_path`` is a hub name (``org/name``), a builder (``json``, ``parquet``, ... with ``data_files``),
    or a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``. ``load_kwargs`` go to
    ``load_dataset`` as they are (``languages=["Python"]``, ``data_dir=...``). Remote code never runs from
    here. With ``streaming=True`` rows are read as they are consumed: a consumer that stops early (a document
    budget met) reads no further, which is what makes a budget over a huge hub dataset cheap.
    """
    row = 0 if start is None else start_field(start, "row", name_or_path, "dataset")
    ds = _load(name_or_path, config, split, revision, data_files, streaming, cache_dir, load_kwargs)
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
    rows = iter(ds)
    while True:
        try:
            record = next(rows)
        except StopIteration:
            return
        except Exception as e:  # datasets raises pyarrow/builder errors for a bad data file, mid-stream
            raise SourceError(
                f"the dataset could not be read at this row: {type(e).__name__}: {e}", path=label, row=row
            ) from e
        yield SourceRecord(dict(record), label, None, row, {"row": row + 1})
        row += 1


def hf_identity(spec: Any) -> dict[str, Any]:
    """The fields that identify a Hugging Face source in a cache's ledger (:mod:`tokenmill.sources.identity`).

    ``dataset``: what was asked for (:meth:`HFSource.identity`: streaming left out, it changes no row). What can
    be seen without a network is added, so that a changed local dataset is noticed like a changed file: the
    fingerprint ``datasets`` wrote into a ``save_to_disk`` folder, and the size and modification time of local
    data files. A hub dataset is identified by its arguments; pin ``revision`` to pin its content.
    """
    source = HFSource.from_dict(spec)
    out: dict[str, Any] = {"dataset": source.identity()}
    if source.data_files is None and _is_saved_dataset(source.name):
        folder = source.name
        if os.path.exists(os.path.join(folder, "dataset_dict.json")):
            folder = os.path.join(folder, source.split)
        try:
            with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
                out["fingerprint"] = json.load(f).get("_fingerprint")
        except (OSError, ValueError):
            out["fingerprint"] = None
    files = _local_data_files(source.data_files)
    if source.data_files is None and os.path.isdir(source.name) and "fingerprint" not in out:
        # a script-free dataset folder (data files found by datasets itself), or the part data_dir names
        root = os.path.join(source.name, str(source.kwargs.get("data_dir", "")))
        files = _local_data_files(os.path.join(root, "**", "*"))
    if files:
        out["files"] = files
    return out


def _local_data_files(data_files: Any) -> dict[str, list[int]]:
    """Size and mtime of the local files that ``data_files`` names (globs expanded); URLs are left out."""
    import glob

    if data_files is None:
        return {}
    if isinstance(data_files, str):
        patterns = [data_files]
    elif isinstance(data_files, Mapping):
        patterns = [p for v in data_files.values() for p in ([v] if isinstance(v, str) else v)]
    else:
        patterns = list(data_files)
    out: dict[str, list[int]] = {}
    for pattern in patterns:
        if "://" in pattern:
            continue
        for path in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)) or [pattern]:
            if os.path.isdir(path):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[os.path.abspath(path)] = [st.st_size, st.st_mtime_ns]
    return out
