"""SentencePiece-style BPE run as a byte-level BPE: the same ids as `tokenizers` on any text, partial characters
as the byte tokens the original gives, and no rewrite where it would not be exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, pre_tokenizers

from tokenmill.tokenizer import load_tokenizer
from tokenmill.tokenizer.bytelevel import (
    KNOWN_CUT,
    METASPACE,
    _byte_chars,
    _crossing,
    _known_cut_refusal,
    byte_level,
    byte_level_all,
    merges_keep_classes,
    sentencepiece_rewrite,
)
from tokenmill.tokenizer.engine import VerifiedEngine
from tokenmill.tokenizer.fastokens import ByteLevelRewriteEngine, FastokensEngine

from .tokenizer_families import sentencepiece_bpe

#: "中" is in the vocabulary below; "丮" (U+4E2E) shares its first two UTF-8 bytes and is not
IN_VOCAB, PARTIAL = "中", "\u4e2e"


@pytest.fixture(scope="module")
def sp_cjk(tmp_path_factory, stdlib_docs):
    """A Llama-2-style BPE whose alphabet has a CJK character (so partial characters can happen)."""
    texts = [f"{IN_VOCAB}文 {IN_VOCAB}国 {IN_VOCAB} text" for _ in range(40)] + stdlib_docs[:30]
    path = sentencepiece_bpe(texts, tmp_path_factory.mktemp("sp") / "tokenizer.json", 600, limit_alphabet=140)
    vocab = json.loads(path.read_text())["model"]["vocab"]
    assert IN_VOCAB in vocab and PARTIAL not in vocab
    return path


def reference_tokenizer(path) -> Tokenizer:
    """`tokenizers` on the file, special-token text read as text (as the engines read data)."""
    ref = Tokenizer.from_file(str(path))
    ref.encode_special_tokens = True
    return ref


def reference_ids(path_or_tokenizer, texts: list[str]) -> list[list[int]]:
    ref = path_or_tokenizer
    if not isinstance(ref, Tokenizer):
        ref = reference_tokenizer(ref)
    return [e.ids for e in ref.encode_batch_fast(texts, add_special_tokens=False)]


def rewrite_engine(tok) -> ByteLevelRewriteEngine:
    engine = tok._engine_state()
    engine = engine.fast if isinstance(engine, VerifiedEngine) else engine
    assert isinstance(engine, ByteLevelRewriteEngine), tok.engine_reason
    return engine


def test_the_alphabet_is_the_byte_level_pre_tokenizer_s():
    assert sorted(_byte_chars()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    text = "\u2581a é 中😀\n\t\x00"
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    assert "".join(p for p, _ in pieces) == byte_level(text)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from("ab \x00\x01\x1f\ufffe\uffff\u2581中é😀"), max_size=6)),
    spaces=st.booleans(),
)
@example(texts=["\x00\x01\x1f\ufffe\uffff", "a\u2581b"], spaces=True)  # no separator left: one call each
@example(texts=["\x00\x01\x1f", "\u2581 "], spaces=False)  # a separator past ASCII: three bytes
def test_byte_level_of_many_texts_at_once_is_each_text_s(texts, spaces):
    """The texts are joined by a character none of them has; here they may hold every candidate."""
    assert byte_level_all(texts, spaces) == [
        byte_level(t.replace(METASPACE, " ") if spaces else t) for t in texts
    ]


def test_sentencepiece_style_runs_rewritten_with_the_reference_ids(sp_cjk, stdlib_docs):
    tok = load_tokenizer(sp_cjk)
    assert tok.engine == "fastokens"
    assert "byte-level" in tok.engine_reason
    engine = rewrite_engine(tok)
    texts = stdlib_docs[100:220] + ["", " ", "\u2581", "  lead and trail  ", f"{IN_VOCAB}{PARTIAL}{IN_VOCAB}"]
    ids, offsets = engine.encode_flat(texts)
    want = reference_ids(sp_cjk, texts)
    assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == want
    assert engine.encode_batch(texts) == want


def test_a_partial_character_becomes_the_byte_tokens_of_its_bytes(sp_cjk):
    tok = load_tokenizer(sp_cjk)
    engine = rewrite_engine(tok)
    texts = [
        "plain text",
        f"a {PARTIAL} b {IN_VOCAB}",
        "more text",
        f"{PARTIAL}{PARTIAL}",
        f"{IN_VOCAB}{PARTIAL}",
    ]
    raw, _ = engine.rewritten.encode_flat(texts)
    assert (raw >= engine.first_extra).any()  # the rewrite alone stops at a partial character
    got = engine.encode_batch(texts)
    assert got == reference_ids(sp_cjk, texts)
    vocab = json.loads(sp_cjk.read_text())["model"]["vocab"]
    as_bytes = [vocab[f"<0x{b:02X}>"] for b in PARTIAL.encode("utf-8")]
    # what `tokenizers` gives, as the line above checks: the three bytes of each partial character
    assert len(as_bytes) == 3 and got[3][-6:] == as_bytes * 2


def test_documents_full_of_partial_characters_keep_their_offsets(sp_cjk):
    engine = rewrite_engine(load_tokenizer(sp_cjk))
    texts = [f"doc {i} {PARTIAL}" * (i % 3) if i % 2 else f"doc {i}" for i in range(1100)] + [PARTIAL, ""]
    ids, offsets = engine.encode_flat(texts)
    assert offsets[0] == 0 and offsets[-1] == len(ids) and len(offsets) == len(texts) + 1
    assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(texts))] == reference_ids(
        sp_cjk, texts
    )


ALPHABET = f"ab e\u2581\n\t{IN_VOCAB}{PARTIAL}é😀\x01.0<x>"


def _replace_only(spec):
    """The normalizer without its Prepend (no "▁" before the text): run by fastokens, not in Python."""
    spec["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}


def _plain_added_token(spec):
    """A non-special added token is matched in the text, so the normalizer stays in the tokenizer."""
    new_id = max(spec["model"]["vocab"].values()) + 1
    spec["added_tokens"].append(
        {
            "id": new_id,
            "content": "<x>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
    )


@pytest.fixture(scope="module", params=["metaspace", "replace-only", "added-token"])
def sp_shapes(request, sp_cjk, tmp_path_factory):
    """The SentencePiece-style tokenizer as converters write it (Metaspace normalizer: run in Python on
    spaces) and in two shapes where the rewrite keeps the normalizer in the tokenizer."""
    edit = {"metaspace": None, "replace-only": _replace_only, "added-token": _plain_added_token}[
        request.param
    ]
    path = sp_cjk
    if edit is not None:
        path = tmp_path_factory.mktemp(request.param) / "tokenizer.json"
        path.write_text(_edited(sp_cjk, edit))
    engine = rewrite_engine(load_tokenizer(path))
    assert engine.spaces == (request.param == "metaspace")
    return engine, path


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=1, max_size=8))
def test_any_text_gives_the_reference_ids(sp_shapes, texts):
    engine, path = sp_shapes
    assert engine.encode_batch(texts) == reference_ids(path, texts)


def test_real_text_gives_the_reference_ids_in_every_shape(sp_shapes, stdlib_docs):
    engine, path = sp_shapes
    texts = stdlib_docs[300:360]
    assert engine.encode_batch(texts) == reference_ids(path, texts)


@pytest.fixture(scope="module")
def sp_cjk_engine(sp_cjk):
    return rewrite_engine(load_tokenizer(sp_cjk)), sp_cjk


def _edited(path, edit) -> str:
    spec = json.loads(path.read_text())
    edit(spec)
    return json.dumps(spec, ensure_ascii=False)


def test_no_rewrite_where_it_would_not_be_exact(sp_cjk):
    def crossing(spec):
        spec["model"]["vocab"]["e\u2581"] = max(spec["model"]["vocab"].values()) + 1
        spec["model"]["merges"].append(["e", "\u2581"])

    def pre_tokenized(spec):
        spec["pre_tokenizer"] = {"type": "Whitespace"}

    def missing_byte(spec):
        del spec["model"]["vocab"]["<0x41>"]

    def dropout(spec):
        spec["model"]["dropout"] = 0.1

    def byte_merge(spec):
        spec["model"]["merges"].append(["<0x41>", "<0x42>"])

    def malformed(spec):
        spec["model"]["merges"].append("ab")  # a merge as a string with no space: one side

    def not_a_pair(spec):
        spec["model"]["merges"].append(7)

    cases = [
        ("merges across a word start", crossing),
        ("merges a <0xXX> token", byte_merge),
        ("has a malformed merge", malformed),
        ("has a malformed merge", not_a_pair),
        ("has a pre-tokenizer", pre_tokenized),
        ("of the 256 <0xXX> tokens", missing_byte),
        ("dropout", dropout),
    ]
    for reason, edit in cases:
        why = sentencepiece_rewrite(_edited(sp_cjk, edit))
        assert isinstance(why, str) and reason in why, (reason, why)
    # the file as it is still runs on fastokens where fastokens loads it
    plain = FastokensEngine.from_tokenizer_json(_edited(sp_cjk, crossing))
    assert type(plain) is FastokensEngine


def test_a_merge_across_a_word_start_is_found_whatever_characters_the_merges_hold():
    # the results are searched joined by a character none of them has; with every candidate taken, one by one
    every_separator = ["\x00", "\x01", "\x1f", "\ufffe", "\uffff"]
    for made in (["ab", "\u2581c"], every_separator + ["\u2581c"]):
        assert _crossing(made) is None
        assert _crossing([*made, "x\u2581"]) == "x\u2581"
        assert _crossing(["\u2581\u2581", *made]) is None
    assert (
        _crossing(["a", "\x00\u2581"]) == "\x00\u2581"
    )  # a separator candidate before "▁" is a crossing too
    assert _crossing(["a", "\x00", "\u2581"]) is None  # ... but not across two results


def test_other_tokenizers_are_not_rewritten(family_tokenizers):
    for family in ("cl100k-tokenizer.json", "deepseek", "byte-level-bpe"):
        tok = family_tokenizers[family]
        engine = tok._engine_state()
        engine = engine.fast if isinstance(engine, VerifiedEngine) else engine
        assert not isinstance(engine, ByteLevelRewriteEngine), family


def test_flat_ids_are_uint32_with_consistent_offsets(sp_cjk_engine):
    engine, _ = sp_cjk_engine
    ids, offsets = engine.encode_flat([f"x {PARTIAL}", "", "y"])
    assert ids.dtype == np.uint32 and offsets.dtype == np.int64 and offsets[-1] == len(ids)


def test_mistral_v1_as_converted_gives_sentencepiece_s_own_ids(family_tokenizers, stdlib_docs):
    """The family's tokenizer.json is a faithful conversion: `tokenizers` on it gives what SentencePiece gives on
    Mistral's own model file, so the rewrite is checked against the ids users of that model expect."""
    import sentencepiece

    from .tokenizer_families import mistral_v1_model_path

    sp = sentencepiece.SentencePieceProcessor(model_file=str(mistral_v1_model_path()))
    tok = family_tokenizers["mistral-v1"]
    texts = stdlib_docs[400:460] + ["日本語の文章と中文", "emoji 😀👍🏽 and ▁ itself", "  two leading spaces"]
    assert tok._reference_engine().encode_batch(texts) == [sp.encode(t) for t in texts]


