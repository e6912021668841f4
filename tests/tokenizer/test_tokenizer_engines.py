"""Every engine/family pair gives the ids of the tokenizer's own library, on real text and every code point;
where an engine would not, the choice falls back and says why."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer import load_tokenizer
from tokenmill.tokenizer.engine import VerifiedEngine
from tokenmill.tokenizer.fastokens import FastokensEngine
from tokenmill.tokenizer.tokenizers import TokenizersEngine

from .tokenizer_corpus import tokenizer_json, write_json
from .tokenizer_families import FAMILY_ENGINES, cl100k_tokenizer_json

#: tiktoken's own cl100k regex: "\p{N}{1,3}+" is possessive there, a repeated interval in `tokenizers`
CL100K_TIKTOKEN_REGEX = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)


def every_code_point(step: int = 1) -> list[str]:
    """Each ``step``-th code point (surrogates aside) once, after a letter and before a space, 4,096 per text."""
    points = [c for c in range(0, 0x110000, step) if not 0xD800 <= c < 0xE000]
    return ["".join(f"a{chr(c)} " for c in points[i : i + 4096]) for i in range(0, len(points), 4096)]


def assert_same_ids(tok, texts: list[str]) -> None:
    engine = tok._engine_state()
    fast = engine.fast if isinstance(engine, VerifiedEngine) else engine
    reference = tok._reference_engine()
    got, want = fast.encode_batch(texts), reference.encode_batch(texts)
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not bad, (
        f"{fast.name} differs from {reference.name} on {len(bad)} of {len(texts)}: {texts[bad[0]][:80]!r}"
    )
    flat, offsets = fast.encode_flat(texts)
    assert flat.dtype == np.uint32 and offsets[-1] == len(flat)
    assert np.array_equal(flat, np.fromiter((i for x in want for i in x), np.uint32))


@pytest.mark.parametrize("family", sorted(FAMILY_ENGINES))
def test_family_engine_and_ids_on_real_text(family_tokenizers, family, stdlib_docs):
    tok = family_tokenizers[family]
    assert tok.engine == FAMILY_ENGINES[family], tok.engine_reason
    assert tok.engine_reason.startswith(tok.engine)
    assert_same_ids(tok, stdlib_docs[:120])
    assert tok.to_json_meta()["engine"] == tok.engine


FAST_FAMILIES = [f for f, e in sorted(FAMILY_ENGINES.items()) if e == "fastokens"]


@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_family_ids_on_a_sweep_of_code_points(family_tokenizers, family):
    assert_same_ids(family_tokenizers[family], every_code_point(step=17))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAST_FAMILIES)
def test_family_ids_on_every_code_point(family_tokenizers, family):
    """About 5 s per family on 2 idle cores, most of it in the `tokenizers` reference."""
    assert_same_ids(family_tokenizers[family], every_code_point())


def test_fallback_engines_say_why(family_tokenizers):
    assert "NFKC" in family_tokenizers["unigram"].engine_reason
    assert "BertNormalizer" in family_tokenizers["wordpiece"].engine_reason


@pytest.fixture(scope="module")
def cl100k_possessive(tmp_path_factory):
    return cl100k_tokenizer_json(
        tmp_path_factory.mktemp("cl100k") / "tokenizer.json", pattern=CL100K_TIKTOKEN_REGEX
    )


def test_possessive_interval_regex_falls_back_before_any_encoding(cl100k_possessive, caplog):
    """A tokenizer.json made with tiktoken's own cl100k regex: `tokenizers` reads "\\p{N}{1,3}+" otherwise than
    fastokens (and tiktoken) do, so "auto" keeps `tokenizers`, in one logged line."""
    path = cl100k_possessive
    with caplog.at_level(logging.WARNING, logger="tokenmill.tokenizer"):
        tok = load_tokenizer(path)
    assert tok.engine == "tokenizers" and "{1,3}+" in tok.engine_reason
    assert [r.message for r in caplog.records if "slow path" in r.message]
    assert tok.encode("0010") == [tok.token_to_id("00"), tok.token_to_id("10")]  # Oniguruma's reading
    fast = FastokensEngine.from_tokenizer_json(path.read_text())
    assert fast.encode_batch(["0010"]) == [[tok.token_to_id("001"), tok.token_to_id("0")]]


def test_probe_set_catches_what_the_structural_check_misses(cl100k_possessive, monkeypatch):
    import tokenmill.tokenizer.huggingface as hf

    monkeypatch.setattr(hf, "known_divergence", lambda tj: None)
    tok = load_tokenizer(cl100k_possessive)
    assert tok.engine == "tokenizers"
    assert "other ids than tokenizers on the probe" in tok.engine_reason


def test_first_documents_check_hands_over_to_the_reference(cl100k_possessive, caplog):
    """Past the probes, the first documents are compared too; at the first difference the reference takes over
    for good, and the ids handed out are the reference's."""
    text = cl100k_possessive.read_text()
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(text)
    plain.encode_special_tokens = True
    fast = FastokensEngine.from_tokenizer_json(text)
    engine = VerifiedEngine(fast, TokenizersEngine(plain), "test", budget=10_000)
    assert engine.encode_batch(["hello world"]) == [[15339, 1917]] and engine.name == "fastokens"
    with caplog.at_level(logging.WARNING, logger="tokenmill.tokenizer"):
        ids = engine.encode_batch(["x = 0x0010"])
    assert engine.name == "tokenizers" and ids == TokenizersEngine(plain).encode_batch(["x = 0x0010"])
    assert len(caplog.records) == 1 and "0x0010" in caplog.records[0].message
    assert engine.encode_batch(["0010"]) == TokenizersEngine(plain).encode_batch(["0010"])


