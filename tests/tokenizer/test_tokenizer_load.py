"""Tokenizer loading, specials and BOS convention, fingerprints, saving, and the byte and tiktoken tokenizers."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import normalizers, processors

from tokenmill.errors import TokenizerError
from tokenmill.tokenizer import (
    META_FILE,
    ByteTokenizer,
    HFTokenizer,
    TiktokenTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from tokenmill.tokenizer.base import sha256_json

from .tokenizer_corpus import byte_level_ranks, tokenizer_json, write_json

# ----------------------------------------------------------------------------------------- loading


def test_fixture_tokenizer_properties(tokenizer_path):
    data = tokenizer_json(tokenizer_path)
    tok = load_tokenizer(tokenizer_path)
    assert isinstance(tok, HFTokenizer) and tok.kind == "huggingface"
    assert tok.vocab_size == max(data["model"]["vocab"].values()) + 1
    assert tok.eos_id == 0 and tok.eos_token == "<|endoftext|>"
    assert tok.bos_id is None and tok.adds_bos is False and tok.pad_id is None
    assert tok.chat_template is None
    meta = tok.to_json_meta()
    assert meta["fingerprint"] == tok.fingerprint and len(tok.fingerprint) == 64
    assert {"kind", "name", "vocab_size", "bos_id", "eos_id", "pad_id"} <= set(meta)
    json.dumps(meta)


def test_special_token_text_is_plain_unless_asked(tokenizer_path):
    raw = RawTokenizer.from_file(str(tokenizer_path))
    for engine in ("auto", "tokenizers"):
        tok = load_tokenizer(tokenizer_path, engine=engine)
        plain = tok.encode("a <|endoftext|> b")
        assert 0 not in plain
        assert tok.decode(plain) == "a <|endoftext|> b"
        assert tok.encode("a <|endoftext|> b", parse_special=True) == raw.encode("a <|endoftext|> b").ids
        assert 0 in tok.encode("a <|endoftext|> b", parse_special=True)


def test_encode_batch_equals_encode_and_decodes_back(tokenizer_path, documents):
    tok = load_tokenizer(tokenizer_path)
    batch = tok.encode_batch(documents[:50])
    assert batch == [tok.encode(d) for d in documents[:50]]
    assert [tok.decode(ids) for ids in batch] == documents[:50]
    assert all(0 <= i < tok.vocab_size for ids in batch for i in ids)


def test_lone_surrogates_become_replacement_characters_in_both_engines(tokenizer_path):
    fast = load_tokenizer(tokenizer_path)
    slow = load_tokenizer(tokenizer_path, engine="tokenizers")
    assert fast.encode("a\ud800b") == slow.encode("a\ud800b") == slow.encode("a\ufffdb")
    assert ByteTokenizer().encode("a\ud800b") == list("a\ufffdb".encode())


def test_fingerprint_is_stable_across_paths_and_engines(tokenizer_path, tmp_path):
    base = load_tokenizer(tokenizer_path)
    copy_dir = tmp_path / "elsewhere"
    copy_dir.mkdir()
    shutil.copy(tokenizer_path, copy_dir / "tokenizer.json")
    same = [
        load_tokenizer(copy_dir / "tokenizer.json"),
        load_tokenizer(copy_dir),
        load_tokenizer(str(copy_dir)),
        load_tokenizer(tokenizer_path, engine="tokenizers"),
        load_tokenizer(base.save(tmp_path / "saved")),
    ]
    assert {t.fingerprint for t in same} == {base.fingerprint}
    # the decoder and stored truncation settings do not change ids, so they do not change the fingerprint
    data = tokenizer_json(tokenizer_path)
    data["decoder"] = None
    data["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    other = load_tokenizer(write_json(tmp_path, data, "nodecoder.json"))
    assert other.fingerprint == base.fingerprint
    assert len(other.encode("a fairly long text " * 10)) > 8


#: JSON values as the standard library reads them: floats of every exponent, ints past 64 bits, any text
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _stdlib_sha256(obj) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


@settings(max_examples=400, deadline=None)
@given(obj=JSON_VALUES)
@example(obj={"dropout": 1e-05, "vocab": {"a": 0}})  # orjson would write 0.00001
@example(obj={1: "int keys", 2: ("a", "tuple")})  # the standard library's own conversions
@example(obj=[[["a", "b"], ["c", 2**64]], {"z": None, "\U0001f600": True, "é": [1.5]}])
def test_fingerprint_json_is_the_standard_library_s_bytes_whichever_writer_runs(obj):
    """Fingerprints define every cache's identity: the fast writer may never change a byte of it."""
    assert sha256_json(obj) == _stdlib_sha256(obj)


