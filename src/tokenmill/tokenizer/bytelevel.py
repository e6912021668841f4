"""SentencePiece-style BPE rewritten as a byte-level BPE that gives the same ids, for fastokens' faster path.

A SentencePiece-style BPE (Llama 2, Mistral v1 and the other tokenizer.json files converted from SentencePiece:
a ``Prepend``/``Replace`` "▁" normalizer, no pre-tokenizer, ``byte_fallback``) runs in fastokens at about a
third of the speed it reaches on byte-level BPEs: the whole document is one word, and characters rather than
bytes are its symbols. Measured on 2 shards of the benchmark corpus (24.6M characters, 2 cores) with the 32k
BPE trained there: 1.23-1.36 s as the file is, 0.27-0.31 s rewritten (Mistral v1's converted file runs at that
speed either way). The rewrite keeps every id and adds only the ids of partial characters:

- **Symbols.** The original starts from characters: a character of the vocabulary is its token, any other
  becomes the ``<0xXX>`` tokens of its UTF-8 bytes. The rewrite starts from bytes: a byte is the token of its
  ASCII character where the vocabulary has one, else its ``<0xXX>`` token; merges ranked before all others
  join the bytes of each vocabulary character into that character's token. The merges proper then start from
  the same symbols. A character outside the vocabulary whose first bytes are those of one inside stops at a
  partial character, which the original never makes: partial characters get ids from :attr:`first_extra` up,
  and each is then replaced by the ``<0xXX>`` tokens of its bytes (:attr:`Rewrite.partials`), which is what the
  original gives for all of that character's bytes. That is exact: a partial character is in no merge but the
  chain that would complete it, and the bytes after it are continuation bytes, which start no merge.
- **Words.** The rewrite cuts the text before every run of "▁" that follows another character. That is exact
  when no merge makes a token where a character other than "▁" is followed by "▁" (checked: no merge can then
  join symbols across a cut, and BPE on the pieces is BPE on the whole). Where no merge joins a letter (or
  mark), a decimal digit and any other character to one another either (SentencePiece's own trainer splits
  words by script and digits, so Llama 2's and Mistral v1's vocabularies do not), it also cuts where the class
  changes: shorter pieces that repeat more, 10-20% less fastokens time on the benchmark corpus with Mistral v1
  (:func:`word_pattern`). Whether a cut is exact depends only on the two characters beside it, which is what
  makes the check over the merges complete.
- **Merges** keep their order; ``<0xXX>`` tokens are in none of them (checked), so byte fallback never differs.

Anything else (dropout, a pre-tokenizer, subword prefixes, a missing ``<0xXX>`` token, an added token that a
merge makes) and the rewrite is not made. Its ids are still checked against `tokenizers` on the probe set and the
first documents like any engine's (:func:`tokenmill.tokenizer.engine.choose_engine`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

METASPACE = "\u2581"


#: Character classes of the finer cut, as fastokens' regex sees them (and :func:`_char_class` below)
_WORD, _DIGIT = r"\p{L}\p{M}", r"\p{Nd}"


def word_pattern(mark: str, classes: bool = False) -> str:
    """The cut: a run of ``mark`` with the characters up to the next run, or a run of ``mark`` alone (at the end).
    With ``classes``, the characters after the run are those of one class only: letters and marks, decimal
    digits, or any other character but ``mark``."""
    if not classes:
        return f"{mark}*[^{mark}]+|{mark}+"
    return f"{mark}*(?:[{_WORD}]+|[{_DIGIT}]+|[^{_WORD}{_DIGIT}{mark}]+)|{mark}+"


def _char_class(c: str) -> str:
    """The class :func:`word_pattern` puts ``c`` in ("?" for a character this Python's Unicode tables do not
    know, which a newer regex engine might put in any class)."""
    if c == METASPACE:
        return "m"
    category = unicodedata.category(c)
    if category == "Cn":
        return "?"
    return "W" if category[0] in "LM" else "D" if category == "Nd" else "O"


_CLASS_CHANGE = re.compile(r"W[DO]|D[WO]|O[WD]|\?")


def merges_keep_classes(made: Iterable[str]) -> bool:
    """Whether no merge result has two characters of different classes side by side (nor one of unknown class):
    then no merge joins symbols across a class change, and :func:`word_pattern` may cut there. A merge
    result's characters are joined by "▁" here, which is class "m": no pair of classes across two results."""
    joined = METASPACE.join(made)
    table = {ord(c): _char_class(c) for c in set(joined)}
    return _CLASS_CHANGE.search(joined.translate(table)) is None


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_CROSSES = re.compile(f"[^{METASPACE}]{METASPACE}")


def _absent_separator(joined: str) -> str | None:
    """A character ``joined`` does not hold, to join its parts by and find them again (None: every candidate
    occurs)."""
    return next((c for c in ("\x00", "\x01", "\x1f", "\ufffe", "\uffff") if c not in joined), None)


