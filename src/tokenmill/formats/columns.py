"""``columns``: several fields joined with prefixes, suffixes and a separator, each trained or masked.

Missing or empty columns are left out (with their prefix and suffix); the separator and prefixes are never
trained, a column's suffix is trained when its column is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import Layout, record_error


def layout_columns(config: FormatConfig, rec: Mapping[str, Any]) -> Layout:
    lay = Layout()
    first = True
    assert (
        config.column_prefixes is not None
        and config.column_suffixes is not None
        and config.column_train is not None
    )
    for key, prefix, suffix, train in zip(
        config.column_keys, config.column_prefixes, config.column_suffixes, config.column_train, strict=True
    ):
        value = rec.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise record_error(f"must be a string, got {type(value).__name__}", key, "not_string")
        if not first:
            lay.add(config.column_separator, False)
        first = False
        lay.add(prefix, False)
        lay.add(value, train)
        lay.add(suffix, train)
    if first:
        keys = ", ".join(repr(k) for k in config.column_keys)
        raise record_error(f"every column ({keys}) is missing or empty", config.column_keys[0], "empty")
    return lay
