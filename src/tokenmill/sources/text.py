"""Plain text: one document per file (code, books), or one document per line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .lines import BOM, BadLine, read_line_records
from .records import SourceRecord, record_error
from .stream import open_stream


def read_text_lines(
    url: str,
    *,
    start: dict[str, Any] | None,
    byte_range: tuple[int, int] | None,
    storage_options: dict[str, Any] | None,
    read_size: int,
    text_key: str,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    def parse(raw: bytes) -> dict[str, Any]:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            return {text_key: raw.decode("utf-8")}
        except UnicodeDecodeError as e:
            raise BadLine(
                "invalid_utf8", f"invalid UTF-8 at byte {e.start} of the line ({e.reason})"
            ) from None

    return read_line_records(
        url,
        parse,
        start=start,
        byte_range=byte_range,
        storage_options=storage_options,
        read_size=read_size,
        fmt="text",
    )


def read_text_document(
    url: str,
    *,
    start: dict[str, Any] | None,
    storage_options: dict[str, Any] | None,
    text_key: str,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    """The whole file as one record: the one reader that holds a file in memory, because the file is the record."""
    if start is not None:  # the only position this reader hands out is "after the document"
        return
    with open_stream(url, storage_options) as stream:
        chunks = []
        while chunk := stream.read(1 << 20):
            chunks.append(chunk)
    data = b"".join(chunks)
    pos = {"offset": len(data), "line": None}
    if data.startswith(BOM):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        yield record_error(
            f"invalid UTF-8 ({e.reason}) at byte {e.start} of the file",
            path=url,
            reason="invalid_utf8",
            position=pos,
            line=line,
        )
        return
    yield SourceRecord({text_key: text}, url, None, None, pos)