def _crossing(made: Iterable[str]) -> str | None:
    """The first merge result with a character other than "▁" before a "▁" (a merge across a word start), or
    None. One search over the results joined by a character none of them has (else one search each)."""
    made = list(made)
    sep = _absent_separator("".join(made))
    if sep is not None and re.search(f"[^{METASPACE}{sep}]{METASPACE}", sep.join(made)) is None:
        return None
    return next((m for m in made if _CROSSES.search(m)), None)


_BYTE_FALLBACK = re.compile(r'"byte_fallback"\s*:\s*true')


@dataclass(frozen=True)
class Rewrite:
    """A byte-level tokenizer.json with the original's ids; ids from ``first_extra`` up are partial characters,
    ``partials[i]`` the original's ids (``<0xXX>`` tokens) for partial character ``first_extra + i``.
    ``spaces``: the original's normalizer is the Metaspace one ("▁" before the text, "▁" for each space), which
    the rewrite leaves to :func:`metaspace_as_spaces` and runs on spaces: its tokens have " " for "▁"."""

    tokenizer_json: str
    first_extra: int
    partials: tuple[tuple[int, ...], ...] = ()
    spaces: bool = False
    classes: bool = False  # the pieces are cut where the character class changes too (:func:`word_pattern`)


def metaspace_as_spaces(texts: list[str]) -> list[str]:
    """What the Metaspace normalizer makes of each text, with spaces for "▁" (a literal "▁" is a space to it
    too): a space before a non-empty text. Two C string passes, where fastokens' normalizer was a quarter of
    the rewritten tokenizer's time (0.42 -> 0.31 s on 24.6M characters)."""
    return [" " + t.replace(METASPACE, " ") if t else t for t in texts]


def _is_metaspace_normalizer(node: Any) -> bool:
    """Prepend "▁" and Replace " " by "▁", in either order (they commute): Llama 2's and Mistral v1's."""
    if not isinstance(node, dict) or node.get("type") != "Sequence":
        return False
    steps = node.get("normalizers") or []
    prepend = {"type": "Prepend", "prepend": METASPACE}
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": METASPACE}
    return len(steps) == 2 and prepend in steps and replace in steps