def test_mistral_v1_runs_rewritten_on_spaces(family_tokenizers, stdlib_docs):
    tok = family_tokenizers["mistral-v1"]
    engine = rewrite_engine(tok)
    assert engine.spaces
    texts = stdlib_docs[460:520] + [
        "日本語の文章と中文" * 20,
        "Ελληνικά και русский текст",
        "\u2581\u2581 x \u2581",
        "x1=f(y²)+e\u0301te 12.5% ٣٣ (a,b)->c; हिन्दी",
    ]
    assert engine.encode_batch(texts) == tok._reference_engine().encode_batch(texts)


def test_without_a_metaspace_token_spaces_fall_back_to_bytes_as_in_the_original(sp_cjk, tmp_path):
    """A vocabulary with no "▁" token: the original encodes each space as the 3 bytes of "▁", so the rewrite
    keeps "▁" (it cannot let a space stand for a token that does not exist)."""

    def no_metaspace(spec):
        model = spec["model"]
        model["vocab"] = {t: i for t, i in model["vocab"].items() if "\u2581" not in t}
        order = sorted(model["vocab"].items(), key=lambda kv: kv[1])
        model["vocab"] = {t: n for n, (t, _) in enumerate(order)}  # no holes
        for entry in spec["added_tokens"]:
            entry["id"] = model["vocab"][entry["content"]]
        model["merges"] = [m for m in model["merges"] if "\u2581" not in "".join(m)]

    path = tmp_path / "tokenizer.json"
    path.write_text(_edited(sp_cjk, no_metaspace))
    rewrite = sentencepiece_rewrite(path.read_text())
    assert not isinstance(rewrite, str) and not rewrite.spaces
    engine = rewrite_engine(load_tokenizer(path))
    texts = ["two words", " lead", "a  b \u2581 c", ""]
    assert engine.encode_batch(texts) == reference_ids(path, texts)


