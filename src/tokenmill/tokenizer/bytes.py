"""The built-in UTF-8 byte tokenizer: needs no files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenmill.tokenizer.base import Tokenizer, scrub_surrogates
from tokenmill.tokenizer.engine import Engine, FunctionEngine


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0-255 plus three specials: 256 ``<|endoftext|>`` (EOS), 257 ``<|beginoftext|>``
    (BOS, not added by convention), 258 ``<|pad|>``. Needs no files, so it is the tokenizer of last resort and
    of quick experiments."""

    kind = "bytes"
    SPECIALS = {"<|endoftext|>": 256, "<|beginoftext|>": 257, "<|pad|>": 258}

    def __init__(self) -> None:
        self.name = "bytes"
        self.vocab_size = 259
        self.eos_id, self.bos_id, self.pad_id = 256, 257, 258
        self.adds_bos = False
        self.chat_template = None
        self._special_re = re.compile("|".join(re.escape(s) for s in self.SPECIALS))

    def _encode_one(self, text: str, parse_special: bool) -> list[int]:
        if not parse_special:
            try:
                return list(text.encode("utf-8"))
            except UnicodeEncodeError:
                return list(scrub_surrogates(text).encode("utf-8"))
        out: list[int] = []
        pos = 0
        for m in self._special_re.finditer(text):
            out += self._encode_one(text[pos : m.start()], False)
            out.append(self.SPECIALS[m.group()])
            pos = m.end()
        return out + self._encode_one(text[pos:], False)

    def _reference_engine(self) -> Engine:
        return FunctionEngine("bytes", lambda texts: [self._encode_one(t, False) for t in texts])

    def _encode_special(self, texts: list[str]) -> list[list[int]]:
        return [self._encode_one(t, True) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        names = {v: k for k, v in self.SPECIALS.items()}
        out, buf = [], bytearray()
        for i in ids:
            if i < 256:
                buf.append(i)
            else:
                out.append(buf.decode("utf-8", "replace"))
                buf = bytearray()
                out.append(names.get(i, ""))
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)

    def token_to_id(self, token: str) -> int | None:
        if token in self.SPECIALS:
            return self.SPECIALS[token]
        b = token.encode("utf-8")
        return b[0] if len(b) == 1 else None

    def id_to_token(self, token_id: int) -> str | None:
        if 0 <= token_id < 256:
            return bytes([token_id]).decode("latin-1")
        return {v: k for k, v in self.SPECIALS.items()}.get(token_id)

    def _fingerprint_payload(self) -> Any:
        return {"bytes": "utf-8", "specials": self.SPECIALS}

    def _save_files(self, directory: Path) -> dict[str, Any]:
        return {}