def test_engine_can_be_forced_or_refused(family_tokenizers, tmp_path):
    bpe = family_tokenizers["byte-level-bpe"]
    path = bpe.save(tmp_path / "bpe")
    assert load_tokenizer(path, engine="tokenizers").engine == "tokenizers"
    forced = load_tokenizer(path, engine="fastokens")
    assert forced.engine == "fastokens" and "not checked" in forced.engine_reason
    assert bpe.engine == "fastokens"  # the caller's tokenizer keeps its engine when another is asked for
    with pytest.raises(TokenizerError, match="engine 'tiktoken' cannot run"):
        load_tokenizer(path, engine="tiktoken")
    with pytest.raises(TokenizerError, match="unknown engine"):
        load_tokenizer(path, engine="rust")
    unigram = family_tokenizers["unigram"]
    with pytest.raises(TokenizerError, match="NFKC"):
        load_tokenizer(unigram, engine="fastokens")
    qwen = load_tokenizer(family_tokenizers["qwen.tiktoken"], engine="tiktoken")
    assert qwen.engine == "tiktoken"


def test_chosen_engine_travels_to_worker_processes(family_tokenizers, stdlib_docs):
    for name in ("deepseek", "qwen.tiktoken", "unigram"):
        tok = family_tokenizers[name]
        copy = pickle.loads(pickle.dumps(tok))
        assert copy.engine == tok.engine and copy.fingerprint == tok.fingerprint
        assert copy.encode_batch(stdlib_docs[:20]) == tok.encode_batch(stdlib_docs[:20])


def test_special_text_stays_text_and_parses_on_request(family_tokenizers):
    for name in ("deepseek", "qwen.tiktoken", "sentencepiece-bpe"):
        tok = family_tokenizers[name]
        special = tok.eos_token
        plain, parsed = tok.encode(f"a{special}b"), tok.encode(f"a{special}b", parse_special=True)
        assert tok.eos_id not in plain and tok.eos_id in parsed, name


def test_surrogates_are_replaced_by_every_engine(family_tokenizers):
    for tok in family_tokenizers.values():
        assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")