@functools.lru_cache(maxsize=1)
def _byte_chars() -> tuple[str, ...]:
    """The byte-level alphabet: the character that stands for each byte (GPT-2's table, as ``ByteLevel`` uses)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@functools.lru_cache(maxsize=1)
def _latin1_to_byte_chars() -> dict[int, str]:
    return dict(enumerate(_byte_chars()))


def byte_level(text: str) -> str:
    """``text`` as byte-level characters (its UTF-8 bytes, each as the alphabet's character). Through latin-1 and
    ``str.translate``, both in C: 6x a join over the bytes, which was most of the rewrite's 0.17 s on 32k tokens."""
    return text.encode("utf-8").decode("latin-1").translate(_latin1_to_byte_chars())


def byte_level_all(texts: list[str], spaces: bool = False) -> list[str]:
    """:func:`byte_level` of each text (with spaces for "▁" where ``spaces``), in one pass over them joined.

    The texts are joined by a character none of them has; its byte-level character then appears only where it
    was (the alphabet is one character per byte), so a split gives the texts back. Three C passes over 32k
    tokens and 61k merges instead of a call each: 0.3 s -> 0.05 s of the rewrite, which holds the GIL while
    prepare starts."""
    sep = _absent_separator("".join(texts))
    if sep is None:  # every candidate is in some token: one call each
        return [byte_level(t.replace(METASPACE, " ") if spaces else t) for t in texts]
    joined = sep.join(texts)
    if spaces:
        joined = joined.replace(METASPACE, " ")
    out = byte_level(joined).split(byte_level(sep))
    return out if texts else []


def might_rewrite(tokenizer_json: str) -> bool:
    """Whether :func:`sentencepiece_rewrite` may apply: decided without parsing the file (most do not)."""
    return _BYTE_FALLBACK.search(tokenizer_json) is not None


def sentencepiece_rewrite(tokenizer_json: str) -> Rewrite | str:
    """The byte-level form of a SentencePiece-style BPE tokenizer.json, or why it has none."""
    if not might_rewrite(tokenizer_json):
        return "not a BPE with byte fallback"
    try:  # orjson: 5x the stdlib both ways on a 3 MB file (GIL time while prepare starts)
        spec = orjson.loads(tokenizer_json)
    except orjson.JSONDecodeError:
        return "is not JSON that orjson reads (a lone surrogate escape?)"
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") is not True:
        return "not a BPE with byte fallback"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "uses dropout or subword affixes"
    if model.get("ignore_merges"):
        return "ignores merges for whole words"
    if spec.get("pre_tokenizer") is not None:
        return "has a pre-tokenizer"
    vocab: dict[str, int] = model.get("vocab") or {}
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges") or []]
    byte_ids: dict[int, int] = {}
    byte_tokens: set[str] = set()
    for token, i in vocab.items():
        m = _BYTE_TOKEN.fullmatch(token) if token[:3] == "<0x" else None
        if m:
            byte_ids[int(m.group(1), 16)] = i
            byte_tokens.add(token)
    if len(byte_ids) != 256:
        return f"has {len(byte_ids)} of the 256 <0xXX> tokens"
    added = {t["content"] for t in spec.get("added_tokens") or [] if isinstance(t, dict)}
    # the merges are checked all at once (set and string operations in C), not one at a time: 0.05 -> 0.01 s
    # on Mistral v1's 59k merges, GIL time while prepare starts
    if not set(map(type, merges)) <= {list, tuple} or not set(map(len, merges)) <= {2}:
        return "has a malformed merge"
    sides = [side for merge in merges for side in merge]
    if not set(map(type, sides)) <= {str}:
        return "has a malformed merge"
    if not byte_tokens.isdisjoint(sides):
        return "merges a <0xXX> token"
    made = dict.fromkeys(map(str.__add__, sides[::2], sides[1::2]))
    crossing = _crossing(made)
    if crossing is not None:
        return f"merges across a word start ({crossing!r})"
    if added & made.keys():
        return "a merge makes an added token"
    # The Metaspace normalizer runs in Python on spaces when no added token is matched in the text (special
    # tokens never are: their text in data is text), so that it sees the same text fastokens would.
    plain_added = [t for t in spec.get("added_tokens") or [] if isinstance(t, dict) and not t.get("special")]
    # (a space stands for the "▁" token, so the vocabulary must have one: else "▁" falls back to its 3 bytes)
    spaces = _is_metaspace_normalizer(spec.get("normalizer")) and not plain_added and METASPACE in vocab
    mark = " " if spaces else METASPACE

    chars = _byte_chars()
    out_vocab: dict[str, int] = {}
    ids_of_bytes = set(byte_ids.values())
    for (token, i), key in zip(vocab.items(), byte_level_all(list(vocab), spaces)):
        if i in ids_of_bytes:
            continue
        if out_vocab.setdefault(token if token in added else key, i) != i:
            return f"two tokens are one byte string ({token!r})"
    # added tokens that the model's vocabulary leaves out: fastokens reads a vocabulary with holes as no BPE
    have = set(out_vocab.values())
    missing = [t for t in spec.get("added_tokens") or [] if isinstance(t, dict) and t.get("id") not in have]
    for entry in missing:
        if entry["id"] in ids_of_bytes or out_vocab.setdefault(entry["content"], entry["id"]) != entry["id"]:
            return f"the added token {entry['content']!r} is also a plain token"
    for b, i in byte_ids.items():
        if chars[b] not in out_vocab:  # a byte that is no vocabulary character of its own: its <0xXX> token
            out_vocab[chars[b]] = i
        elif out_vocab.setdefault(f"<0x{b:02X}>", i) != i:  # never made by a merge, kept for its id
            return f"<0x{b:02X}> is also a plain token"
    next_id = max([*vocab.values(), *(t.get("id", -1) for t in spec.get("added_tokens") or [])]) + 1
    first_extra = next_id
    char_merges: dict[tuple[str, str], None] = {}
    partials: list[tuple[int, ...]] = []
    for token in vocab:
        if len(token) != 1 or token in added or (spaces and token == METASPACE):  # "▁" is a space there
            continue
        raw = token.encode("utf-8")
        if len(raw) == 1:
            continue
        prefix = chars[raw[0]]
        for k in range(1, len(raw)):
            joined = prefix + chars[raw[k]]
            if joined not in out_vocab:  # a partial character (never the last step: the character is there)
                out_vocab[joined] = next_id
                next_id += 1
                partials.append(tuple(byte_ids[b] for b in raw[: k + 1]))
            char_merges[(prefix, chars[raw[k]])] = None
            prefix = joined
    classes = merges_keep_classes(made)
    sides = byte_level_all(sides, spaces)
    rewritten: dict[str, Any] = dict(spec)
    if spaces:
        rewritten["normalizer"] = None
    rewritten["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": word_pattern(mark, classes)},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    rewritten["model"] = dict(
        model,
        vocab=out_vocab,
        merges=[*char_merges, *zip(sides[::2], sides[1::2])],  # pairs: orjson writes tuples as arrays
        byte_fallback=False,
        fuse_unk=False,
    )
    rewritten["post_processor"] = None  # plain encoding only: no special tokens are added
    rewritten["decoder"] = None
    rewritten["truncation"] = None
    rewritten["padding"] = None
    return Rewrite(orjson.dumps(rewritten).decode(), first_extra, tuple(partials), spaces, classes)
