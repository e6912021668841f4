"""`tokenmill batches`: digests agree across world sizes and across a save/resume, JSON has throughput, decode
shows the documents, mixtures and bad arguments behave."""

from __future__ import annotations

import json

import pytest

from conftest import build, make_documents, write_jsonl
from tokenmill.cli import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path):
    return str(build(jsonl_shards, tmp_path_factory.mktemp("cli") / "cache", tokenizer_path))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["batches", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def digests(capsys, *argv: str) -> dict[int, list[str]]:
    code, out, err = run(capsys, *argv, "--digest")
    assert code == 0, err
    by_step: dict[int, list[str]] = {}
    for line in out.splitlines():
        step, digest = line.split()
        assert len(digest) == 16
        by_step.setdefault(int(step), []).append(digest)
    return by_step


@pytest.mark.parametrize("mode", ["windows", "packed", "padded"])
def test_ranks_lines_together_equal_the_single_process_lines(capsys, cache, mode):
    common = [cache, "--seq-len", "64", "--batch-size", "8", "--steps", "4", "--mode", mode, "--seed", "3"]
    single = digests(capsys, *common)
    assert sorted(single) == [0, 1, 2, 3] and all(len(v) == 8 for v in single.values())
    assert len({d for v in single.values() for d in v}) == 32
    for world in (2, 4):
        ranks = [digests(capsys, *common, "--rank", str(r), "--world-size", str(world)) for r in range(world)]
        for step, lines in single.items():
            assert [d for rank in ranks for d in rank[step]] == lines


def test_save_state_and_resume_continue_the_stream(capsys, cache, tmp_path):
    common = [cache, "--seq-len", "128", "--batch-size", "4", "--seed", "1"]
    whole = digests(capsys, *common, "--steps", "10")
    state = tmp_path / "state.json"
    first = digests(capsys, *common, "--steps", "6", "--save-state", str(state))
    assert first == {s: whole[s] for s in range(6)}
    saved = json.loads(state.read_text())
    assert saved["step"] == 6 and saved["fingerprint"]["seq_len"] == 128
    halves = [
        digests(
            capsys, *common, "--steps", "4", "--resume", str(state), "--rank", str(r), "--world-size", "2"
        )
        for r in range(2)
    ]
    for step in range(6, 10):
        assert halves[0][step] + halves[1][step] == whole[step]
    code, _, err = run(capsys, cache, "--seq-len", "64", "--batch-size", "4", "--resume", str(state))
    assert code == 1 and "seq_len: saved 128, now 64" in err


def test_json_summary_has_throughput(capsys, cache):
    code, out, _ = run(capsys, cache, "--seq-len", "64", "--batch-size", "16", "--steps", "20", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["steps"] == 20 and summary["samples"] == 320 and summary["tokens"] == 320 * 64
    assert summary["samples_per_s"] > 0 and summary["tokens_per_s"] == pytest.approx(
        summary["samples_per_s"] * 64, rel=1e-3
    )
    assert summary["dataset"]["mode"] == "windows" and summary["state"]["step"] == 20


def test_decode_shows_the_documents(capsys, tmp_path, tokenizer_path):
    docs = make_documents(6, seed=4, min_words=30, max_words=40)[1:]  # document 0 is a long one
    records = [{"prompt": d[:40], "completion": d[40:]} for d in docs]
    cache = build(
        [write_jsonl(tmp_path / "a.jsonl", records)],
        tmp_path / "c",
        tokenizer_path,
        format={"format": "prompt-completion"},
    )
    code, out, _ = run(
        capsys, str(cache), "--seq-len", "512", "--batch-size", "1", "--mode", "padded", "--no-shuffle"
    )
    assert code == 0
    header, body = out.split("\n", 1)
    assert header.startswith("=== step 0 · rank 0/1 · sample 0")
    # the prompt (loss-masked) is shown in guillemets, the completion plain
    assert "\u00ab" in body and "\u00bb" in body
    plain = body.replace("\u00ab", "").replace("\u00bb", "")
    assert docs[0][:40] in plain and docs[0][40:] in plain


def test_mixture_weights(capsys, cache, tmp_path, tokenizer_path):
    other = build(
        [write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in make_documents(50, seed=9)])],
        tmp_path / "other",
        tokenizer_path,
    )
    code, out, _ = run(
        capsys,
        cache,
        str(other),
        "--weights",
        "0.75,0.25",
        "--seq-len",
        "32",
        "--batch-size",
        "100",
        "--steps",
        "100",
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    assert [round(m["share"], 2) for m in summary["dataset"]["mixture"]] == [0.75, 0.25]
    assert summary["samples"] == 10_000


def test_bad_arguments(capsys, cache):
    code, _, err = run(
        capsys, cache, "--seq-len", "64", "--batch-size", "6", "--world-size", "4", "--rank", "0"
    )
    assert code == 1 and "not divisible" in err
    code, _, err = run(capsys, cache, cache, "--weights", "1", "--seq-len", "64", "--batch-size", "4")
    assert code == 1 and "1 values for 2 caches" in err
    code, _, err = run(capsys, cache + "-missing", "--seq-len", "64", "--batch-size", "4")
    assert code == 1 and "not a tokenmill cache" in err
