"""Line-oriented files (JSON lines, text read line by line, CSV) read in large chunks with exact byte offsets.

Reading 1 MiB at a time and splitting with ``bytes.split`` keeps the per-line cost to a few list operations, and
knowing each line's offset is what makes O(1) resume (seek) and byte-range splitting possible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .records import SourceRecord, record_error
from .stream import open_stream
from .urls import open_raw

BOM = b"\xef\xbb\xbf"


class BadLine(Exception):
    """Raised by a line parser; the reader turns it into a RecordError with the file, line and position."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


def line_batches(
    read: Callable[[int], bytes], offset: int, skip_partial: bool, read_size: int
) -> Iterator[tuple[int, list[bytes], int]]:
    """``(offset of the first line, lines without their b"\\n", separator length of the last line)`` batches.

    The separator length is 1, except for a last line without a trailing newline (0). ``skip_partial`` drops the
    bytes up to and including the first newline: the byte-range rule that a range owns only the lines that
    start inside it.
    """
    pending: list[bytes] = []  # pieces of a line that continues into the next chunk
    pos = offset  # offset of the next byte read() returns
    line_start = offset
    while True:
        data = read(read_size)
        if not data:
            break
        pos += len(data)
        if skip_partial:
            i = data.find(b"\n")
            if i < 0:
                line_start = pos
                continue
            skip_partial = False
            data = data[i + 1 :]
            line_start = pos - len(data)
            if not data:
                continue
        if b"\n" not in data:
            pending.append(data)
            continue
        lines = data.split(b"\n")
        tail = lines.pop()
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending = []
        yield line_start, lines, 1
        line_start = pos - len(tail)
        if tail:
            pending.append(tail)
    if pending:
        yield line_start, [b"".join(pending)], 0


class LineCounter:
    """Absolute line numbers on demand, for errors inside a byte range (counts newlines, only on the error path).

    Counting resumes from the last answer, so many errors in one range cost one pass over the file in total.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url = url
        self.storage_options = storage_options
        self.offset = 0
        self.newlines = 0

    def line_at(self, offset: int) -> int:
        if offset < self.offset:
            self.offset, self.newlines = 0, 0
        f = open_raw(self.url, self.storage_options)
        try:
            f.seek(self.offset)
            remaining = offset - self.offset
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.newlines += chunk.count(b"\n")
                remaining -= len(chunk)
        finally:
            f.close()
        self.offset = offset
        return self.newlines + 1


def read_line_records(
    url: str,
    parse: Callable[[bytes], dict[str, Any]],
    *,
    start: dict[str, Any] | None,
    byte_range: tuple[int, int] | None,
    storage_options: dict[str, Any] | None,
    read_size: int,
    fmt: str,
) -> Iterator[SourceRecord | Exception]:
    """Records (and RecordErrors, yielded as values) of a line-oriented file; blank lines are not records."""
    from .stream import start_field

    begin, end = byte_range if byte_range is not None else (0, None)
    if start is not None:
        offset = start_field(start, "offset", url, fmt)
        line = start_field(start, "line", url, fmt, optional=True)
        skip_partial = False
    else:
        offset = max(begin - 1, 0)
        line = 0 if begin == 0 else None
        skip_partial = begin > 0
    stop = end if end is not None else float("inf")
    counter = LineCounter(url, storage_options) if line is None else None
    with open_stream(url, storage_options, offset, start) as stream:
        has_blocks = stream.block_at is not None
        for off, lines, sep in line_batches(stream.read, offset, skip_partial, read_size):
            for raw in lines:
                if off >= stop:
                    return
                nxt = off + len(raw) + 1
                if line is not None:
                    line += 1
                if not raw or raw.isspace():
                    off = nxt
                    continue
                if off == 0 and raw.startswith(BOM):
                    raw = raw[3:]
                if sep == 0:
                    nxt -= 1
                if has_blocks:
                    pos = stream.position(nxt, line=line)
                else:
                    pos = {"offset": nxt, "line": line}
                try:
                    record = parse(raw)
                except BadLine as e:
                    where = line if line is not None else counter.line_at(off)  # type: ignore[union-attr]
                    yield record_error(
                        e.message, path=url, reason=e.reason, position=pos, line=where, field=e.field
                    )
                    off = nxt
                    continue
                yield SourceRecord(record, url, line, None, pos)
                off = nxt
