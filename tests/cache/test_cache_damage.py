"""The adversarial suite: every file of a finished cache deleted, truncated, corrupted or edited, and then read
as users read it (the loader in both read modes, `tokenmill verify`). Each outcome must be the right data or a
clear TokenmillError, never a traceback and never silently wrong data.

One small reference cache is built once; each case damages a copy of it. Derived files (``index/``) must come
back by themselves; everything else must be refused (or, for the Lance data, caught by its checksums).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import build, make_documents, write_jsonl
from tokenmill.cache.verify import verify_cache
from tokenmill.errors import TokenmillError
from tokenmill.loader import TokenDataset

SPLITS = ("train", "validation")


def _read_all(cache: Path, read: str) -> dict[str, np.ndarray]:
    """Every sample of both splits, as users read them."""
    out = {}
    for split in SPLITS:
        ds = TokenDataset(str(cache), split=split, seq_len=16, shuffle=False, read=read)
        out[split] = np.stack([np.asarray(ds[i]["input_ids"]) for i in range(len(ds))])
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tokenizer_path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("damage")
    src = write_jsonl(root / "a.jsonl", [{"text": t} for t in make_documents(80, seed=11, max_words=80)])
    cache = build([src], root / "cache", tokenizer_path, validation=0.2, unit_bytes=8_000)
    _read_all(cache, "memmap")  # derived files exist, so they are damaged too
    return cache, _read_all(cache, "lance")


def _files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :] if data else b"x")
    elif how == "zero":
        a, b = len(data) // 3, 2 * len(data) // 3
        path.write_bytes(data[:a] + bytes(b - a) + data[b:])


def _outcome(cache: Path, expected: dict[str, np.ndarray]) -> str:
    """'same' (correct data in both read modes), 'refused' (a TokenmillError), or an assertion error."""
    outcomes = []
    for read in ("memmap", "lance"):
        try:
            got = _read_all(cache, read)
        except TokenmillError:
            outcomes.append("refused")
            continue
        for split in SPLITS:
            assert np.array_equal(got[split], expected[split]), f"silently wrong data ({read}, {split})"
        outcomes.append("same")
    return "refused" if "refused" in outcomes else "same"


HOWS = ("delete", "truncate", "empty", "flip", "zero")


def _unread(cache: Path, name: str) -> bool:
    """Files no read of the finished version touches."""
    if name.startswith("tokens.lance/_versions/") and name.endswith(".manifest"):
        return not name.endswith(_newest_version_file(cache).name)
    # JSON records whose damage leaves reads correct (an edited date, a count of the ledger): correct data is
    # what the suite asks for; reads and verify refuse what would change the data
    return name.startswith(
        ("tokens.lance/_transactions/", "tokens.lance/_versions/latest", "ledger/", "manifest.json")
    )


def _newest_version_file(cache: Path) -> Path:
    """Lance names version files counting down from 2**64 (the newest sorts first)."""
    return min((cache / "tokens.lance" / "_versions").glob("*.manifest"), key=lambda p: int(p.stem))


def _cases(cache: Path, exhaustive: bool) -> list[tuple[str, str]]:
    """Every (file, damage) pair, or one damage per file in turn (the default suite's few seconds)."""
    names = _files(cache)
    if exhaustive:
        return [(n, h) for n in names for h in HOWS]
    return [(n, HOWS[i % len(HOWS)]) for i, n in enumerate(names)]


@pytest.mark.slow
def test_every_file_damaged_every_way_gives_correct_data_or_a_clear_error(reference, tmp_path):
    _run_cases(reference, tmp_path, exhaustive=True)


def test_every_file_damaged_one_way_gives_correct_data_or_a_clear_error(reference, tmp_path):
    _run_cases(reference, tmp_path, exhaustive=False)


def _run_cases(reference, tmp_path, exhaustive: bool) -> None:
    cache, expected = reference
    seen = set()
    for name, how in _cases(cache, exhaustive):
        copy = tmp_path / f"c-{len(seen)}"
        shutil.copytree(cache, copy)
        _damage(copy / name, how)
        try:
            outcome = _outcome(copy, expected)
        except AssertionError as exc:
            raise AssertionError(f"{how} {name}: {exc}") from None
        report = verify_cache(str(copy), deep=True)  # never a traceback either
        derived = name.startswith("index/")
        if how in ("delete", "empty") and not _unread(cache, name) and not derived:
            assert outcome == "refused" or not report.ok, f"{how} {name}: neither refused nor reported"
        if derived:
            assert outcome == "same", f"{how} {name}: a derived file must be rebuilt, not refused"
        seen.add((name, how))
        shutil.rmtree(copy)
    assert any(n.startswith("tokens.lance/data/") for n, _ in seen)
    assert any(n.startswith("index/stream-") for n, _ in seen)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dtype", "uint32"),
        ("dtype", "float32"),
        ("lance_version", 99),
        ("lance_version", "two"),
        ("row_tokens", -1),
        ("complete", "yes"),
        ("splits", []),
        ("split_threshold", -5),
        ("tokenizer", None),
        ("format_version", 99),
    ],
)
def test_every_edited_manifest_field_gives_correct_data_or_a_clear_error(reference, tmp_path, field, value):
    cache, expected = reference
    copy = tmp_path / "c"
    shutil.copytree(cache, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[field] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert _outcome(copy, expected) == "refused"


def test_the_newest_lance_version_removed_is_refused(reference, tmp_path):
    cache, expected = reference
    copy = tmp_path / "c"
    shutil.copytree(cache, copy)
    assert len(list((copy / "tokens.lance" / "_versions").glob("*.manifest"))) > 1  # several commits
    _newest_version_file(copy).unlink()
    assert _outcome(copy, expected) == "refused"
    assert not verify_cache(str(copy)).ok


def test_verify_passes_on_an_intact_cache_and_fails_on_changed_bytes(reference, tmp_path):
    cache, _ = reference
    report = verify_cache(str(cache), deep=True)
    assert report.ok, report.lines()
    copy = tmp_path / "c"
    shutil.copytree(cache, copy)
    data = sorted((copy / "tokens.lance" / "data").iterdir())[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    data.write_bytes(bytes(raw))
    report = verify_cache(str(copy), deep=True)
    assert not report.ok
    assert os.path.exists(copy / "manifest.json")
