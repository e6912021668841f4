"""FormatConfig on the one config mechanism: names, spellings, defaults, round trips."""

from __future__ import annotations

import json

import pytest

from tokenmill.errors import ConfigError
from tokenmill.formats import (
    FormatConfig,
    unescape,
)

# ----------------------------------------------------------------------------------------- config


def test_unescape():
    assert unescape("Input:\\n") == "Input:\n"
    assert unescape("a\\tb\\r\\n") == "a\tb\r\n"
    assert unescape("keep \\\\n literal") == "keep \\n literal"
    assert unescape("already\nreal") == "already\nreal"
    assert unescape("C:\\path\\x") == "C:\\path\\x"


def test_from_dict_validates_and_round_trips():
    with pytest.raises(ConfigError, match="'prompt_kye'.*prompt_key"):
        FormatConfig.from_dict({"prompt_kye": "q"})
    with pytest.raises(ConfigError, match="unknown format"):
        FormatConfig.from_dict({"format": "xml"})
    with pytest.raises(ConfigError, match="truncate"):
        FormatConfig.from_dict({"truncate": "middle"})
    with pytest.raises(ConfigError, match="column_prefixes has 2 entries"):
        FormatConfig.from_dict({"column_prefixes": ["a", "b"]})
    with pytest.raises(ConfigError, match="max_tokens"):
        FormatConfig.from_dict({"max_tokens": 0})
    with pytest.raises(ConfigError, match="min_tokens"):
        FormatConfig.from_dict({"max_tokens": 5, "min_tokens": 9})
    with pytest.raises(ConfigError, match="true or false"):
        FormatConfig.from_dict({"prompt_mask": "maybe"})
    with pytest.raises(ConfigError, match="columns\\[0\\]: unknown option 'prefx'"):
        FormatConfig.from_dict({"columns": [{"key": "a", "prefx": "x"}]})
    cfg = FormatConfig.from_dict(
        {
            "format": "prompt_completion",
            "prompt-mask": "false",
            "column_keys": "q, a",
            "column_train": "false,true",
            "system_prompt": "Be kind.\\nAlways.",
            "max_tokens": "2048",
            "add_bos": "auto",
        }
    )
    assert cfg.format == "prompt-completion" and cfg.prompt_mask is False
    assert (
        cfg.column_keys == ("q", "a")
        and cfg.column_train == (False, True)
        and cfg.column_prefixes == ("", "")
    )
    assert cfg.system_prompt == "Be kind.\nAlways." and cfg.max_tokens == 2048 and cfg.add_bos is None
    data = cfg.to_dict()
    json.dumps(data)
    assert FormatConfig.from_dict(data) == cfg
    assert FormatConfig.from_dict({}) == FormatConfig()
    default = FormatConfig()
    assert default.column_prefixes == ("Instruction:\n", "Input:\n", "Output:\n")
    assert default.column_train == (True, False, True) and default.column_separator == "\n\n"


def test_columns_as_comma_separated_string():
    cfg = FormatConfig.from_dict({"columns": "question, answer"})
    assert cfg.column_keys == ("question", "answer") and cfg.column_train == (False, True)
