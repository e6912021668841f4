"""The tiktoken twin: proven equal to `tokenizers` on real text and every code point, refused where not."""

from __future__ import annotations

import pytest
from tokenizer_corpus import BMP, stdlib_documents, tokenizer_json, unicode_sweep, write_json
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import models, pre_tokenizers

from tokenmill.tokenizer import (
    load_tokenizer,
    train_tokenizer,
)


def assert_same_ids(fast, slow, docs: list[str]) -> None:
    assert fast.engine == "tiktoken" and slow.engine == "tokenizers"
    a, b = fast.encode_batch(docs), slow.encode_batch(docs)
    bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    assert not bad, f"{len(bad)} of {len(docs)} documents differ, first: {docs[bad[0]][:200]!r}"


# ----------------------------------------------------------------------------------------- fast path


def test_fast_path_matches_tokenizers_on_fixture_and_stdlib(tokenizer_path, documents, stdlib_docs):
    fast = load_tokenizer(tokenizer_path)
    slow = load_tokenizer(tokenizer_path, fast_path=False)
    extra = ["", " ", "  \n\n  x  ", "hi <|endoftext|> there", "a\ud800b", "it's we'll 'LL", "x" * 5000]
    assert_same_ids(fast, slow, documents + stdlib_docs + extra)


def test_fast_path_matches_on_a_tokenizer_trained_on_stdlib(trained_on_stdlib, stdlib_docs, tmp_path):
    fast = trained_on_stdlib
    slow = load_tokenizer(fast.save(tmp_path / "t"), fast_path=False)
    assert_same_ids(fast, slow, stdlib_docs)


def test_fast_path_matches_on_every_bmp_code_point(tokenizer_path, trained_on_stdlib, tmp_path):
    slow = load_tokenizer(trained_on_stdlib.save(tmp_path / "t"), fast_path=False)
    assert_same_ids(trained_on_stdlib, slow, unicode_sweep(BMP))
    fixture_docs = unicode_sweep(BMP[::5])
    assert_same_ids(
        load_tokenizer(tokenizer_path), load_tokenizer(tokenizer_path, fast_path=False), fixture_docs
    )


@pytest.mark.slow
def test_fast_path_matches_on_every_code_point_and_whole_stdlib(tmp_path):
    docs = stdlib_documents(10**9)
    fast = train_tokenizer(docs, 32000)
    slow = load_tokenizer(fast.save(tmp_path / "t"), fast_path=False)
    assert_same_ids(fast, slow, docs)
    assert_same_ids(fast, slow, unicode_sweep([c for c in range(0x110000) if not 0xD800 <= c < 0xE000]))


def test_fast_path_matches_with_split_regex_pretokenizer(split_style_tokenizer, stdlib_docs, documents):
    fast = load_tokenizer(split_style_tokenizer)
    slow = load_tokenizer(split_style_tokenizer, fast_path=False)
    assert fast.engine == "tiktoken", fast.fast_path_reason
    assert_same_ids(fast, slow, stdlib_docs[:150] + documents + unicode_sweep(BMP[::9]))


def test_guard_rejects_a_token_its_merges_cannot_reach(tmp_path):
    """Merges b+c, a+b, ab+c: `tokenizers` encodes "abc" as [a, bc] (a+bc is no merge), while tiktoken would
    return the token "abc" whole. The guard must see this and keep `tokenizers`."""
    import tiktoken

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(byte_chars)}
    vocab.update({"bc": 256, "ab": 257, "abc": 258})
    tok = RawTokenizer(models.BPE(vocab=vocab, merges=[("b", "c"), ("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = load_tokenizer(path)
    assert loaded.engine == "tokenizers"
    assert "not reachable" in loaded.fast_path_reason
    assert loaded.encode("abc") == [vocab["a"], 256]
    naive = tiktoken.Encoding(
        "naive",
        pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=_ranks(vocab),
        special_tokens={},
    )
    assert naive.encode_ordinary("abc") == [258]  # what an unguarded conversion would produce


def _ranks(vocab: dict[str, int]) -> dict[bytes, int]:
    from tokenmill.tokenizer import bytes_to_unicode

    u2b = {c: b for b, c in bytes_to_unicode().items()}
    return {bytes(u2b[ch] for ch in tok): i for tok, i in vocab.items()}


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.__setitem__("normalizer", {"type": "NFC"}), "normalizer"),
        (lambda d: d["pre_tokenizer"].__setitem__("add_prefix_space", True), "pre-tokenizer"),
        (lambda d: d["model"].__setitem__("merges", d["model"]["merges"][::-1]), "merge order"),
        (lambda d: d["model"].__setitem__("byte_fallback", True), "byte fallback"),
        (
            lambda d: d["added_tokens"].append(
                {
                    "id": 893,
                    "content": "hello",
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": False,
                }
            ),
            "non-special added",
        ),
    ],
)
def test_guard_falls_back_when_not_equivalent(tokenizer_path, tmp_path, change, reason, documents):
    data = tokenizer_json(tokenizer_path)
    change(data)
    tok = load_tokenizer(write_json(tmp_path, data))
    assert tok.engine == "tokenizers"
    assert reason in tok.fast_path_reason
    raw = RawTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    raw.encode_special_tokens = True
    assert tok.encode_batch(documents[:20]) == [
        e.ids for e in raw.encode_batch(documents[:20], add_special_tokens=False)
    ]
