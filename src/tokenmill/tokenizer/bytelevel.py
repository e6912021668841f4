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
- **The known cut.** fastokens cuts words with a hand-written scanner only for patterns it knows by their text
  (cl100k's and its kin), and runs any other pattern through PCRE2 and a generic loop at a quarter of that speed
  (``benchmarks/bench_split_paths.py``). Where the vocabulary allows, the rewrite is also made with one it knows,
  :data:`KNOWN_CUT` (:attr:`Rewrite.known_cut`). That pattern gives a run of spaces but its last one to a piece of
  its own, while SentencePiece lets the merges decide whether the last "▁" joins the run or the word after it
  ("a  1" is ``▁a ▁▁ 1`` in Mistral v1). It is exact when (checked over the merges, :func:`_known_cut_refusal`):
  no merge joins two characters the pattern may cut between (only letters and marks with letters and marks,
  punctuation and symbols with their own kind, "▁" with either of them, and "▁" with "▁" inside a run), and every
  merge that makes a run of "▁" ranks after every other merge (Mistral v1's 104 run merges are its last). Then
  BPE on "▁"*k + word first does every other merge, the last "▁" joining the word or not, and only then joins
  what "▁" are left: so each run's tokens are those of the run alone, ``BPE("▁"*c)`` for the c "▁" its tokens
  hold, and :class:`tokenmill.tokenizer.fastokens.ByteLevelRewriteEngine` puts them there after fastokens has
  run. The pattern's contractions (``'s``, ``'t``...) cut inside words, so the rewrite swaps "'" and
  :data:`APOSTROPHE_STAND_IN` (both punctuation to the pattern) in its vocabulary and in the text; a text where
  the stand-in itself comes before a contraction, or that holds one of the few non-ASCII pairs a merge joins and
  the pattern may cut between (:attr:`Rewrite.hazards`), is encoded with the generic cut.

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


#: One of the patterns fastokens' scanner knows by its text (letters and marks together, one digit a piece).
KNOWN_CUT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: What "'" becomes in the text and the vocabulary of :attr:`Rewrite.known_cut`: punctuation to the pattern too,
#: but in none of its contractions
APOSTROPHE_STAND_IN = "\x7f"


def _known_cut_class(c: str) -> str:
    """The class :data:`KNOWN_CUT` puts ``c`` in, as far as the rewrite relies on it: "S" for "▁" (a space
    there), "W" for letters and marks, "O" for punctuation, symbols, and controls and format characters that are
    no whitespace, "R" for "\\r" and "\\n", "N" for numbers, "?" for the rest (other whitespace, unassigned and
    private characters)."""
    if c == METASPACE:
        return "S"
    if c in "\r\n":
        return "R"
    category = unicodedata.category(c)
    if category[0] in "LM":
        return "W"
    if category[0] == "N":
        return "N"
    if category[0] in "PS" or (category in ("Cc", "Cf") and not c.isspace()):
        return "O"
    return "?"


#: Merge results (as classes, "|" between them) the known cut cannot follow: a "▁" after anything else (a merge
#: across a word start) or a run of "▁" with anything after it (only pure runs may hold two "▁")
_KNOWN_CUT_REFUSED = re.compile(r"[^S|]S|SS[^S|]")
#: Two characters side by side that :data:`KNOWN_CUT` may put in two pieces. It never cuts inside a run of letters
#: and marks (no contraction is left: "'" is swapped out), nor of punctuation and symbols (taken whole, with the
#: line breaks after them), nor between a space and the letters, punctuation or line break after it, nor inside a
#: line break; it does cut runs of spaces, whose tokens are put right afterwards (the module's docstring).
_KNOWN_CUT_MAY_CUT = re.compile(r"(?=(W[ORN?]|O[WN?]|S[N?]|R[WON?]|[N?][WORN?]))")
#: a tokenizer with merges of more such pairs than this is not given the known cut
_KNOWN_CUT_MAX_HAZARDS = 32


def _known_cut_refusal(
    results: list[str], made: dict[str, None], added: set[str]
) -> tuple[str | None, tuple[str, ...]]:
    """Why the known cut would not be exact for merges with these ``results`` (in rank order; ``made`` the same
    without repeats), or None; and its hazards: pairs of characters that a merge joins and the pattern may cut
    between ("▁" written as the space that stands for it), so that a text holding one takes the generic cut."""
    sep = _absent_separator("".join(made))
    if sep is None:
        return "every separator character is in some merge", ()
    joined = sep.join(made)
    table = {ord(c): _known_cut_class(c) for c in set(joined)}
    table[ord(sep)] = "|"
    classes = joined.translate(table)
    found = _KNOWN_CUT_REFUSED.search(classes)
    if found is not None:
        at = joined.rfind(sep, 0, found.start()) + 1
        end = joined.find(sep, found.start())
        return f"a merge makes {joined[at : end if end >= 0 else None]!r}", ()
    runs = [not r.strip(METASPACE) for r in results]
    first = runs.index(True) if True in runs else len(runs)
    if not all(runs[first:]):
        return "a merge that makes a run of \u2581 ranks before other merges", ()
    if any(
        c in t for t in added for c in ("'", APOSTROPHE_STAND_IN, _byte_chars()[ord(APOSTROPHE_STAND_IN)])
    ):
        return "an added token holds an apostrophe", ()
    hazards = dict.fromkeys(joined[m.start() : m.start() + 2] for m in _KNOWN_CUT_MAY_CUT.finditer(classes))
    if len(hazards) > _KNOWN_CUT_MAX_HAZARDS:
        return f"merges join {len(hazards)} pairs of characters it may cut between", ()
    ascii_pair = next((h for h in hazards if h.isascii()), None)
    if ascii_pair is not None:  # most texts would hold it: the generic cut for nearly all
        return f"a merge joins {ascii_pair!r}, which it may cut between", ()
    return None, tuple(h.replace(METASPACE, " ") for h in hazards)


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
    #: the same cut by :data:`KNOWN_CUT`, "'" and :data:`APOSTROPHE_STAND_IN` swapped, where that is exact
    known_cut: str | None = None
    known_cut_refusal: str = ""  # why there is none
    #: (id, length) of every token that is a run of "▁", whose tokens the known cut puts right afterwards
    runs: tuple[tuple[int, int], ...] = ()
    #: texts holding one of these take the generic cut (:func:`_known_cut_refusal`)
    hazards: tuple[str, ...] = ()


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
    results = list(map(str.__add__, sides[::2], sides[1::2]))
    made = dict.fromkeys(results)
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
    text = orjson.dumps(rewritten).decode()
    if not spaces:
        return Rewrite(
            text, first_extra, tuple(partials), spaces, classes, None, "spaces do not stand for \u2581"
        )
    refusal, hazards = _known_cut_refusal(results, made, added)
    if refusal is not None:
        return Rewrite(text, first_extra, tuple(partials), spaces, classes, None, refusal)
    runs = tuple((i, len(t)) for t, i in vocab.items() if t and not t.strip(METASPACE))
    known = _known_cut_json(rewritten)
    return Rewrite(text, first_extra, tuple(partials), spaces, classes, known, "", runs, hazards)


def _known_cut_json(rewritten: dict[str, Any]) -> str:
    """``rewritten`` cut by :data:`KNOWN_CUT`, with "'" and :data:`APOSTROPHE_STAND_IN` swapped in its
    vocabulary and merges (their byte-level characters: "'" is itself, the stand-in is not)."""
    quote, stand_in = "'", _byte_chars()[ord(APOSTROPHE_STAND_IN)]
    model = rewritten["model"]
    keys = list(model["vocab"])
    sides = [side for merge in model["merges"] for side in merge]
    # joined by a character none of them has, swapped by three replacements through another such character (C
    # passes; a translate table is a dict lookup a character: 0.03 s more GIL time while prepare starts)
    every = "".join(keys) + "".join(sides) + quote + stand_in
    sep = _absent_separator(every)
    spare = _absent_separator(every + sep) if sep is not None else None
    if sep is None or spare is None:  # one call each
        swap = {ord(quote): stand_in, ord(stand_in): quote}
        keys = [k.translate(swap) for k in keys]
        sides = [x.translate(swap) for x in sides]
    else:
        keys, sides = (
            sep.join(strings)
            .replace(quote, spare)
            .replace(stand_in, quote)
            .replace(spare, stand_in)
            .split(sep)
            if strings
            else []
            for strings in (keys, sides)
        )
    pre = rewritten["pre_tokenizer"]
    split = dict(pre["pretokenizers"][0], pattern={"Regex": KNOWN_CUT})
    cut = dict(
        rewritten,
        pre_tokenizer=dict(pre, pretokenizers=[split, *pre["pretokenizers"][1:]]),
        model=dict(
            model, vocab=dict(zip(keys, model["vocab"].values())), merges=list(zip(sides[::2], sides[1::2]))
        ),
    )
    return orjson.dumps(cut).decode()