def test_a_file_orjson_cannot_read_is_left_as_it_is():
    """A lone surrogate escape is JSON to the stdlib, not to orjson (nor to `tokenizers`): no rewrite, no crash."""
    text = '{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"\\ud800": 0}, "merges": []}}'
    assert sentencepiece_rewrite(text) == "is not JSON that orjson reads (a lone surrogate escape?)"


#: letters, a combining mark, decimal and other digits, punctuation, symbols, CJK, emoji, spaces, "▁" itself
CLASS_ALPHABET = f"ab e\u0301é1²٣.,(=\n\t\u2581{IN_VOCAB}{PARTIAL}😀"


@pytest.fixture(scope="module")
def sp_by_class(tmp_path_factory, stdlib_docs):
    """A SentencePiece-style BPE whose merges join no letter, digit and other character (as SentencePiece's own
    trainer makes them): the rewrite also cuts where the class changes."""
    texts = stdlib_docs[:60] + ["x1 = f(y²) + e\u0301te 12.5 ٣٣ 中文" for _ in range(30)]
    path = sentencepiece_bpe(
        texts, tmp_path_factory.mktemp("spc") / "tokenizer.json", 700, 140, by_class=True
    )
    rewrite = sentencepiece_rewrite(path.read_text())
    assert not isinstance(rewrite, str) and rewrite.classes
    return path


