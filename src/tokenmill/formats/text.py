"""``text``: one field of the record, every token trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import Layout, string_field


def layout_text(config: FormatConfig, rec: Mapping[str, Any]) -> Layout:
    lay = Layout()
    lay.add(string_field(rec, config.text_key, allow_empty=False), True)
    return lay
