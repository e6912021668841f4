"""When another engine provably gives the ids of a tokenizer's own library: the tiktoken twin."""

from __future__ import annotations

from typing import Any

from tokenmill.tokenizer.tiktoken import GPT2_PATTERN


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _pretokenizer_pattern(pre: Any) -> str | None:
    """The split regex when the pre-tokenizer is byte-level BPE's (GPT-2 or Llama-3/Qwen2 style), else None."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return None
        return GPT2_PATTERN
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if len(steps) != 2:
            return None
        split, byte_level = steps
        if (
            split.get("type") != "Split"
            or split.get("behavior") != "Isolated"
            or split.get("invert")
            or not isinstance(split.get("pattern"), dict)
            or "Regex" not in split["pattern"]
        ):
            return None
        if (
            byte_level.get("type") != "ByteLevel"
            or byte_level.get("add_prefix_space")
            or byte_level.get("use_regex")
        ):
            return None
        return split["pattern"]["Regex"]
    return None


def tiktoken_twin(tj: dict[str, Any], name: str) -> Any:
    """A tiktoken ``Encoding`` that gives exactly the ids of the tokenizer described by ``tj``, or the reason
    why none can.

    Why this is exact. Both engines split text with the same regex and run BPE on each piece's UTF-8 bytes.
    `tokenizers` repeatedly merges the adjacent pair of lowest *merge* rank among the listed merges; tiktoken
    merges the adjacent pair whose concatenation has the lowest *token* rank among all vocabulary entries, and
    returns a piece whole when the piece is itself a token. We take token rank = id and require (1) ids of merge
    results to increase with the merge order, each token made by exactly one merge, so listed merges are chosen
    in the same order; (2) every token to be what `tokenizers`' own merges make of its bytes. (2) rules out the
    only other difference: tiktoken merging a pair (x, y) that is not a listed merge although x+y is a token t.
    If that were the lowest-ranked pair at some step, `tokenizers` run on t's bytes alone would reach (x, y)
    the same way and stop there, so t would not encode to itself. (2) also makes tiktoken's whole-piece shortcut
    (and `ignore_merges`) agree with the merges. The regex engines differ (Oniguruma vs fancy-regex); the tests
    compare the ids on real corpora and on every Unicode code point.
    """
    try:
        import tiktoken
        from tokenizers import Tokenizer as _HFTok
        from tokenizers import models
    except ImportError:
        return "tiktoken is not installed"
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        return f"model is {model.get('type')}, not BPE"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "BPE uses dropout or subword prefixes/suffixes"
    if model.get("byte_fallback"):
        return "BPE uses byte fallback"
    if tj.get("normalizer") is not None:
        return "tokenizer has a normalizer"
    pattern = _pretokenizer_pattern(tj.get("pre_tokenizer"))
    if pattern is None:
        return "pre-tokenizer is not plain byte-level BPE"
    added = tj.get("added_tokens") or []
    if any(not a.get("special") for a in added):
        return "tokenizer has non-special added tokens (matched inside plain text)"
    vocab: dict[str, int] = model.get("vocab") or {}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]
    b2u = bytes_to_unicode()
    u2b = {c: b for b, c in b2u.items()}
    if any(c not in vocab for c in b2u.values()):
        return "vocabulary lacks some of the 256 byte tokens"
    added_contents = {a["content"] for a in added}
    ranks: dict[bytes, int] = {}
    for c, b in u2b.items():
        ranks[bytes([b])] = vocab[c]
    last_id = -1
    made: set[str] = set()
    for pair in merges:
        if len(pair) != 2:
            return "malformed merge"
        t = pair[0] + pair[1]
        tid = vocab.get(t)
        if tid is None or t in made:
            return "a merge result is missing from the vocabulary or made twice"
        if tid <= last_id:
            return "merge order does not follow id order"
        last_id = tid
        made.add(t)
        try:
            ranks[bytes(u2b[ch] for ch in t)] = tid
        except KeyError:
            return "a token is not made of byte-level characters"
    extra = set(vocab) - made - set(b2u.values())
    if extra - added_contents:
        return "vocabulary has tokens that no merge makes"
    if len(set(ranks.values())) != len(ranks):
        return "two tokens share an id"
    # (2): every merged token encodes to itself through the merges alone
    check = _HFTok(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tokens = sorted(made, key=vocab.__getitem__)
    got = check.encode_batch(tokens, add_special_tokens=False)
    for t, e in zip(tokens, got, strict=True):
        if e.ids != [vocab[t]]:
            return f"token {t!r} is not reachable through its merges"
    specials = {a["content"]: a["id"] for a in added}
    try:
        return tiktoken.Encoding(
            f"tokenmill:{name}", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
        )
    except Exception as e:  # tiktoken rejects a regex it cannot compile, for instance
        return f"tiktoken cannot build the encoder: {e}"
