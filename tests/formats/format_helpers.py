"""Helpers of the record-format tests: templates, the golden tokenizer (raw `tokenizers`, never the formatter),
and the comparison of a formatted record with expected ids and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as RawTokenizer

from tokenmill.formats import Encoded, FormatConfig, RecordFormatter

EOS = 0  # the fixture tokenizer's <|endoftext|>

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


class Golden:
    """Tokenizes documented parts independently with the raw library, to build expected ids and masks."""

    def __init__(self, path: Path) -> None:
        self.plain = RawTokenizer.from_file(str(path))
        self.plain.encode_special_tokens = True  # data text: special-token text stays text
        self.special = RawTokenizer.from_file(str(path))  # template text: control tokens recognised

    def text(self, s: str) -> list[int]:
        return self.plain.encode(s, add_special_tokens=False).ids

    def tmpl(self, s: str) -> list[int]:
        return self.special.encode(s, add_special_tokens=False).ids

    def build(self, parts: list[tuple[str, str | list[int], bool]]) -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        mask: list[bool] = []
        for kind, value, trained in parts:
            got = value if kind == "ids" else self.text(value) if kind == "text" else self.tmpl(value)
            ids += got
            mask += [trained] * len(got)
        return ids, mask


def check(result, ids: list[int], mask: list[bool] | None) -> None:
    assert isinstance(result, Encoded), result
    assert result.ids.dtype == np.uint32
    assert result.ids.tolist() == ids
    if mask is None or all(mask):
        assert result.mask is None
    else:
        assert result.mask is not None and result.mask.tolist() == mask


def fmt(tokenizer, **options) -> RecordFormatter:
    return RecordFormatter(FormatConfig(**options), tokenizer)


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye <|endoftext|>"},
    {"role": "assistant", "content": "Bye."},
]