def test_fingerprints_of_the_families_are_the_standard_library_definition_s(family_tokenizers):
    """The fingerprint of each family's tokenizer.json, computed here with nothing but the standard library."""
    for name in (
        "cl100k-tokenizer.json",
        "deepseek",
        "mistral-v1",
        "sentencepiece-bpe",
        "unigram",
        "wordpiece",
    ):
        tok = family_tokenizers[name]
        spec = json.loads(tok._json)
        want = _stdlib_sha256(
            {
                "kind": tok.kind,
                "tokenizer": {
                    k: spec.get(k) for k in ("model", "normalizer", "pre_tokenizer", "added_tokens")
                },
                "bos_id": tok.bos_id,
                "eos_id": tok.eos_id,
                "pad_id": tok.pad_id,
                "adds_bos": tok.adds_bos,
            }
        )
        assert tok.fingerprint == want, name


def _renamed_token(d: dict) -> None:
    vocab = d["model"]["vocab"]
    token = next(t for t, i in vocab.items() if i == 300)
    # swap ids of two merged tokens: same strings, different ids
    other = next(t for t, i in vocab.items() if i == 301)
    vocab[token], vocab[other] = 301, 300


@pytest.mark.parametrize(
    "change",
    [
        _renamed_token,
        lambda d: (
            d["model"].__setitem__("merges", d["model"]["merges"][:-1])
            or d["model"]["vocab"].pop(max(d["model"]["vocab"], key=d["model"]["vocab"].get))
        ),
        lambda d: d["added_tokens"].append(
            {
                "id": 893,
                "content": "<|pad|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ),
        lambda d: d.__setitem__("normalizer", {"type": "NFKC"}),
        lambda d: d["pre_tokenizer"].__setitem__("use_regex", False),
    ],
)
def test_fingerprint_changes_with_vocabulary_merges_specials_and_pipeline(tokenizer_path, tmp_path, change):
    data = tokenizer_json(tokenizer_path)
    change(data)
    assert (
        load_tokenizer(write_json(tmp_path, data)).fingerprint != load_tokenizer(tokenizer_path).fingerprint
    )


def test_hf_folder_config_supplies_specials_template_and_bos_convention(tokenizer_path, tmp_path):
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.add_special_tokens(["<s>", "<pad>"])
    bos, pad = raw.token_to_id("<s>"), raw.token_to_id("<pad>")
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    folder = tmp_path / "model"
    folder.mkdir()
    raw.save(str(folder / "tokenizer.json"))
    # the post-processor alone says: BOS <s>, added by convention
    detected = load_tokenizer(folder)
    assert (detected.bos_id, detected.adds_bos, detected.eos_id, detected.pad_id) == (bos, True, 0, None)
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": {"content": "<s>"},
                "eos_token": "<|endoftext|>",
                "pad_token": "<pad>",
                "chat_template": template,
            }
        )
    )
    tok = load_tokenizer(folder)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.adds_bos) == (bos, 0, pad, True)
    assert tok.chat_template == template
    assert tok.engine == "fastokens"
    restored = load_tokenizer(tok.save(tmp_path / "copy"))
    assert (restored.bos_id, restored.eos_id, restored.pad_id, restored.adds_bos) == (bos, 0, pad, True)
    assert restored.chat_template == template and restored.fingerprint == tok.fingerprint
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    assert load_tokenizer(folder).adds_bos is False
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<missing>"}))
    with pytest.raises(TokenizerError, match="<missing>"):
        load_tokenizer(folder)


def test_saved_folder_loads_with_transformers_too(tokenizer_path, tmp_path, documents):
    transformers = pytest.importorskip("transformers")
    tok = load_tokenizer(tokenizer_path)
    out = tok.save(tmp_path / "copy")
    assert (out / "tokenizer.json").is_file() and (out / META_FILE).is_file()
    hf = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf(documents[:10], add_special_tokens=False)["input_ids"] == tok.encode_batch(documents[:10])
    assert hf.eos_token == "<|endoftext|>"


def test_transformers_loader_agrees_with_direct_loader(tokenizer_path, tmp_path):
    pytest.importorskip("transformers")
    from tokenmill.tokenizer import load_transformers

    folder = load_tokenizer(tokenizer_path).save(tmp_path / "copy")
    via_hf = load_transformers(str(folder))
    direct = load_tokenizer(folder)
    assert via_hf.fingerprint == direct.fingerprint
    assert via_hf.encode("hello world") == direct.encode("hello world")


def test_train_tokenizer_and_save_restore(documents, tmp_path):
    tok = train_tokenizer(documents, 600, special_tokens=("<|endoftext|>", "<|pad|>"))
    assert tok.vocab_size <= 600 and tok.eos_id == 0 and tok.token_to_id("<|pad|>") == 1
    assert tok.engine == "fastokens"
    out = tok.save(tmp_path / "tok")
    meta = json.loads((out / META_FILE).read_text())
    assert meta["fingerprint"] == tok.fingerprint and meta["kind"] == "huggingface"
    back = load_tokenizer(out)
    assert back.fingerprint == tok.fingerprint
    assert back.encode_batch(documents[:30]) == tok.encode_batch(documents[:30])
    with pytest.raises(TokenizerError, match="too small"):
        train_tokenizer(documents, 100)


