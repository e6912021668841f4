"""Real text for tokenizer tests: the standard library's sources and sweeps over Unicode code points."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

CL100K_STYLE = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""


def stdlib_documents(limit_bytes: int) -> list[str]:
    """Real text: `.py` files of this Python's standard library, one document per file, in path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        docs.append(text)
        total += len(text.encode("utf-8"))
        if total >= limit_bytes:
            break
    assert total >= min(limit_bytes, 100_000), "standard library sources not found"
    return docs


def unicode_sweep(codepoints: list[int]) -> list[str]:
    """Every given code point in contexts that exercise the pre-tokenizer regex (letters, digits, spaces, ')."""
    contexts = ["a{}b", " {} ", "{}{}", "1{}2", "\n{}\n", " {}'ll", "\t{}  x"]
    return [
        "".join(f.format(chr(c), chr(c)) for c in codepoints[i : i + 512] for f in contexts)
        for i in range(0, len(codepoints), 512)
    ]


BMP = [c for c in range(0x10000) if not 0xD800 <= c < 0xE000]


def tokenizer_json(tokenizer_path) -> dict:
    return json.loads(Path(tokenizer_path).read_text())


def write_json(tmp_path: Path, data: dict, name: str = "tokenizer.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def byte_level_ranks(tokenizer_path) -> dict[bytes, int]:
    """A byte-level BPE tokenizer.json's vocabulary as tiktoken ranks (token bytes -> id), specials left out.
    For a tokenizer `tokenizers` trained, tiktoken with these ranks gives the same ids (merge order = id order)."""
    data = tokenizer_json(tokenizer_path)
    u2b = {c: b for b, c in _bytes_to_unicode().items()}
    specials = {a["content"] for a in data.get("added_tokens") or []}
    return {
        bytes(u2b[ch] for ch in tok): i for tok, i in data["model"]["vocab"].items() if tok not in specials
    }
