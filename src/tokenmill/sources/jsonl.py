"""JSON lines: one JSON object per line, decoded as strict UTF-8."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .lines import BadLine, read_line_records
from .records import SourceRecord

_loads = json.loads  # stdlib: orjson is not a dependency, and the C decoder parses > 250 MB/s here


def parse_json_line(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line ({e.reason})") from None
    try:
        value = _loads(text)
    except ValueError as e:
        msg = getattr(e, "msg", str(e))
        col = getattr(e, "colno", None)
        hint = ""
        if text.lstrip().startswith("["):
            hint = "; a JSON array spread over lines is not JSON lines: write one object per line"
        where = f": column {col}" if col is not None else ""
        raise BadLine("malformed_json", f"malformed JSON: {msg}{where}{hint}") from None
    if type(value) is not dict:
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        got = "null" if value is None else kind.get(type(value), type(value).__name__)
        raise BadLine("not_object", f"expected a JSON object on each line, got {got}")
    return value


def read_jsonl(
    url: str,
    *,
    start: dict[str, Any] | None,
    byte_range: tuple[int, int] | None,
    storage_options: dict[str, Any] | None,
    read_size: int,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    return read_line_records(
        url,
        parse_json_line,
        start=start,
        byte_range=byte_range,
        storage_options=storage_options,
        read_size=read_size,
        fmt="jsonl",
    )