def test_merges_keep_classes_looks_at_the_characters_side_by_side():
    assert merges_keep_classes(["\u2581the", "ab", "12", "..", "e\u0301", "².", "\u2581(", "\u2581\u2581"])
    assert not merges_keep_classes(["ab", "a."])  # a letter and punctuation
    assert not merges_keep_classes(["x1"])  # a letter and a digit
    assert not merges_keep_classes(["1²"])  # a decimal digit and another number
    # no category in this Python's tables: another engine's may differ
    assert not merges_keep_classes(["\u0378"])
    assert merges_keep_classes([])


def test_mistral_v1_is_cut_by_class(tmp_path):
    from .tokenizer_families import mistral_v1_tokenizer_json

    rewrite = sentencepiece_rewrite(mistral_v1_tokenizer_json(tmp_path / "tokenizer.json").read_text())
    assert not isinstance(rewrite, str) and rewrite.classes and rewrite.spaces


def test_a_vocabulary_with_merges_across_classes_keeps_the_coarser_cut(sp_cjk):
    rewrite = sentencepiece_rewrite(sp_cjk.read_text())
    assert not isinstance(rewrite, str) and not rewrite.classes


@pytest.fixture(scope="module")
def sp_by_class_engine(sp_by_class):
    return rewrite_engine(load_tokenizer(sp_by_class)), reference_tokenizer(sp_by_class)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.text(alphabet=CLASS_ALPHABET, max_size=40), min_size=1, max_size=8))
def test_cut_by_class_any_text_gives_the_reference_ids(sp_by_class_engine, texts):
    engine, ref = sp_by_class_engine
    assert engine.encode_batch(texts) == reference_ids(ref, texts)