def test_tokenizer_json_with_truncation_gives_whole_ids(tmp_path, family_tokenizers):
    data = tokenizer_json(family_tokenizers["byte-level-bpe"].save(tmp_path / "b") / "tokenizer.json")
    data["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
    tok = load_tokenizer(write_json(tmp_path, data))
    assert tok.engine == "fastokens" and len(tok.encode("a fairly long text " * 10)) > 4


@pytest.mark.parametrize(
    "name", ["cl100k-tokenizer.json", "deepseek", "qwen.tiktoken", "sentencepiece-bpe", "unigram"]
)
def test_keeping_the_chosen_engine_drops_the_reference_and_keeps_the_ids(
    tmp_path, family_tokenizers, stdlib_docs, name
):
    """What prepare's coordinator does before its threads share the tokenizer: preload, check the first
    documents, keep the engine alone. The ids stay the reference's; the reference comes back when asked for."""
    source = family_tokenizers[name]
    want = source._reference_engine().encode_batch(stdlib_docs[:40])
    tok = load_tokenizer(source.save(tmp_path / "t"))
    tok.preload_engines()
    pickle.dumps(tok)  # a pending preload does not travel
    tok.check_documents(stdlib_docs[:5])
    tok.keep_chosen_engine()
    assert tok.engine == source.engine and tok.engine_is_native
    if tok.engine == "fastokens":
        assert not isinstance(tok._engine_state(), VerifiedEngine)
        if tok.kind == "huggingface":
            assert "_plain" not in tok.__dict__  # `tokenizers`' objects are gone
    assert tok.encode_batch(stdlib_docs[:40]) == want
    assert tok.decode(want[0]) == source.decode(want[0])


def test_a_fallback_found_on_the_first_documents_is_kept(cl100k_possessive, monkeypatch):
    """An engine that passed the probes but fails on the first documents is the reference from then on, and
    keeping the chosen engine drops nothing. (The structural check and the probe set are bypassed here, so that
    only the documents can catch fastokens' other reading of "\\p{N}{1,3}+".)"""
    import tokenmill.tokenizer.huggingface as hf
    import tokenmill.tokenizer.identity as identity

    monkeypatch.setattr(hf, "known_divergence", lambda tj: None)
    monkeypatch.setattr(identity, "probe_texts", lambda specials=(): ["hello world"])
    tok = load_tokenizer(cl100k_possessive)
    assert tok.engine == "fastokens"
    tok.check_documents(["x = 0x0010"])
    tok.keep_chosen_engine()
    assert tok.engine == "tokenizers" and "_plain" in tok.__dict__
    assert tok.encode("0010") == [tok.token_to_id("00"), tok.token_to_id("10")]


def test_only_python_engines_are_not_native(family_tokenizers):
    assert all(tok.engine_is_native for tok in family_tokenizers.values())
    assert not load_tokenizer("bytes").engine_is_native


def test_an_engine_preloaded_for_a_file_is_checked_and_used_once(tmp_path, family_tokenizers, stdlib_docs):
    """`tokenmill prepare` starts fastokens on the tokenizer file before its imports; the loader takes it (for
    that file only, unchanged), it still goes through the probe set, and truncation stored in the file is off."""
    from tokenmill.tokenizer import load as loader

    data = tokenizer_json(family_tokenizers["deepseek"].save(tmp_path / "d") / "tokenizer.json")
    data["truncation"] = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
    path = write_json(tmp_path, data)
    loader.preload_file(str(path))
    loader.preload_file(str(tmp_path / "missing.json"))  # nothing to start
    assert len(loader._EARLY) == 1
    tok = load_tokenizer(path)
    assert not loader._EARLY and "_preloaded" in tok.__dict__  # taken by this load, not yet used
    assert tok.engine == "fastokens" and "probe texts" in tok.engine_reason
    assert "_preloaded" not in tok.__dict__ or not tok.__dict__["_preloaded"]
    want = family_tokenizers["deepseek"]._reference_engine().encode_batch(stdlib_docs[:20])
    assert tok.encode_batch(stdlib_docs[:20]) == want and max(map(len, want)) > 4
    loader.preload_file(str(path))
    path.write_text(path.read_text() + " ")  # the file changed: its preloaded engine is not taken
    assert "_preloaded" not in load_tokenizer(path).__dict__
    loader._EARLY.clear()