def test_byte_tokenizer():
    tok = load_tokenizer("bytes")
    assert isinstance(tok, ByteTokenizer)
    assert (tok.vocab_size, tok.eos_id, tok.bos_id, tok.pad_id, tok.adds_bos) == (259, 256, 257, 258, False)
    text = "café 東京 🙂 <|endoftext|>"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.encode(text, parse_special=True) == list("café 東京 🙂 ".encode()) + [256]
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([104, 105, 256]) == "hi<|endoftext|>"
    assert tok.token_to_id("<|pad|>") == 258 and tok.token_to_id("a") == 97


def test_saved_byte_tokenizer_restores(tmp_path):
    tok = ByteTokenizer()
    back = load_tokenizer(tok.save(tmp_path / "b"))
    assert isinstance(back, ByteTokenizer) and back.fingerprint == tok.fingerprint


def test_tiktoken_file_loads_and_round_trips(tokenizer_path, tmp_path, documents):
    ranks = byte_level_ranks(tokenizer_path)
    # a .tiktoken file needs contiguous ranks from 0; renumber the fixture's (id 0 is its special token)
    import base64

    ordered = sorted(ranks, key=ranks.get)
    path = tmp_path / "mini.tiktoken"
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(ordered)))
    tok = load_tokenizer(path)
    assert isinstance(tok, TiktokenTokenizer) and tok.kind == "tiktoken"
    assert tok.vocab_size == len(ordered) + 1 and tok.eos_id == len(ordered)
    ids = tok.encode_batch(documents[:20])
    assert [tok.decode(x) for x in ids] == documents[:20]
    assert tok.encode("x<|endoftext|>", parse_special=True)[-1] == tok.eos_id
    assert tok.eos_id not in tok.encode("x<|endoftext|>")
    back = load_tokenizer(tok.save(tmp_path / "saved"))
    assert isinstance(back, TiktokenTokenizer)
    assert back.fingerprint == tok.fingerprint and back.encode_batch(documents[:20]) == ids
    assert back.eos_id == tok.eos_id


def test_bad_specs_raise_tokenizer_error(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load"):
        load_tokenizer(bad)
    other = tmp_path / "vocab.txt"
    other.write_text("a\n")
    with pytest.raises(TokenizerError, match="not a tokenizer file"):
        load_tokenizer(other)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(TokenizerError):
        load_tokenizer(empty)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / META_FILE).write_text("{")
    with pytest.raises(TokenizerError, match="damaged"):
        load_tokenizer(damaged)


def test_normalizer_tokenizer_runs_on_tokenizers_engine(tokenizer_path, tmp_path):
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.normalizer = normalizers.NFKC()
    path = tmp_path / "nfkc.json"
    raw.save(str(path))
    tok = load_tokenizer(path)
    assert tok.engine == "tokenizers"
    assert tok.encode("ﬁne") == tok.encode("fine")  # NFKC folds the ligature


def test_tokenizers_survive_pickling_for_worker_processes(tokenizer_path):
    import pickle

    text = "hello <|endoftext|> world"
    for tok in (
        load_tokenizer(tokenizer_path),
        load_tokenizer(tokenizer_path, engine="tokenizers"),
        ByteTokenizer(),
    ):
        tok.encode(text, parse_special=True)
        copy = pickle.loads(pickle.dumps(tok))
        assert copy.engine == tok.engine and copy.fingerprint == tok.fingerprint
        assert copy.encode(text) == tok.encode(text)
        assert copy.encode(text, parse_special=True) == tok.encode(text, parse_special=True)


def test_tiktoken_encoding_name_through_tiktokens_registry(tokenizer_path, monkeypatch, documents):
    """A named encoding loads through tiktoken's plugin registry (here one registered offline, as a package that
    ships ranks would); a name tiktoken knows but cannot fetch offline is a TokenizerError, not a crash."""
    import tiktoken.registry

    fixture = load_tokenizer(tokenizer_path)
    ranks = byte_level_ranks(tokenizer_path)
    tiktoken.registry.list_encoding_names()  # populate the registry first
    monkeypatch.setitem(
        tiktoken.registry.ENCODING_CONSTRUCTORS,
        "tokenmill_test_base",
        lambda: {
            "name": "tokenmill_test_base",
            "pat_str": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            "mergeable_ranks": ranks,
            "special_tokens": {"<|endoftext|>": 0},
        },
    )
    tok = load_tokenizer("tokenmill_test_base")
    assert isinstance(tok, TiktokenTokenizer) and tok.name == "tokenmill_test_base"
    assert tok.eos_id == 0 and tok.vocab_size == fixture.vocab_size
    assert tok.encode_batch(documents[:20]) == fixture.encode_batch(documents[:20])

    def offline():
        raise OSError("no network")

    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "tokenmill_test_offline", offline)
    with pytest.raises(TokenizerError, match="not available offline"):
        load_tokenizer("tokenmill_test_offline")