def test_one_merge_across_classes_and_the_class_cut_is_not_made(sp_by_class, stdlib_docs, tmp_path):
    """A merge "x" + "1" is all it takes: cutting "x1" would keep that merge from ever applying."""

    def letter_digit(spec):
        vocab = spec["model"]["vocab"]
        vocab["x1"] = max(vocab.values()) + 1
        spec["model"]["merges"].insert(0, ["x", "1"])

    path = tmp_path / "tokenizer.json"
    path.write_text(_edited(sp_by_class, letter_digit))
    rewrite = sentencepiece_rewrite(path.read_text())
    assert not isinstance(rewrite, str) and not rewrite.classes
    engine = rewrite_engine(load_tokenizer(path))
    texts = ["x1 = x12", "ax1b", *stdlib_docs[:20]]
    ids = engine.encode_batch(texts)
    assert ids == reference_ids(path, texts)
    assert vocab_id(path, "x1") in ids[0]


def vocab_id(path, token: str) -> int:
    return json.loads(path.read_text())["model"]["vocab"][token]


# -- the known cut: a pattern fastokens' scanner knows, runs of "▁" put right afterwards ------------------------

#: what the known cut must get right: runs of spaces before digits, symbols, words, line breaks and the end;
#: contractions and quoted words ("'" is swapped), the stand-in itself (before a contraction too), the hazard
#: "²." of Mistral v1, marks, other whitespace and numbers
KNOWN_CUT_TEXTS = [
    "a  1",
    "x = 1  # 2",
    "    return x\n        1\n",
    "  two leading spaces",
    "trailing   ",
    " ",
    "",
    "a" + " " * 300 + "1 " + " " * 17 + "----------" + " " * 33,
    "it's 'sub' 'dog' don't 'LL 'Re ſ 'ſx",
    "x \x7f y \x7fs \x7fRE 'a\x7f'b",
    "x². 2²  ². (²)",
    "e\u0301te  12  \u0663\u0663 (a,b)->c; \u0939\u093f\u0928\u094d\u0926\u0940",
    "\t x\u00a0 y\u3000z \r\n  ;\r\n  )\r\r",
    "\u2581\u2581 x \u2581\u2581\u2581 1",
    "\u200b \u200b\u200b  \u200bx",
]

#: the characters of those texts, for texts hypothesis makes of them
KNOWN_CUT_ALPHABET = list(
    " \t\n\r\x0b\x1c\x85\u00a0\u3000'\x7f\u017fsStTdlLrReE1²٣.,()#-éÉ\u0301中😀\u2581\u200bxΩ"
) + [
    "  ",
    "    ",
    "\r\n",
    "e\u0301",
]


@pytest.fixture(scope="module")
def mistral_v1(family_tokenizers):
    tok = family_tokenizers["mistral-v1"]
    return rewrite_engine(tok), tok._reference_engine()


def test_mistral_v1_takes_the_known_cut(tmp_path):
    from .tokenizer_families import mistral_v1_tokenizer_json

    path = mistral_v1_tokenizer_json(tmp_path / "tokenizer.json")
    rewrite = sentencepiece_rewrite(path.read_text())
    assert not isinstance(rewrite, str) and rewrite.known_cut is not None, rewrite
    assert rewrite.known_cut_refusal == "" and rewrite.hazards == ("².",)
    assert json.loads(rewrite.known_cut)["pre_tokenizer"]["pretokenizers"][0]["pattern"] == {
        "Regex": KNOWN_CUT
    }
    # 15 runs: "▁" and its runs of 2 to 16 but 15
    assert sorted(n for _, n in rewrite.runs) == [*range(1, 15), 16]
    engine = rewrite_engine(load_tokenizer(path))
    assert engine.known_cut and "pattern fastokens knows" in engine.note


