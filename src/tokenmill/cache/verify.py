"""``tokenmill verify CACHE [--deep]``: check every file of a cache against what prepare recorded.

Each check gives one line, ``ok`` or the problem with what to do. Without ``--deep`` only small files and small
columns are read (seconds for a large cache); ``--deep`` reads every row of the Lance data and compares it with
the per-row checksums written at prepare, so bytes changed inside a data file are found too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from tokenmill.cache import store
from tokenmill.cache.fingerprint import batch_checksums, content_digest, file_digest, fingerprint_differences
from tokenmill.cache.index import INDEX_DIR, stream_intact
from tokenmill.cache.layout import TOKENS_DATASET
from tokenmill.errors import TokenmillError

REBUILD = "rebuild the cache (prepare with --overwrite)"


@dataclass
class VerifyReport:
    cache: str
    checks: list[tuple[str, str | None]] = field(default_factory=list)  # (what, problem or None)

    @property
    def ok(self) -> bool:
        return all(problem is None for _, problem in self.checks)

    def add(self, what: str, problem: str | None = None) -> None:
        self.checks.append((what, problem))

    def lines(self) -> list[str]:
        return [
            f"{'ok  ' if p is None else 'FAIL'} {what}{'' if p is None else ': ' + p}"
            for what, p in self.checks
        ]


def verify_cache(
    cache: str, storage_options: dict[str, str] | None = None, deep: bool = False
) -> VerifyReport:
    """Check manifest, Lance versions and dtype, tokenizer, ledger, counts, data fingerprint, derived files and,
    with ``deep``, every row against its checksum."""
    from tokenmill.cache.manifest import read_manifest
    from tokenmill.cache.reader import CacheReader
    from tokenmill.cache.writer import CacheCommitter

    cache = cache.rstrip("/")
    storage_options = store.resolve_storage_options(storage_options, cache)
    report = VerifyReport(cache)
    try:
        manifest = read_manifest(cache, storage_options)
    except TokenmillError as exc:
        report.add("manifest.json", str(exc))
        return report
    report.add("manifest.json")
    if not manifest.complete:
        report.add("complete", "a prepare is running or was killed: run the same prepare again to finish it")
    try:
        reader = CacheReader(cache, storage_options)
    except TokenmillError as exc:
        report.add(f"{TOKENS_DATASET} at the manifest's version", str(exc))
        return report
    report.add(f"{TOKENS_DATASET} version {reader.version} and token dtype {manifest.dtype}")
    _check_tokenizer(report, reader, manifest)
    committer = CacheCommitter(cache, reader.dataset.schema, storage_options)
    state = _check_ledger(report, committer, manifest)
    _check_counts(report, reader, manifest)
    _check_index(report, cache, reader)
    if deep:
        _check_rows(report, reader, committer, state)
    return report


def _check_tokenizer(report: VerifyReport, reader, manifest) -> None:
    folder = store.join(reader.cache, "tokenizer")
    for name, digest in sorted(manifest.tokenizer_files.items()):
        uri = store.join(folder, name)
        try:
            ok = file_digest(store.read_bytes(uri, reader.storage_options)) == digest
            problem = None if ok else f"differs from what prepare wrote; {REBUILD}"
        except OSError:
            problem = f"missing; {REBUILD}"
        report.add(f"tokenizer/{name}", problem)
    try:
        fp = reader.tokenizer.fingerprint
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        report.add("tokenizer/", f"cannot be loaded ({type(exc).__name__}: {exc}); {REBUILD}")
        return
    expected = manifest.tokenizer.get("fingerprint")
    report.add("tokenizer/ fingerprint", None if fp == expected else f"{fp} but the manifest says {expected}")


def _check_ledger(report: VerifyReport, committer, manifest):
    try:
        state = _read_committed(committer)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        report.add("ledger/committed.json", f"unreadable ({exc}); {REBUILD}")
        return None
    if state is None:
        report.add("ledger/committed.json", "missing: the cache cannot be resumed or extended")
        return None
    problem = None
    if manifest.complete and state.get("version") != manifest.lance_version:
        problem = f"names Lance version {state.get('version')}, the manifest {manifest.lance_version}"
    report.add("ledger/committed.json", problem)
    return state


def _read_committed(committer) -> dict | None:
    uri = committer._ledger("committed.json")
    if not store.exists(uri, committer.storage_options):
        return None
    data = store.read_json(uri, committer.storage_options)
    if not isinstance(data, dict) or not isinstance(data.get("through"), int):
        raise ValueError("not a ledger record")
    return data


def _check_counts(report: VerifyReport, reader, manifest) -> None:
    """Per-split counts and the data fingerprint, recomputed from the small columns."""
    from tokenmill.cache.reader import lance_reads

    try:
        with lance_reads(reader.cache):
            table = reader.dataset.to_table(columns=["piece", "num_tokens", "split_hash"])
    except TokenmillError as exc:
        report.add("Lance data (small columns)", str(exc))
        return
    piece = table.column("piece").to_numpy()
    tokens = int(table.column("num_tokens").to_numpy().astype(np.int64).sum())
    documents = int((piece == 0).sum())
    problem = None
    if (documents, tokens) != (manifest.documents, manifest.tokens):
        problem = f"{documents} documents, {tokens} tokens; the manifest says {manifest.documents}, {manifest.tokens}"
    report.add("document and token counts", problem)
    recorded = reader.data_fingerprint()
    if recorded is None:
        report.add("data fingerprint", None)  # a cache made before fingerprints: nothing to compare
        return
    now = dict(recorded, documents=documents, tokens=tokens)
    now["content"] = content_digest(table.column("split_hash").to_numpy()[piece == 0])
    diff = fingerprint_differences(recorded, now)
    report.add("data fingerprint", "; ".join(diff) + f"; {REBUILD}" if diff else None)


def _check_index(report: VerifyReport, cache: str, reader) -> None:
    """Derived files: each readable and matching its checksum, or said to be rebuilt on the next open."""
    if not store.is_local(cache):
        return
    folder = os.path.join(store.local_path(cache), INDEX_DIR)
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".npy"):
            problem = (
                None if stream_intact(path) else "damaged or without checksum: removed, rebuilt on next open"
            )
        elif name.endswith(".npz"):
            try:
                with np.load(path, allow_pickle=False) as z:
                    for key in z.files:
                        z[key]
                problem = None
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                problem = f"unreadable ({type(exc).__name__}): removed, rebuilt on next open"
        else:
            continue
        if problem is not None:
            _remove(path)
        report.add(f"index/{name}", problem)


def _remove(path: str) -> None:
    for p in (path, path + ".sum"):
        try:
            os.remove(p)
        except OSError:
            pass


def _check_rows(report: VerifyReport, reader, committer, state) -> None:
    """Every row of the Lance data against the per-row checksums written at prepare."""
    from tokenmill.cache.reader import lance_reads

    if state is None:
        report.add("rows (--deep)", "no ledger to compare with")
        return
    try:
        expected = committer.read_row_checksums(int(state["through"]))
    except (OSError, ValueError, KeyError) as exc:
        report.add("rows (--deep)", f"ledger/checksums unreadable ({exc}); {REBUILD}")
        return
    if expected is None:
        report.add("rows (--deep)", "no per-row checksums (made by an older tokenmill): rebuild to get them")
        return
    at, bad = 0, []
    try:
        with lance_reads(reader.cache):
            for batch in reader.dataset.to_batches(
                columns=["input_ids", "loss_mask"], batch_size=8192, scan_in_order=True
            ):
                got = batch_checksums(batch)
                want = expected[at : at + len(got)]
                if len(want) != len(got):
                    bad.append(at + len(want))
                    break
                bad.extend((at + np.flatnonzero(got != want)).tolist()[:10])
                at += len(got)
    except TokenmillError as exc:
        report.add("rows (--deep)", str(exc))
        return
    if not bad and at != len(expected):
        report.add("rows (--deep)", f"{at} rows, the checksums name {len(expected)}; {REBUILD}")
    elif bad:
        report.add("rows (--deep)", f"rows {bad[:10]} differ from what prepare wrote; {REBUILD}")
    else:
        report.add(f"rows (--deep): {at} rows match their checksums")


def report_json(report: VerifyReport) -> str:
    return json.dumps(
        {
            "cache": report.cache,
            "ok": report.ok,
            "checks": [{"check": w, "problem": p} for w, p in report.checks],
        }
    )
