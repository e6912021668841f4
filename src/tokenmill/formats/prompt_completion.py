"""``prompt-completion``: a prompt (masked unless ``prompt_mask: false``) followed by a trained completion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import Layout, string_field


def layout_prompt_completion(config: FormatConfig, rec: Mapping[str, Any]) -> Layout:
    prompt = string_field(rec, config.prompt_key, allow_empty=True)
    completion = string_field(rec, config.completion_key, allow_empty=False)
    lay = Layout()
    lay.add(prompt, not config.prompt_mask)
    lay.add(completion, True)
    return lay
