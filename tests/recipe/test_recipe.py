"""Data recipes end to end with real Lance caches and a real tokenizer: deterministic builds, weighted mixtures,
rebuilding only what changed, resuming, cross-source dedup, validation files, and bad recipes refused before any
work starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import s3_server
from conftest import make_documents, write_jsonl
from tokenmill.cache import CacheReader, read_manifest
from tokenmill.cli import main as cli_main
from tokenmill.errors import ConfigError, RecordError
from tokenmill.loader import BatchIterator
from tokenmill.recipe import (
    load_recipe,
    parse_recipe,
    prepare_recipe,
    recipe_mixture,
    recipe_report,
    source_split,
)

moto_server, s3 = s3_server.moto_server, s3_server.s3  # the shared S3 fixtures (moto on 127.0.0.1)

RECIPE = """\
tokenizer: {tokenizer}
seed: 3
seq_len: 16
sources:
  web:
    urls: ["web/web-{{0..2}}.jsonl"]
    weight: 0.5
    validation: 0.1
    dedup: exact
  code:
    urls: ["code/*.parquet"]
    text_key: content
    weight: 0.3
    max_documents: 40
    sample: random
    sample_buffer: 8
  chat:
    urls: ["chat/train.jsonl"]
    format: chat
    weight: 0.2
    validation_urls: ["chat/val.jsonl"]
