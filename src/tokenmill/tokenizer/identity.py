"""When another engine gives exactly the ids of a tokenizer's own library: structural checks and the probe set.

The probe set is what every candidate engine must encode exactly as the reference before it runs a tokenizer
(:func:`tokenmill.tokenizer.engine.choose_engine`). It holds what engines have been seen to disagree on, so a
difference shows up at load time rather than in a cache: code points of every Unicode general category in the
contexts a pre-tokenizer regex distinguishes (letter, digit, space, newline, apostrophe), whitespace runs of
every kind, digit runs longer than the usual three-digit split, CJK, emoji sequences (ZWJ, flags, skin tones,
keycaps), the tokenizer's own special tokens and look-alikes of them, and long repeats.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

# `tokenizers` compiles Split patterns with Oniguruma's Ruby syntax, where "X{1,3}+" is "(X{1,3})+" (any number
# of X); PCRE2 (fastokens) and fancy-regex (tiktoken) read it as a possessive "X{1,3}". tiktoken's own cl100k
# pattern is written this way, so a tokenizer.json made from it with that pattern splits digit runs differently
# in `tokenizers` ("0010" -> "00" "10") than in every other engine ("001" "0"). Measured on the stdlib corpus:
# 575 of 1,250 files differ.
_POSSESSIVE_INTERVAL = re.compile(r"(?<!\\)\{\d+(?:,\d*)?\}\+")

_CONTEXTS = ("a{}b", " {}{}", "1{}\n", " {}'ll")


def known_divergence(tokenizer_json: dict[str, Any]) -> str | None:
    """A reason why `tokenizers` and a PCRE2/fancy-regex engine read this tokenizer's regexes differently, or
    None when no known difference applies."""
    for pattern in _regexes(tokenizer_json.get("pre_tokenizer")) + _regexes(tokenizer_json.get("normalizer")):
        m = _POSSESSIVE_INTERVAL.search(pattern)
        if m:
            return (
                f"reads the regex {m.group()!r} as possessive, where `tokenizers` (Oniguruma) reads a repeated "
                "interval"
            )
    return None


def _regexes(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in _regexes(item)]
    if not isinstance(node, dict):
        return []
    found = []
    pattern = node.get("pattern")
    if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        found.append(pattern["Regex"])
    for key in ("pretokenizers", "normalizers"):
        found += _regexes(node.get(key))
    return found


@functools.lru_cache(maxsize=1)
def _category_samples() -> tuple[str, ...]:
    """Up to 24 code points of every Unicode general category (spread over the range) plus every 257th code
    point, each in the contexts a pre-tokenizer regex tells apart: about 70k characters in 20 texts. The
    categories are read at every 7th code point (a full scan costs seconds on a loaded machine), plus the
    members of the small categories a stride misses (line and paragraph separators, title case, enclosing
    marks, connector punctuation)."""
    by_category: dict[str, list[int]] = {}
    for c in [*range(0, 0x110000, 7), *_RARE]:
        if not 0xD800 <= c < 0xE000:
            by_category.setdefault(unicodedata.category(chr(c)), []).append(c)
    chosen: set[int] = set(range(0, 0x110000, 257)) - set(range(0xD800, 0xE000))
    for members in by_category.values():
        members.sort()
        step = max(1, len(members) // 24)
        chosen.update(members[::step][:24])
        chosen.add(members[-1])
    points = sorted(chosen)
    return tuple(
        "".join(f.format(chr(c), chr(c)) for c in points[i : i + 256] for f in _CONTEXTS)
        for i in range(0, len(points), 256)
    )


_RARE = (
    0x2028,
    0x2029,
    0x01C5,
    0x01C8,
    0x1F88,
    0x1FFC,
    0x0488,
    0x20DD,
    0x20E3,
    0xA670,
    0x005F,
    0x203F,
    0xFE4F,
)

_FIXED = (
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\r\n",
    "\t",
    " \t \n \r\n  \u00a0\u3000\u2028x",
    "x   ",
    "   x",
    "a \n\n  b",
    "a\n \n\tb  \n",
    "It's we'll they'RE I'M you'd 'll 'S",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "https://example.com/a?b=1&c=%20#frag",
    "0 00 001 0010 12345 1234567 3.14159 1,000,000 -42 1e-10 0x1F",
    "\u0663\u0664\u0665 \uff11\uff12\uff13\uff14 \u00b2\u00b3 \u2460\u2461 \u0e51\u0e52 \u096a\u096b\u096c",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\uff0c\u4f60\u597d\uff01 \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
    "\U0001f642 \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1ef\U0001f1f5 \U0001f44d\U0001f3fd 1\ufe0f\u20e3 \u2764\ufe0f",
    "caf\u00e9 cafe\u0301 na\u00efve \u00c5ngstr\u00f6m \u0130stanbul \u00df \ufb01 \u2126",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\x00\x01\x1b[0m\x7f\u200b\u200c\u200d\ufeff\ufffd",
    "a" * 5000,
    " " * 3000,
    "ab" * 2000,
    "\n" * 1000,
    "\U0001f600" * 500,
    "1" * 1000,
    "-" * 2000,
    "=" * 999 + "\n" + "\t" * 300,
)


def probe_texts(special_tokens: Iterable[str] = ()) -> list[str]:
    """The probe set for a tokenizer whose special tokens (and other added tokens) are ``special_tokens``."""
    looks = [
        "<s>",
        "</s>",
        "<unk>",
        "<pad>",
        "[CLS]",
        "[SEP]",
        "<|endoftext|>",
        "<|im_start|>",
        "<0x41>",
        "\u2581",
    ]
    for s in list(special_tokens)[:64]:
        looks += [s, s[:-1], s[1:], f" {s}", f"{s}{s}", f"x{s}y", s.upper(), f"{s}\n"]
    return [*_FIXED, " ".join(looks), *looks, *_category_samples()]
