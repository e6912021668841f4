"""CSV and TSV with a header row, read with the ``csv`` module over byte-exact lines.

The ``csv`` module pulls one line at a time from the iterator it is given, and more only inside a quoted field,
so the byte offset after the last line it pulled is exactly the end of the row it returns: the resume position.
A resume reads the header line again (one line, O(1)) and seeks.

Parsing is strict: a quote that is never closed, or closed in the middle of a field, is an error, never rows
merged into one document. A bad row that pulled several lines (an unterminated quote swallows the lines after
it) counts as its first line only: reading starts again on the next line, so ``--on-error skip`` skips one row,
not every row up to the next quote.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from typing import Any

from .detect import csv_delimiter
from .lines import BOM, line_batches
from .records import SourceRecord, record_error
from .stream import Stream, open_stream, start_field


class _Lines:
    """Decoded lines for ``csv.reader``, remembering the offset and line number after the last one handed out.

    Invalid UTF-8 is replaced (so the csv reader keeps its framing) and flagged; the row it lands in becomes a
    RecordError.
    """

    def __init__(self, stream: Stream, offset: int, line: int, read_size: int) -> None:
        self.offset = offset
        self.line = line
        self.bad_utf8: str | None = None
        self.ends: list[int] = []  # offsets after each line pulled for the current row
        self._batches = line_batches(stream.read, offset, False, read_size)

    def __iter__(self):
        for off, lines, sep in self._batches:
            for raw in lines:
                self.offset = off + len(raw) + sep
                self.ends.append(self.offset)
                self.line += 1
                if off == 0 and raw.startswith(BOM):
                    raw = raw[3:]
                off = self.offset
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if self.bad_utf8 is None:
                        self.bad_utf8 = f"invalid UTF-8 at byte {e.start} of line {self.line} ({e.reason})"
                    text = raw.decode("utf-8", errors="replace")
                yield text + "\n"


def _allow_long_fields() -> None:
    # the csv module refuses fields over 128 KiB by default; documents are often longer
    limit = sys.maxsize
    while True:
        try:
            if csv.field_size_limit() < limit:
                csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _read_header(url: str, storage_options, delimiter: str, read_size: int) -> tuple[list[str], int, int]:
    with open_stream(url, storage_options) as stream:
        lines = _Lines(stream, 0, 0, read_size)
        reader = csv.reader(lines, delimiter=delimiter)
        for header in reader:
            if header:
                if lines.bad_utf8:
                    raise record_error(
                        lines.bad_utf8, path=url, reason="invalid_utf8", position={}, line=lines.line
                    )
                return header, lines.offset, lines.line
    return [], 0, 0


def read_csv(
    url: str,
    *,
    start: dict[str, Any] | None,
    storage_options: dict[str, Any] | None,
    read_size: int,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    _allow_long_fields()
    delimiter = csv_delimiter(url)
    header, offset, line = _read_header(url, storage_options, delimiter, read_size)
    if not header:
        return
    row = 0
    if start is not None:
        offset = start_field(start, "offset", url, "csv")
        line = start_field(start, "line", url, "csv")
        row = start_field(start, "row", url, "csv")
    at: tuple[int, int, int, dict[str, Any] | None] | None = (offset, line, row, start)
    while at is not None:
        at = yield from _rows(url, header, delimiter, storage_options, read_size, *at)


def _rows(
    url: str,
    header: list[str],
    delimiter: str,
    storage_options: dict[str, Any] | None,
    read_size: int,
    offset: int,
    line: int,
    row: int,
    start: dict[str, Any] | None,
) -> Iterator[SourceRecord | Exception]:
    """Rows from ``offset`` on; after a bad row that pulled several lines, returns where to read again."""
    with open_stream(url, storage_options, offset, start) as stream:
        lines = _Lines(stream, offset, line, read_size)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        while True:
            first_line = lines.line + 1
            lines.ends = []
            try:
                values = next(reader)
                problem = None
            except StopIteration:
                return None
            except csv.Error as e:
                values, problem = [], f"malformed CSV: {e} (an unterminated or stray quote?)"
            if problem is None and not values:  # an empty line is not a row
                continue
            if problem is None and lines.bad_utf8 is None and len(values) != len(header):
                problem = f"the row has {len(values)} fields, the header has {len(header)}"
            if problem is not None and len(lines.ends) > 1:  # read again from the row's second line
                again = stream.position(lines.ends[0], line=first_line, row=row + 1)
                yield record_error(
                    problem, path=url, reason="malformed_csv", position=again, line=first_line, row=row
                )
                return lines.ends[0], first_line, row + 1, again
            pos = stream.position(lines.offset, line=lines.line, row=row + 1)
            if problem is not None:
                yield record_error(
                    problem, path=url, reason="malformed_csv", position=pos, line=first_line, row=row
                )
            elif lines.bad_utf8 is not None:
                yield record_error(
                    lines.bad_utf8, path=url, reason="invalid_utf8", position=pos, line=first_line, row=row
                )
            else:
                yield SourceRecord(dict(zip(header, values)), url, first_line, row, pos)
            lines.bad_utf8 = None
            row += 1
