"""Levanter and RWKV-infctx configurations taken as they are (issue 14): their documented example configs, only
paths changed (tests/recipe/configs/), prepared, inspected, read as batches and converted; keys that cannot be
honoured refused before any work, naming file, line and key."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_documents, write_jsonl
from tokenmill.cache import read_manifest
from tokenmill.cli import main as cli_main
from tokenmill.errors import ConfigError
from tokenmill.recipe import load_foreign, load_recipe, parse_recipe, prepare_recipe

CONFIGS = Path(__file__).parent / "configs"


def copy_config(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(CONFIGS / name, tmp_path / name))


def write_jsonl_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def write_jsonl_zst(path: Path, records: list[dict]) -> None:
    import zstandard

    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))


@pytest.fixture
def levanter_tldr(tmp_path, tokenizer_path):
    docs = make_documents(50, seed=3, max_words=30)
    write_jsonl_gz(tmp_path / "data" / "train.1.jsonl.gz", [{"text": t} for t in docs[:20]])
    write_jsonl_gz(tmp_path / "data" / "train.2.jsonl.gz", [{"text": t} for t in docs[20:40]])
    write_jsonl_gz(tmp_path / "data" / "valid.1.jsonl.gz", [{"text": t} for t in docs[40:]])
    shutil.copy(tokenizer_path, tmp_path / "tokenizer.json")
    return copy_config(tmp_path, "levanter_tldr.yaml")


def test_levanter_tldr_prepare_inspect_batches_convert(levanter_tldr, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the hub name gpt2 is not available offline: one line that says which file to pass, before any work
    assert cli_main(["prepare", "--config", str(levanter_tldr), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "key 'data.tokenizer'" in err and "--tokenizer" in err, err
    assert not (tmp_path / "cache").exists()

    args = ["prepare", "--config", str(levanter_tldr), "--tokenizer", "tokenizer.json", "--workers", "0"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "a Levanter data section" in out and "data.train_urls" in out and "not data (ignored)" in out
    assert "model, optimizer, trainer" in out or "model" in out
    train = read_manifest(str(tmp_path / "cache" / "data"))
    val = read_manifest(str(tmp_path / "cache" / "data.validation"))
    assert train.documents == 40 and val.documents == 10 and val.splits["validation"].documents == 10

    assert cli_main(["prepare", "--config", str(levanter_tldr), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["sources"]["data"]["weight"] == 1.0
    assert cli_main(["inspect", "--config", str(levanter_tldr), "--seq-len", "16"]) == 0
    assert "data" in capsys.readouterr().out
    args = ["batches", "--config", str(levanter_tldr), "--seq-len", "16", "--batch-size", "2", "--digest"]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert "a Levanter data section" in captured.err and len(captured.out.split()) == 4  # 2 x "step hash"

    # `train --data` on this file runs in docs/migrate/levanter.md (tests/recipe/test_migrate_docs.py)
    assert cli_main(["train", "--config", str(levanter_tldr)]) == 1
    assert f"--data {levanter_tldr}" in capsys.readouterr().err
    assert cli_main(["recipe", "convert", str(levanter_tldr), "--tokenizer", "tokenizer.json"]) == 0
    native = tmp_path / "levanter_tldr.recipe.yaml"
    data = yaml.safe_load(native.read_text())
    assert data["sources"]["data"]["urls"] == ["data/train.{1..2}.jsonl.gz"] and data["output"] == "cache"
    same = load_recipe(native)
    assert [s.to_json() for s in same.sources] == [s.to_json() for s in load_recipe(levanter_tldr).sources]


def test_levanter_pile_mixture_weights_and_policy(tmp_path, tokenizer_path):
    pytest.importorskip("zstandard")
    config = copy_config(tmp_path, "levanter_pile_mixture.yaml")
    for i, name in enumerate(("arxiv", "github", "pile_cc")):
        docs = make_documents(24, seed=10 + i, max_words=30)
        for part in range(2):
            write_jsonl_zst(
                tmp_path / "pile-domains" / name / f"train-0{part}.jsonl.zst",
                [{"text": t} for t in docs[part * 10 : part * 10 + 10]],
            )
        write_jsonl_zst(tmp_path / "pile-domains" / name / "val.jsonl.zst", [{"text": t} for t in docs[20:]])
    conversion = load_foreign(config, tokenizer=str(tokenizer_path))
    recipe = conversion.recipe
    assert recipe.names == ["arxiv", "github", "pile_cc"] and recipe.policy == "repeat"
    assert recipe.source("pile_cc").weight == pytest.approx(0.1811)
    assert recipe.output == str(tmp_path / "tokenized" / "pile-domains")
    summary = prepare_recipe(recipe, workers=0)
    assert sorted(c.cache.rsplit("/", 1)[-1] for c in summary.caches) == [
        "arxiv",
        "arxiv.validation",
        "github",
        "github.validation",
        "pile_cc",
        "pile_cc.validation",
    ]
    assert all(c.documents in (20, 4) for c in summary.caches)


def test_levanter_hf_id(tmp_path, tokenizer_path):
    datasets = pytest.importorskip("datasets")
    docs = make_documents(30, seed=5, max_words=20)
    splits = {"train": docs[:24], "validation": docs[24:]}
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list([{"text": t} for t in v]) for k, v in splits.items()}
    ).save_to_disk(str(tmp_path / "wikitext"))
    shutil.copy(tokenizer_path, tmp_path / "tokenizer.json")
    conversion = load_foreign(copy_config(tmp_path, "levanter_hf.yaml"))
    hf = conversion.recipe.source("data").hf
    assert hf["name"] == str(tmp_path / "wikitext") and hf["split"] == "train" and not hf.get("streaming")
    assert hf["validation_split"] == "validation"  # Levanter reads the dataset's own validation split
    summary = prepare_recipe(conversion.recipe, workers=0)
    assert [(c.role, c.documents) for c in summary.caches] == [("train", 24), ("validation", 6)]


@pytest.mark.parametrize(
    "section,key,message",
    [
        ({"train_urls": ["a.jsonl"], "traing_urls": ["b"]}, "data.traing_urls", "did you mean 'train_urls'"),
        (
            {"configs": {"a": {"train_urls": ["a.jsonl"]}}, "train_weights": [[0, {"b": 1.0}]]},
            "data.train_weights.0",
            "no config named 'b'",
        ),
        (
            {"configs": {"a": {"train_urls": ["a.jsonl"]}}, "train_weights": {"a": 1}, "stop_strategy": "x"},
            "data.stop_strategy",
            "cannot be honoured",
        ),
        ({"train_urls": ["a.jsonl"], "ignore_token_id": -100}, "data.ignore_token_id", "cannot be honoured"),
        ({"train_urls": ["a.jsonl"], "plaintext": True}, "data.plaintext", "input_format: text"),
    ],
)
def test_levanter_keys_that_cannot_be_honoured(tmp_path, section, key, message):
    path = tmp_path / "lev.yaml"
    path.write_text(yaml.safe_dump({"data": section, "model": {"type": "gpt2"}}, sort_keys=False))
    with pytest.raises(ConfigError) as exc:
        load_foreign(path)
    assert f"key {key!r}" in str(exc.value) and message in str(exc.value), str(exc.value)
    assert f"{path}, line " in str(exc.value)


# --------------------------------------------------------------------------------------------------- RWKV


def test_rwkv_local_jsonl_example(tmp_path, tokenizer_path, capsys, monkeypatch):
    config = copy_config(tmp_path, "rwkv_local_jsonl.yaml")
    docs = make_documents(60, seed=7, max_words=30)
    write_jsonl(tmp_path / "dataset" / "jsonl" / "part-0.jsonl", [{"text": t} for t in docs[:30]])
    write_jsonl(
        tmp_path / "dataset" / "jsonl" / "part-1.jsonl",
        [{"prompt": t[:20], "completion": t[20:]} for t in docs[30:]],
    )
    monkeypatch.chdir(tmp_path)
    assert cli_main(["prepare", "--config", str(config), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    assert "'world'" in err and "rwkv_vocab" in err and len(err.strip().splitlines()) == 1
    shutil.copy(tokenizer_path, tmp_path / "tokenizer.json")
    args = ["prepare", "--config", str(config), "--tokenizer", "tokenizer.json", "--workers", "0"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    for key in ("data.source_data_dir", "data.test_split", "data.test_split_shuffle", "model.ctx_len"):
        assert key in out, (key, out)
    recipe = load_foreign(config, tokenizer="tokenizer.json").recipe
    assert recipe.mode == "padded" and recipe.seq_len == 1024
    assert recipe.output == str(tmp_path / "datapath" / "sample-mem-train")
    manifest = read_manifest(str(tmp_path / "datapath" / "sample-mem-train" / "data"))
    assert manifest.documents == 60 and manifest.splits["validation"].documents >= 0
    # prompt/completion records keep RWKV's default prompt mask
    assert manifest.splits["train"].trained_tokens < manifest.splits["train"].tokens


def test_rwkv_local_text_rechunk_and_own_test_split(tmp_path, tokenizer_path):
    config = copy_config(tmp_path, "rwkv_local_text.yaml")
    docs = make_documents(40, seed=9, max_words=15)
    text = tmp_path / "dataset" / "text"
    text.mkdir(parents=True)
    (text / "enwik8-train.txt").write_text("\n".join(docs[:35]) + "\n")
    (text / "enwik8-test.txt").write_text("\n".join(docs[35:]) + "\n")
    conversion = load_foreign(config, tokenizer=str(tokenizer_path))
    recipe = conversion.recipe
    spec = recipe.source("data")
    assert recipe.mode == "windows" and recipe.seq_len == 64  # text_rechunk_size
    assert spec.prepare["input_format"] == "text" and spec.prepare["text_split"] == "lines"
    assert spec.urls == [str(text / "enwik8-train.txt")] and spec.validation_urls == [
        str(text / "enwik8-test.txt")
    ]
    assert spec.validation is None  # the dataset's own test split wins over test_split
    assert (
        spec.format["min_tokens"] == 2 and "max_tokens" not in spec.format
    )  # RWKV's defaults, -1 = no limit
    summary = prepare_recipe(recipe, workers=0)
    assert [c.role for c in summary.caches] == ["train", "validation"]


def test_rwkv_multi_column_keys(tmp_path, tokenizer_path):
    config = copy_config(tmp_path, "rwkv_multi_column.yaml")
    rows = [
        {"instruction": f"Say {i}", "input": "" if i % 2 else f"context {i}", "output": f"answer {i} " * 3}
        for i in range(20)
    ]
    write_jsonl(tmp_path / "dolly" / "train.jsonl", rows)
    conversion = load_foreign(config, tokenizer=str(tokenizer_path))
    fmt = conversion.recipe.source("data").format
    assert fmt["column_keys"] == ["instruction", "input", "output"]
    assert fmt["column_prefixes"] == ["Instruction:\\n", "Input:\\n", "Output:\\n"]  # unescaped by the format
    assert fmt["column_train"] == [True, False, True] and fmt["column_separator"] == "\\n\\n"
    assert any("does not train prefixes" in meaning for _, meaning in conversion.understood)
    summary = prepare_recipe(conversion.recipe, workers=0)
    assert summary.caches[0].documents + sum(summary.caches[0].skipped.values()) == 20
    assert summary.caches[0].trained_tokens < summary.caches[0].tokens


@pytest.mark.parametrize(
    "extra,key,message",
    [
        ({"sort_by_length": True}, "data.sort_by_length", "cannot be honoured"),
        ({"conversation_format": "iopairs"}, "data.conversation_format", "format: chat"),
        ({"multi_column_keys": []}, "data.multi_column_keys", "prompt-completion"),
        ({"data_prefix_skip_mask": 3}, "data.data_prefix_skip_mask", "cannot be honoured"),
        ({"dataset_offset": 10}, "data.dataset_offset", "cannot be honoured"),
        ({"test_splitt": 0.1}, "data.test_splitt", "did you mean 'test_split'"),
    ],
)
def test_rwkv_keys_that_cannot_be_honoured(tmp_path, extra, key, message):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.jsonl").write_text('{"text": "x y z"}\n')
    path = tmp_path / "rwkv.yaml"
    data = {"source": "json", "source_data_dir": "files", "tokenizer": "neox", **extra}
    path.write_text(yaml.safe_dump({"trainer": {"max_steps": 1}, "data": data}, sort_keys=False))
    with pytest.raises(ConfigError) as exc:
        load_foreign(path)
    assert f"key {key!r}" in str(exc.value) and message in str(exc.value), str(exc.value)


def test_rwkv_lengths_and_test_split_counts(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.jsonl").write_text('{"text": "x"}\n')
    path = tmp_path / "r.yaml"
    data = {"source": "f", "min_token_size": 16, "max_token_size": 512, "test_split": 0, "tokenizer": "bytes"}
    path.write_text(yaml.safe_dump({"data": data}))
    spec = load_foreign(path).recipe.source("data")
    assert spec.format == {"min_tokens": 16, "max_tokens": 512, "truncate": "drop"}
    assert spec.validation == 1  # RWKV keeps at least one test sample
    native = load_foreign(path).native
    assert parse_recipe(native, base=str(tmp_path)).source("data").urls == [str(tmp_path / "f")]


def test_rwkv_hub_source_with_load_dataset_arguments(tmp_path):
    """The blog's codeparrot/github-code with languages=[Python], as RWKV's source_dataset_params (not built:
    a hub dataset needs the network)."""
    path = tmp_path / "r.yaml"
    data = {"source": "codeparrot/github-code", "source_dataset_params": {"languages": ["Python"]}}
    path.write_text(yaml.safe_dump({"data": {**data, "tokenizer": "neox", "test_split": 100}}))
    conversion = load_foreign(path)
    spec = conversion.recipe.source("data")
    assert spec.hf["name"] == "codeparrot/github-code" and spec.hf["kwargs"] == {"languages": ["Python"]}
    assert spec.validation == 100
    assert any("validation_split: test" in meaning for _, meaning in conversion.understood)


WEIRD = ["x", 5, -1, 0.5, [1], ["a"], {"a": 1}, None, True]
BASES = [
    ({"source": "json", "source_data_dir": "f", "tokenizer": "neox"}, "rwkv"),
    ({"source": "org/dataset", "tokenizer": "neox"}, "rwkv"),
    ({"train_urls": ["f/a.jsonl"], "tokenizer": "bytes"}, "levanter"),
    ({"configs": {"a": {"train_urls": ["f/a.jsonl"]}}, "train_weights": {"a": 1}}, "levanter"),
]


@settings(max_examples=150, deadline=None)
@given(base=st.sampled_from(BASES), key_index=st.integers(0, 200), value=st.sampled_from(WEIRD))
def test_any_value_of_any_key_is_read_or_refused_never_a_traceback(tmp_path_factory, base, key_index, value):
    """Any key of either tool with a value of any YAML type: a recipe, or a ConfigError naming file and key."""
    from tokenmill.recipe import levanter, rwkv

    section, tool = base
    keys = rwkv.KEYS if tool == "rwkv" else levanter.KEYS
    key = keys[key_index % len(keys)]
    folder = tmp_path_factory.getbasetemp() / "weird"
    (folder / "f").mkdir(parents=True, exist_ok=True)
    (folder / "f" / "a.jsonl").write_text('{"text": "x"}\n')
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {**section, key: value}, "model": {"ctx_len": 64}}))
    try:
        load_foreign(path)
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_levanter_weight_stages_are_a_schedule(tmp_path):
    """``train_weights: [[step, weights], ...]`` (Levanter's weights that change during training) is a recipe
    schedule holding each stage's weights until the next."""
    for name in ("web", "code"):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": t} for t in make_documents(5, seed=1)])
    path = tmp_path / "stages.yaml"
    data = {
        "configs": {"web": {"train_urls": ["web.jsonl"]}, "code": {"train_urls": ["code.jsonl"]}},
        "train_weights": [[0, {"web": 0.9, "code": 0.1}], [1000, {"web": 0.5, "code": 0.5}]],
        "tokenizer": "bytes",
    }
    path.write_text(yaml.safe_dump({"data": data}, sort_keys=False))
    recipe = load_foreign(path).recipe
    assert recipe.schedule == [
        {"at": 0, "weights": {"web": 0.9, "code": 0.1}, "segment": "constant"},
        {"at": 1000, "weights": {"web": 0.5, "code": 0.5}, "segment": "constant"},
    ]
