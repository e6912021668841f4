"""Taking over a Lance token dataset made outside tokenmill: the Lance tutorial's layout (one token per row) and
one document per row. The cache holds the dataset's tokens, in order, and prepare says what it assumed.
"""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest

import s3_server
from tokenmill.cache import CacheReader
from tokenmill.cli import main
from tokenmill.errors import ConfigError, SourceError, TokenmillError
from tokenmill.prepare import PrepareConfig, prepare
from tokenmill.tokenizer import load_tokenizer

moto_server, s3 = s3_server.moto_server, s3_server.s3  # the shared S3 fixtures


def tutorial_dataset(path, docs: list[list[int]], column: str = "input_ids") -> str:
    """Written as "Creating text dataset for LLM training using Lance" does: a batch of int64 per document."""
    schema = pa.schema([pa.field(column, pa.int64())])

    def process_samples():
        for ids in docs:
            yield pa.RecordBatch.from_arrays([ids], names=[column])

    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, process_samples()), str(path), schema)
    return str(path)


@pytest.fixture(scope="module")
def token_docs(documents, tokenizer_path) -> list[list[int]]:
    tok = load_tokenizer(tokenizer_path)
    return [list(tok.encode(t)) for t in documents[:120]]


def cache_documents(cache) -> list[list[int]]:
    reader = CacheReader(str(cache))
    index = reader.split_index("train")
    flat, offsets, _ = reader.take_rows(index.rows)
    starts = offsets[:-1][index.doc_start]
    ends = np.append(starts[1:], offsets[-1])
    return [flat[s:e].astype(np.int64).tolist() for s, e in zip(starts, ends)]


def build(source, out, tokenizer, **kw):
    kw.setdefault("workers", 0)
    return prepare(PrepareConfig(sources=[str(source)], output=str(out), tokenizer=str(tokenizer), **kw))


@pytest.mark.parametrize("column", ["input_ids", "value"])  # the tutorial's name, and the Lance blog's
def test_tutorial_layout_gives_the_same_token_stream(tmp_path, token_docs, tokenizer_path, column):
    src = tutorial_dataset(tmp_path / "wikitext_500K.lance", token_docs, column)
    summary = build(src, tmp_path / "cache", tokenizer_path, row_tokens=256, unit_bytes=8 * 1000)
    total = sum(len(d) for d in token_docs)
    assert summary.tokens == total
    docs = cache_documents(tmp_path / "cache")
    assert [t for d in docs for t in d] == [t for d in token_docs for t in d]
    assert all(len(d) == 256 for d in docs[:-1])  # one stream cut into pieces of row_tokens
    (note,) = summary.notes
    assert "no document boundaries" in note and f"column {column!r}" in note and str(total) in note


def test_document_per_row_layout_keeps_documents(tmp_path, token_docs, tokenizer_path):
    table = pa.table(
        {"input_ids": pa.array(token_docs, pa.list_(pa.int64())), "source": ["x"] * len(token_docs)}
    )
    lance.write_dataset(table, str(tmp_path / "docs.lance"), max_rows_per_file=40)
    summary = build(tmp_path / "docs.lance", tmp_path / "cache", tokenizer_path, unit_bytes=4000, workers=2)
    assert cache_documents(tmp_path / "cache") == token_docs
    assert "one document per row" in summary.notes[0]
    again = build(tmp_path / "docs.lance", tmp_path / "cache", tokenizer_path, unit_bytes=4000)
    assert again.status == "nothing to do"


def test_cli_prints_the_assumption_and_batches_says_what_to_run(tmp_path, token_docs, tokenizer_path, capsys):
    src = tutorial_dataset(tmp_path / "tutorial.lance", token_docs)
    assert main(["batches", src, "--seq-len", "8", "--batch-size", "2"]) != 0
    err = capsys.readouterr().err
    assert "not a tokenmill cache" in err and f"tokenmill prepare {src} --tokenizer" in err
    cache = tmp_path / "c"
    argv = ["prepare", src, "--tokenizer", str(tokenizer_path), "--output", str(cache), "--workers", "0"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "one token per row" in out.err and "no document boundaries" in out.err
    assert main(["batches", str(cache), "--seq-len", "8", "--batch-size", "2", "--steps", "1"]) == 0


def test_token_ids_outside_the_vocabulary_name_dataset_row_and_field(tmp_path, tokenizer_path):
    src = tutorial_dataset(tmp_path / "t.lance", [[1, 2, 3], [4, 50256, 6]])
    with pytest.raises(TokenmillError) as err:
        build(src, tmp_path / "c", tokenizer_path)
    message = str(err.value)
    assert "t.lance" in message and "'input_ids'" in message and "50256" in message


def test_what_cannot_be_taken_over_is_refused_clearly(tmp_path, tokenizer_path, jsonl_shards):
    lance.write_dataset(pa.table({"text": ["a", "b"]}), str(tmp_path / "text.lance"))
    with pytest.raises(SourceError, match="no Lance dataset here"):
        build(tmp_path / "missing.lance", tmp_path / "c0", tokenizer_path)
    with pytest.raises(SourceError, match="without a column of token ids"):
        build(tmp_path / "text.lance", tmp_path / "c", tokenizer_path)
    src = tutorial_dataset(tmp_path / "t.lance", [[1, 2, 3]])
    with pytest.raises(ConfigError, match="on its own"):
        prepare(
            PrepareConfig(sources=[src, str(jsonl_shards[0])], output=str(tmp_path / "c2"), tokenizer="bytes")
        )
    with pytest.raises(ConfigError, match="does not apply"):
        build(src, tmp_path / "c3", tokenizer_path, format={"format": "text"})


@pytest.mark.s3
def test_tutorial_dataset_in_a_bucket(tmp_path, s3, token_docs, tokenizer_path):
    schema = pa.schema([pa.field("input_ids", pa.int64())])
    batches = [pa.RecordBatch.from_arrays([ids], names=["input_ids"]) for ids in token_docs]
    uri = s3.url("tutorial.lance")
    lance.write_dataset(
        pa.RecordBatchReader.from_batches(schema, iter(batches)),
        uri,
        schema,
        storage_options=s3.lance_storage_options,
    )
    summary = build(uri, tmp_path / "cache", tokenizer_path, storage_options=s3.lance_storage_options)
    assert summary.tokens == sum(len(d) for d in token_docs)
    docs = cache_documents(tmp_path / "cache")
    assert [t for d in docs for t in d] == [t for d in token_docs for t in d]