"""


def conversation(i: int, text: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"question {i}: what is {text[:40]}?"},
            {"role": "assistant", "content": text},
        ]
    }


def write_sources(root: Path, tokenizer: Path, recipe: str = RECIPE) -> Path:
    """Three sources of different formats and keys; web has copies planted across its shards."""
    docs = make_documents(150, seed=21, max_words=80)
    web = [[{"text": t, "id": i} for i, t in enumerate(docs[s:60:3])] for s in range(3)]
    originals = [list(w) for w in web]
    for s in range(3):  # every 4th record again in the next shard, with different spacing
        web[(s + 1) % 3] += [
            {"text": "  " + r["text"].replace(" ", "  "), "id": -1} for r in originals[s][::4]
        ]
    for s in range(3):
        write_jsonl(root / "web" / f"web-{s}.jsonl", web[s])
    (root / "code").mkdir(parents=True, exist_ok=True)
    code = [{"content": t, "path": f"f{i}.py"} for i, t in enumerate(docs[60:120])]
    for k in range(3):
        pq.write_table(pa.Table.from_pylist(code[k::3]), root / "code" / f"code-{k}.parquet")
    write_jsonl(root / "chat" / "train.jsonl", [conversation(i, t) for i, t in enumerate(docs[120:145])])
    write_jsonl(root / "chat" / "val.jsonl", [conversation(i, t) for i, t in enumerate(docs[145:150])])
    path = root / "recipe.yaml"
    path.write_text(recipe.format(tokenizer=tokenizer))
    return path


def cache_content(cache: str) -> dict:
    """Everything that decides what a loader reads: every row in order, the splits and skip counts."""
    table = lance.dataset(os.path.join(cache, "tokens.lance")).to_table()
    manifest = read_manifest(cache)
    return {
        "rows": table.to_pydict(),
        "splits": {k: vars(v) for k, v in manifest.splits.items()},
        "skipped": manifest.skipped,
        "threshold": manifest.split_threshold,
    }


CACHES = ("web", "code", "chat", "chat.validation")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tokenizer_path):
    """The recipe prepared once (workers=0); tests that do not modify it share it."""
    root = tmp_path_factory.mktemp("recipe")
    path = write_sources(root, tokenizer_path)
    summary = prepare_recipe(load_recipe(path), str(root / "out"), workers=0, progress=False)
    return root, path, summary


def test_prepared_twice_from_scratch_gives_identical_caches(built, tmp_path, tokenizer_path):
    root, path, first = built
    assert [(c.source, c.role, c.status) for c in first.caches] == [
        ("web", "train", "built"),
        ("code", "train", "built"),
        ("chat", "train", "built"),
        ("chat", "validation", "built"),
    ]
    # the second build runs on two worker processes: the content must not depend on timing
    second = prepare_recipe(load_recipe(path), str(tmp_path / "again"), workers=2, progress=False)
    for name in CACHES:
        assert cache_content(str(root / "out" / name)) == cache_content(str(tmp_path / "again" / name)), name
    # the planted copies were dropped and counted, the sample has its size, validation files are validation
    by = {(c.source, c.role): c for c in second.caches}
    assert by["web", "train"].skipped == {"duplicate": 15}
    assert by["web", "train"].documents == 60
    assert by["code", "train"].documents == 40
    assert read_manifest(str(root / "out" / "chat.validation")).splits["validation"].documents == 5
    assert read_manifest(str(root / "out" / "chat.validation")).splits["train"].documents == 0
    assert read_manifest(str(root / "out" / "chat")).splits["validation"].documents == 0
    assert read_manifest(str(root / "out" / "web")).splits["validation"].documents > 0


def test_random_sample_is_spread_over_the_source(built, tokenizer_path):
    root, _, _ = built
    from tokenmill.tokenizer import load_tokenizer

    tok = load_tokenizer(str(tokenizer_path))
    code = make_documents(150, seed=21, max_words=80)[60:120]
    index = {tuple(ids + [tok.eos_id]): i for i, ids in enumerate(tok.encode_batch(code))}
    reader = CacheReader(str(root / "out" / "code"))
    ix = reader.split_index("train")
    flat, offsets, _ = reader.take_rows(ix.rows)
    starts = offsets[:-1][ix.doc_start]
    ends = np.append(starts[1:], offsets[-1])
    picked = [index[tuple(flat[s:e].tolist())] for s, e in zip(starts, ends)]
    assert len(set(picked)) == 40
    # neither the first 40 rows of the files nor in file order: shards shuffled, records buffer-shuffled
    assert sorted(picked) != picked
    assert set(picked) != set(range(0, 60, 3)) | set(range(1, 60, 3))


def test_mixture_token_shares_match_the_weights(built):
    root, path, _ = built
    recipe = load_recipe(path)
    mixture = recipe_mixture(recipe, str(root / "out"), seq_len=16, mode="windows")
    assert mixture.names == ["web", "code", "chat"]
    it = BatchIterator(mixture, 100, rank=0, world_size=1, steps=100)
    tokens = np.zeros(3)
    for batch in it:  # windows: every sample is seq_len input tokens
        np.add.at(tokens, batch["source_index"], batch["input_ids"].shape[1])
    shares = tokens / tokens.sum()
    assert it.samples_consumed == 10_000
    assert np.abs(shares - [0.5, 0.3, 0.2]).max() < 0.01, shares
    # the validation mixture reads web's validation split and chat's validation files
    val = recipe_mixture(recipe, str(root / "out"), seq_len=16, split="validation")
    assert val.names == ["web", "chat"]
    assert source_split(recipe, str(root / "out"), "chat", "validation") == (
        str(root / "out" / "chat.validation"),
        "validation",
    )
    assert val.datasets[1].index.num_documents == 5


def test_report_shares_and_epochs(built, tmp_path):
    root, path, _ = built
    report = recipe_report(load_recipe(path), str(root / "out"), seq_len=16)
    rows = {r["name"]: r for r in report["sources"]}
    assert sum(r["token_share"] for r in rows.values()) == pytest.approx(1.0)
    for name, w in (("web", 0.5), ("code", 0.3), ("chat", 0.2)):
        assert rows[name]["token_share"] == pytest.approx(w, abs=0.01)
        r = rows[name]
        assert r["epochs_per_pass"] == r["draws_per_pass"] / r["samples"]
    assert sum(r["draws_per_pass"] for r in rows.values()) == report["samples_per_pass"]
    # "repeat": one pass ends when the source that needs the most draws has been read exactly once
    assert min(r["epochs_per_pass"] for r in rows.values()) == 1.0
    assert rows["chat"]["trained_tokens"] < rows["chat"]["tokens"]  # user turns are masked
    assert rows["chat"]["validation"]["documents"] == 5
    # the same through the CLI, as JSON and as a chart
    out = tmp_path / "shares.png"
    args = ["inspect", "--recipe", str(path), "--output", str(root / "out"), "--seq-len", "16"]
    assert cli_main([*args, "--plot", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_editing_one_source_rebuilds_only_that_source(tmp_path, tokenizer_path):
    path = write_sources(tmp_path, tokenizer_path)
    out = str(tmp_path / "out")
    prepare_recipe(load_recipe(path), out, workers=0, progress=False)
    versions = {n: CacheReader(os.path.join(out, n)).version for n in CACHES}
    before = {n: cache_content(os.path.join(out, n)) for n in CACHES}

    again = prepare_recipe(load_recipe(path), out, workers=0, progress=False)
    assert {c.status for c in again.caches} == {"up to date"}

    # one record of one web shard changes, keeping the file's size: the modification time tells
    shard = tmp_path / "web" / "web-1.jsonl"
    text = shard.read_text()
    shard.write_text(text.replace("doc ", "Doc ", 1))
    assert len(shard.read_text()) == len(text)
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    edited = prepare_recipe(load_recipe(path), out, workers=0, progress=False)
    status = {(c.source, c.role): c.status for c in edited.caches}
    assert status == {
        ("web", "train"): "rebuilt",
        ("code", "train"): "up to date",
        ("chat", "train"): "up to date",
        ("chat", "validation"): "up to date",
    }
    for name in ("code", "chat", "chat.validation"):
        assert CacheReader(os.path.join(out, name)).version == versions[name]
        assert cache_content(os.path.join(out, name)) == before[name]
    assert cache_content(os.path.join(out, "web")) != before["web"]

    # a new validation file for chat rebuilds only chat's validation cache
    write_jsonl(tmp_path / "chat" / "val.jsonl", [conversation(9, "a new validation conversation here")])
    status = {(c.source, c.role): c.status for c in prepare_recipe(load_recipe(path), out, workers=0).caches}
    assert [k for k, v in status.items() if v != "up to date"] == [("chat", "validation")]
    assert read_manifest(os.path.join(out, "chat.validation")).splits["validation"].documents == 1


def test_an_interrupted_recipe_resumes(tmp_path, tokenizer_path):
    path = write_sources(tmp_path, tokenizer_path)
    clean = tmp_path / "clean"
    prepare_recipe(load_recipe(path), str(clean), workers=0, progress=False)

    # the chat build dies halfway (here: an unreadable line of the same size and time as the good one, so the
    # input listing is unchanged, as after a crash or a kill); the sources before it are done
    chat = tmp_path / "chat" / "train.jsonl"
    good = chat.read_bytes()
    lines = good.splitlines(keepends=True)
    lines[19] = b"{" + b"x" * (len(lines[19]) - 2) + b"\n"
    stamp = chat.stat().st_mtime_ns
    chat.write_bytes(b"".join(lines))
    os.utime(chat, ns=(stamp, stamp))
    with pytest.raises(RecordError, match="train.jsonl, line 20"):
        prepare_recipe(load_recipe(path), str(tmp_path / "out"), workers=0, progress=False)
    state = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert state["caches"]["web"]["status"] == "done"
    assert state["caches"]["chat"]["status"] == "building"
    chat.write_bytes(good)
    os.utime(chat, ns=(stamp, stamp))
    summary = prepare_recipe(load_recipe(path), str(tmp_path / "out"), workers=0, progress=False)
    status = {(c.source, c.role): c.status for c in summary.caches}
    assert status["web", "train"] == status["code", "train"] == "up to date"
    assert status["chat", "train"] == "resumed"
    assert status["chat", "validation"] == "built"
    for name in CACHES:
        assert cache_content(str(tmp_path / "out" / name)) == cache_content(str(clean / name)), name


def test_dedup_across_sources_and_its_dependency(tmp_path, tokenizer_path):
    docs = make_documents(30, seed=4, max_words=50)
    write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in docs[:20]])
    write_jsonl(tmp_path / "b.jsonl", [{"body": t} for t in docs[10:30]])  # 10 documents also in a
    write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in docs[:30]])  # no dedup: keeps everything
    path = tmp_path / "r.yaml"
    path.write_text(
        f"tokenizer: {tokenizer_path}\n"
        "defaults: {dedup: exact, weight: 1}\n"
        "sources:\n"
        "  a: {urls: a.jsonl}\n"
        "  b: {urls: b.jsonl, text_key: body}\n"
        "  c: {urls: c.jsonl, dedup: none}\n"
    )
    out = str(tmp_path / "out")
    summary = prepare_recipe(load_recipe(path), out, workers=0)
    by = {c.source: c for c in summary.caches}
    assert (by["a"].documents, by["b"].documents, by["c"].documents) == (20, 10, 30)
    assert by["b"].skipped == {"duplicate": 10}
    # a changes: b depends on a's documents, so b is brought up to date too; c does not dedup, it stays
    write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in docs[:15]])
    status = {c.source: c.status for c in prepare_recipe(load_recipe(path), out, workers=0).caches}
    assert status == {"a": "rebuilt", "b": "rebuilt", "c": "up to date"}
    assert read_manifest(os.path.join(out, "b")).documents == 15
    # a source taken out of the recipe keeps its cache, out of the mixture
    path.write_text(path.read_text().replace("  c: {urls: c.jsonl, dedup: none}\n", ""))
    summary = prepare_recipe(load_recipe(path), out, workers=0)
    assert summary.stale == ["c"] and os.path.isdir(os.path.join(out, "c"))
    assert recipe_mixture(load_recipe(path), out, seq_len=8).names == ["a", "b"]


# ---------------------------------------------------------------------------------------------- bad recipes
BAD = [
    (
        '  web:\n    urls: ["web/web-{{0..2}}.jsonl"]\n',
        '  web:\n    txt_key: text\n    urls: ["web/web-{{0..2}}.jsonl"]\n',
        "line 6, key 'sources.web.txt_key'",
        "did you mean 'text_key'",
    ),
    ("    weight: 0.3\n", "    weight: heavy\n", "line 13, key 'sources.code.weight'", "must be a number"),
    ("code/*.parquet", "code/*.parqet", "key 'sources.code.urls'", "no file matches"),
    ("chat/val.jsonl", "chat/missing.jsonl", "key 'sources.chat.validation_urls'", "no file matches"),
    ("seq_len: 16\n", "seq_len: 16\nshuffle: true\n", "line 4, key 'shuffle'", "unknown option 'shuffle'"),
    (
        "    format: chat\n",
        "    format: chatt\n",
        "line 19, key 'sources.chat.format'",
        "unknown format 'chatt'",
    ),
    (
        "    max_documents: 40\n",
        "    max_total_tokens: 40\n",
        "line 14, key 'sources.code.max_total_tokens'",
        "token budget is max_tokens",
    ),
    (
        "    validation: 0.1\n",
        "    validation: 0.1\n    validation_urls: [x.jsonl]\n",
        "sources.web.validation_urls",
        "either validation",
    ),
    (
        "tokenizer: {tokenizer}",
        "tokenizer: missing/tokenizer.json",
        "line 1, key 'tokenizer'",
        "does not exist",
    ),
    ("    sample: random\n", "    sample: shuffled\n", "line 15, key 'sources.code.sample'", "'shuffled'"),
]


@pytest.mark.parametrize("old,new,where,what", BAD)
def test_bad_recipe_is_refused_before_any_work(tmp_path, tokenizer_path, old, new, where, what):
    assert old in RECIPE
    path = write_sources(tmp_path, tokenizer_path, RECIPE.replace(old, new))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as exc:
        prepare_recipe(load_recipe(path), str(out), workers=0)
    assert str(path) in str(exc.value) and where in str(exc.value) and what in str(exc.value), str(exc.value)
    assert not out.exists()


def test_cli_prepare_batches_and_errors(built, tmp_path, tokenizer_path, capsys):
    root, path, _ = built
    assert cli_main(["prepare", "--recipe", str(path), "--output", str(root / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [c["status"] for c in summary["caches"]] == ["up to date"] * 4
    args = ["batches", "--recipe", str(path), str(root / "out"), "--seq-len", "16", "--batch-size", "4"]
    assert cli_main([*args, "--steps", "3", "--digest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[0].startswith("0 ")
    # the prepared folder carries its recipe: the same batches without the YAML
    assert cli_main(["batches", "--recipe", str(root / "out"), *args[4:], "--steps", "3", "--digest"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    # errors: a flag that belongs in the recipe, and a bad recipe, exit 1 with the message on stderr
    assert cli_main(["prepare", "--recipe", str(path), "--output", str(tmp_path / "x"), "--seed", "1"]) == 1
    assert "--seed: set these per source in the recipe" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("weight: 0.5", "weight: [0.5]").replace("web/", f"{root}/web/"))
    assert cli_main(["prepare", "--recipe", str(bad), "--output", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "line 7, key 'sources.web.weight': weight must be a number" in err
    assert not (tmp_path / "y").exists()


def test_relative_paths_are_relative_to_the_recipe(built, monkeypatch, tmp_path):
    _, path, _ = built
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(path)
    assert recipe.source("web").urls == [str(path.parent / "web" / "web-{0..2}.jsonl")]
    assert recipe.source("code").format == {"text_key": "content"}
    assert recipe.source("code").max_documents == 40 and recipe.source("code").sample == "random"


@settings(max_examples=15, deadline=None)
@given(
    key=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12),
    depth=st.sampled_from(["top", "source", "defaults"]),
)
def test_every_unknown_key_is_named_with_its_line(tmp_path_factory, key, depth):
    from tokenmill.recipe import PREPARE_KEYS, RECIPE_KEYS, TOP_KEYS, _format_keys

    known = {*TOP_KEYS, *RECIPE_KEYS, *PREPARE_KEYS, *_format_keys(), "format"}
    assume(key not in known and isinstance(next(iter(yaml.safe_load(f"{key}: 1"))), str))
    lines = ["tokenizer: bytes", "sources:", "  a:", "    urls: x.jsonl", "    weight: 1"]
    if depth == "top":
        lines.insert(1, f"{key}: 1")
        dotted, line = key, 2
    elif depth == "source":
        lines.append(f"    {key}: 1")
        dotted, line = f"sources.a.{key}", 6
    else:
        lines[1:1] = ["defaults:", f"  {key}: 1"]
        dotted, line = f"defaults.{key}", 3
    path = tmp_path_factory.mktemp("keys") / "r.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"line {line}, key '{dotted}': unknown option '{key}'"):
        load_recipe(path)


def test_schema_checks_without_files():
    ok = {"tokenizer": "bytes", "sources": {"a": {"urls": "x.jsonl"}}}
    recipe = parse_recipe(ok)
    assert recipe.source("a").weight == 1.0 and recipe.mode == "windows"
    cases = [
        ({"sources": {"a": {"urls": "x"}}}, "no tokenizer"),
        ({**ok, "sources": {}}, "non-empty mapping"),
        ({**ok, "sources": {"a b": {"urls": "x"}}}, "source name"),
        ({**ok, "sources": {"a": {"weight": 1}}}, "exactly one of 'urls'"),
        ({**ok, "sources": {"a": {"urls": "x", "hf": {"name": "d"}}}}, "exactly one of 'urls'"),
        ({**ok, "sources": {"a": {"hf": {"name": "d", "revison": "x"}}}}, "did you mean 'revision'"),
        ({**ok, "sources": {"a": {"urls": "x", "weight": 0}}}, "every weight is 0"),
        ({**ok, "sources": {"a": {"urls": "x", "weight": True}}}, "must be a number"),
        ({**ok, "sources": {"a": {"urls": "x", "validation": 1.5}}}, "key 'sources.a.validation'"),
        ({**ok, "sources": {"a": {"urls": "x", "dedup": "fuzzy"}}}, "key 'sources.a.dedup'"),
        ({**ok, "defaults": {"urls": "x"}}, "set it per source"),
        ({**ok, "mode": "streamed"}, "windows, packed, padded"),
        ({**ok, "sources": {"a": {"urls": "x", "max_document_tokens": -3}}}, "max_tokens"),
        (
            {**ok, "sources": {"a": {"urls": "x", "format": {"text_key": "t"}, "text_key": "u"}}},
            "both inside",
        ),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError, match=None) as exc:
            parse_recipe(data)
        assert message in str(exc.value), (data, str(exc.value))


def test_state_records_the_recipe_without_credentials(tmp_path, tokenizer_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in make_documents(5, seed=1)])
    path = tmp_path / "r.yaml"
    path.write_text(
        f"tokenizer: {tokenizer_path}\n"
        "sources:\n"
        "  a: {urls: a.jsonl, storage_options: {aws_secret_access_key: hunter2}}\n"
    )
    prepare_recipe(load_recipe(path), str(tmp_path / "out"), workers=0)
    text = (tmp_path / "out" / "recipe.json").read_text()
    assert "hunter2" not in text and "aws_secret_access_key" in text
    again = load_recipe(tmp_path / "out")
    assert again.output == str(tmp_path / "out") and again.source("a").urls == [str(tmp_path / "a.jsonl")]


def test_hugging_face_sources(tmp_path, tokenizer_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    docs = make_documents(40, seed=8, max_words=40)
    saved = datasets.Dataset.from_list([{"text": t} for t in docs[:25]])
    datasets.DatasetDict({"train": saved, "test": saved.select(range(5))}).save_to_disk(
        str(tmp_path / "saved")
    )
    write_jsonl(tmp_path / "files" / "part.jsonl", [{"content": t} for t in docs[25:]])
    path = tmp_path / "r.yaml"
    path.write_text(
        f"tokenizer: {tokenizer_path}\n"
        "sources:\n"
        "  saved: {hf: {name: saved, split: test}, weight: 1}\n"
        "  built:\n"
        "    hf: {name: json, data_files: [files/part.jsonl], split: train, streaming: true}\n"
        "    text_key: content\n"
        "    weight: 1\n"
    )
    recipe = load_recipe(path)
    assert recipe.source("saved").hf == {"name": str(tmp_path / "saved"), "split": "test"}
    out = str(tmp_path / "out")
    summary = prepare_recipe(recipe, out, workers=0)
    assert [(c.source, c.documents) for c in summary.caches] == [("saved", 5), ("built", 15)]
    # the local files behind a HF source are listed, so editing them brings the source up to date
    write_jsonl(tmp_path / "files" / "part.jsonl", [{"content": t} for t in docs[25:35]])
    status = {
        c.source: (c.status, c.documents) for c in prepare_recipe(load_recipe(path), out, workers=0).caches
    }
    assert status == {"saved": ("up to date", 5), "built": ("rebuilt", 10)}
    # a missing data file or saved folder is named before any work starts
    path.write_text(path.read_text().replace("files/part.jsonl", "files/nope.jsonl"))
    with pytest.raises(
        ConfigError, match=r"line 5, key 'sources.built.hf.data_files': the data file .* does not"
    ):
        prepare_recipe(load_recipe(path), str(tmp_path / "other"), workers=0)
    assert not (tmp_path / "other").exists()


@pytest.mark.s3
def test_recipe_in_a_bucket(tmp_path, s3, tokenizer_path):
    """Sources and caches in S3 (credentials from the AWS variables the fixture sets): built, up to date by ETag,
    rebuilt when one object changes, read back as a mixture from the prepared folder alone."""
    docs = make_documents(40, seed=12, max_words=40)
    for k in range(2):
        s3.put(
            f"src/a-{k}.jsonl",
            "".join(json.dumps({"text": t}) + "\n" for t in docs[k * 10 : k * 10 + 10]).encode(),
        )
    s3.put("src/b.jsonl", "".join(json.dumps({"body": t}) + "\n" for t in docs[20:]).encode())
    path = tmp_path / "r.yaml"
    path.write_text(
        f"tokenizer: {tokenizer_path}\n"
        f"output: {s3.url('recipes/r')}\n"
        "sources:\n"
        f"  a: {{urls: '{s3.url('src/a-*.jsonl')}', weight: 2}}\n"
        f"  b: {{urls: '{s3.url('src/b.jsonl')}', text_key: body, weight: 1}}\n"
    )
    first = prepare_recipe(load_recipe(path), workers=0)
    assert [(c.source, c.status, c.documents) for c in first.caches] == [
        ("a", "built", 20),
        ("b", "built", 20),
    ]
    assert [c.status for c in prepare_recipe(load_recipe(path), workers=0).caches] == ["up to date"] * 2
    s3.put("src/b.jsonl", "".join(json.dumps({"body": t}) + "\n" for t in docs[25:]).encode())
    again = prepare_recipe(load_recipe(path), workers=0)
    assert [(c.source, c.status, c.documents) for c in again.caches] == [
        ("a", "up to date", 20),
        ("b", "rebuilt", 15),
    ]
    mixture = recipe_mixture(s3.url("recipes/r"), seq_len=8)
    assert mixture.names == ["a", "b"] and mixture.datasets[1].index.num_documents == 15