def test_known_cut_gives_the_reference_ids(mistral_v1, stdlib_docs):
    engine, ref = mistral_v1
    texts = KNOWN_CUT_TEXTS + stdlib_docs[:200]
    assert engine.encode_batch(texts) == ref.encode_batch(texts)
    for text in KNOWN_CUT_TEXTS:  # alone too: a batch of texts that need no generic cut, and of ones that do
        assert engine.encode_batch([text]) == ref.encode_batch([text]), text


def test_known_cut_flat_ids_and_offsets_match_the_lists(mistral_v1):
    engine, ref = mistral_v1
    ids, offsets = engine.encode_flat(KNOWN_CUT_TEXTS)
    assert ids.dtype == np.uint32 and offsets.dtype == np.int64 and offsets[-1] == len(ids)
    want = ref.encode_batch(KNOWN_CUT_TEXTS)
    assert [ids[offsets[i] : offsets[i + 1]].tolist() for i in range(len(want))] == want


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(KNOWN_CUT_ALPHABET), max_size=30).map("".join), max_size=8))
def test_known_cut_any_text_gives_the_reference_ids(mistral_v1, texts):
    engine, ref = mistral_v1
    assert engine.encode_batch(texts) == ref.encode_batch(texts)


def _mistral_edited(tmp_path, edit) -> Path:
    from .tokenizer_families import mistral_v1_tokenizer_json

    source = mistral_v1_tokenizer_json(tmp_path / "mistral" / "tokenizer.json")
    path = tmp_path / "edited" / "tokenizer.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(_edited(source, edit))
    return path


def test_runs_merged_early_keep_the_generic_cut_with_the_reference_ids(tmp_path):
    """Llama 2 ranks "▁▁" among its first merges: a run may then take the last "▁" from the word after it, which
    is not decided by the run alone, so the known cut is not made; the generic cut still gives the ids."""

    def runs_first(spec):
        merges = spec["model"]["merges"]
        runs = [m for m in merges if not "".join(m.split(" ") if isinstance(m, str) else m).strip(METASPACE)]
        spec["model"]["merges"] = runs + [m for m in merges if m not in runs]

    path = _mistral_edited(tmp_path, runs_first)
    rewrite = sentencepiece_rewrite(path.read_text())
    assert not isinstance(rewrite, str) and rewrite.known_cut is None
    assert "ranks before other merges" in rewrite.known_cut_refusal
    engine = rewrite_engine(load_tokenizer(path))
    assert not engine.known_cut
    assert engine.encode_batch(KNOWN_CUT_TEXTS) == reference_ids(path, KNOWN_CUT_TEXTS)


def _refused(results: list[str], added: set[str]) -> tuple[str | None, tuple[str, ...]]:
    return _known_cut_refusal(results, dict.fromkeys(results), added)


def test_known_cut_refusals():
    # merges the pattern may cut: a letter with a digit or with punctuation, a run of "▁" into a word; pairs of
    # ASCII characters every text may hold; an added token with an apostrophe (it would be swapped)
    assert _refused(["ab", "a1"], set())[0] == "a merge joins 'a1', which it may cut between"
    assert _refused(["ab", "a."], set())[0] == "a merge joins 'a.', which it may cut between"
    assert _refused(["\u2581\u2581a"], set())[0] == "a merge makes '\u2581\u2581a'"
    assert _refused(["a\u2581"], set())[0] == "a merge makes 'a\u2581'"
    assert _refused(["ab"], {"<it's>"})[0] == "an added token holds an apostrophe"
    many = [f"{chr(0x4E00 + i)}{chr(0x2460 + i)}" for i in range(40)]  # CJK then a circled digit: 40 pairs
    assert "40 pairs" in _refused(many, set())[0]
    # what it never cuts: letters and marks, punctuation runs with the line breaks after them, "▁" before
    # either, line breaks, pure runs of "▁" (ranked last); a non-ASCII pair it may cut is a hazard
    ok = ["ab", "e\u0301", "..", ";\r", "\r\r", "\u2581a", "\u2581(", "\u2581\r", "²."]
    assert _refused([*ok, "\u2581\u2581", "\u2581\u2581\u2581"], set()) == (None, ("².",))
    assert _refused(["\u2581\u2581", *ok], set())[0].startswith("a merge that makes a run")
