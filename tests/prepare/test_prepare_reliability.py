"""Issue 13: the paths real users take end in correct data or a clear TokenmillError. One test per item of the
issue that prepare owns (items 1-3 have their own files), and one per unclear error it lists."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from prepare_helpers import build, doc_hashes

from conftest import make_documents, write_jsonl
from tokenmill.errors import CacheError, ConfigError, RecordError, TokenmillError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", *args], capture_output=True, text=True, timeout=300
    )


# item 4 ------------------------------------------------------------------------------------------------------
def _csv_with_an_unterminated_quote(path):
    rows = "".join(f"{i},row number {i}\n" for i in range(2, 53))
    path.write_text('id,text\n1,"hello\n' + rows)
    return path


def test_csv_unterminated_quote_is_an_error_naming_the_line(tmp_path, tokenizer_path):
    src = _csv_with_an_unterminated_quote(tmp_path / "a.csv")
    with pytest.raises(RecordError, match=r"a\.csv, line 2, row 0: malformed CSV"):
        build([src], tmp_path / "c", tokenizer_path)


def test_csv_unterminated_quote_skips_one_row_not_fifty(tmp_path, tokenizer_path):
    src = _csv_with_an_unterminated_quote(tmp_path / "a.csv")
    summary = build([src], tmp_path / "c", tokenizer_path, on_error="skip")
    assert summary.documents == 51
    assert summary.skipped == {"malformed_csv": 1}


# item 6 ------------------------------------------------------------------------------------------------------
def test_count_validation_never_moves_a_document_to_train_on_append(tmp_path, jsonl_shards, tokenizer_path):
    cache = tmp_path / "c"
    build(jsonl_shards[:2], cache, tokenizer_path, validation=50)
    before = set(doc_hashes(cache, "validation"))
    assert len(before) == 50
    build(jsonl_shards, cache, tokenizer_path, validation=50, append=True)
    after = set(doc_hashes(cache, "validation"))
    assert before <= after
    assert set(doc_hashes(cache, "train")).isdisjoint(before)


# item 9 ------------------------------------------------------------------------------------------------------
def test_trust_remote_code_in_a_config_file_is_refused(tmp_path, jsonl_shards, tokenizer_path):
    config = tmp_path / "prep.yaml"
    config.write_text(f"tokenizer: {tokenizer_path}\ntrust_remote_code: true\n")
    done = _cli("prepare", str(jsonl_shards[0]), "--config", str(config), "--output", str(tmp_path / "c"))
    assert done.returncode != 0
    assert "line 2, key 'trust_remote_code'" in done.stderr and "--trust-remote-code" in done.stderr
    assert not (tmp_path / "c").exists()


def test_trust_remote_code_in_a_recipe_is_refused(tmp_path, jsonl_shards, tokenizer_path):
    from tokenmill.recipe import load_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"tokenizer: {tokenizer_path}\ntrust_remote_code: true\nsources:\n  web:\n    urls: {jsonl_shards[0]}\n"
    )
    with pytest.raises(ConfigError, match="line 2, key 'trust_remote_code'.*command line"):
        load_recipe(recipe)


# unclear errors the issue lists --------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["", "id,text\n"], ids=["empty-jsonl", "header-only-csv"])
def test_empty_input_is_an_error_unless_allowed(tmp_path, tokenizer_path, content):
    src = tmp_path / ("a.jsonl" if not content else "a.csv")
    src.write_text(content)
    with pytest.raises(CacheError, match="no documents.*--allow-empty"):
        build([src], tmp_path / "c", tokenizer_path)
    assert build([src], tmp_path / "d", tokenizer_path, allow_empty=True).documents == 0


def test_whole_file_errors_are_skipped_and_counted_under_skip(tmp_path, tokenizer_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": t} for t in make_documents(20, seed=3)])
    corrupt = tmp_path / "bad.jsonl.gz"
    whole = gzip.compress(b"".join(json.dumps({"text": t}).encode() + b"\n" for t in make_documents(30)))
    corrupt.write_bytes(whole[: len(whole) // 2])  # cut in the middle of the stream
    with pytest.raises(TokenmillError, match=r"bad\.jsonl\.gz"):
        build([good, corrupt], tmp_path / "c", tokenizer_path)
    summary = build([good, corrupt], tmp_path / "d", tokenizer_path, on_error="skip")
    assert summary.skipped.get("unreadable") == 1 or summary.skipped.get("corrupt") == 1, summary.skipped
    assert summary.documents >= 20


def test_a_lone_surrogate_escape_is_an_error(tmp_path, tokenizer_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"text": "fine"}\n{"text": "bad \\ud800 escape"}\n')
    with pytest.raises(RecordError, match=r"a\.jsonl, line 2, field 'text': a lone surrogate"):
        build([src], tmp_path / "c", tokenizer_path)


def test_output_naming_a_file_is_a_clear_error(tmp_path, jsonl_shards, tokenizer_path):
    target = tmp_path / "out.txt"
    target.write_text("not a cache")
    with pytest.raises(ConfigError, match="is a file"):
        build(jsonl_shards, target, tokenizer_path)


def test_a_foreign_lance_dataset_is_not_written_into(tmp_path, jsonl_shards, tokenizer_path):
    import lance
    import pyarrow as pa

    lance.write_dataset(pa.table({"x": [1, 2, 3]}), str(tmp_path / "c" / "tokens.lance"))
    with pytest.raises(CacheError, match="tokenmill did not write"):
        build(jsonl_shards, tmp_path / "c", tokenizer_path)


def test_a_misspelt_format_option_is_named_before_anything_is_written(tmp_path, jsonl_shards, tokenizer_path):
    done = _cli(
        "prepare",
        *map(str, jsonl_shards),
        "--tokenizer",
        str(tokenizer_path),
        "--output",
        str(tmp_path / "c"),
        "--set-format",
        "txt_key=body",
    )
    assert done.returncode != 0
    assert "txt_key" in done.stderr and "keep dying" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c").exists()


def test_a_bad_record_deep_in_a_unit_names_file_line_and_field(tmp_path, tokenizer_path):
    """Past the first batch Lance reads the records in Rust; the error must still be ours, not an OSError."""
    docs = make_documents(1200, seed=9, min_words=300, max_words=400)
    records = [{"text": t} for t in docs]
    records.append({"text": 7})
    src = write_jsonl(tmp_path / "big.jsonl", records)
    with pytest.raises(RecordError, match=rf"big\.jsonl, line {len(records)}, field 'text'"):
        build([src], tmp_path / "c", tokenizer_path, unit_bytes=1 << 30)
