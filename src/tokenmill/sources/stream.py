"""Opening a file positioned at an uncompressed byte offset, and positions that point back into it."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import StateError
from .compression import BlockStream
from .detect import infer_compression
from .urls import open_raw


@dataclass
class Stream:
    """The uncompressed bytes of one file from ``offset`` on.

    ``block_at`` is set for compressed files: it maps an uncompressed offset to the member holding it, which a
    position records so that a resume decompresses one member instead of the whole prefix.
    """

    file: Any
    offset: int
    block_at: Callable[[int], tuple[int, int]] | None

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def position(self, offset: int, **fields: Any) -> dict[str, Any]:
        pos: dict[str, Any] = {"offset": offset, **fields}
        if self.block_at is not None:
            pos["block"], pos["block_offset"] = self.block_at(offset)
        return pos


@contextmanager
def open_stream(
    url: str,
    storage_options: dict[str, Any] | None,
    offset: int = 0,
    start: dict[str, Any] | None = None,
    buffered: bool = False,
) -> Iterator[Stream]:
    """The file at ``offset`` (uncompressed bytes); ``start`` may carry the member of a compressed file to begin at.

    ``buffered`` wraps a compressed stream in an ``io.BufferedReader`` for readers that make many small reads
    (CBOR); uncompressed fsspec files buffer on their own.
    """
    codec = infer_compression(url)
    raw = open_raw(url, storage_options)
    try:
        if codec is None:
            if offset:
                raw.seek(offset)
            yield Stream(raw, offset, None)
            return
        block, block_offset = 0, 0
        if start is not None and "block" in start:
            block, block_offset = int(start["block"]), int(start.get("block_offset", 0))
            if block_offset > offset:
                raise StateError(
                    f"{url}: resume position is inconsistent (block_offset {block_offset} > offset {offset})"
                )
        bs = BlockStream(raw, codec, url, block, block_offset)
        bs.skip(offset - block_offset)
        f = io.BufferedReader(bs, buffer_size=1 << 16) if buffered else bs
        yield Stream(f, offset, bs.block_at)
    finally:
        raw.close()


def start_field(start: dict[str, Any], key: str, url: str, fmt: str, optional: bool = False) -> Any:
    """``start[key]`` as an int, or a StateError saying the position does not belong to this kind of file."""
    if not isinstance(start, dict) or (key not in start and not optional):
        raise StateError(
            f"{url}: the resume position {start!r} does not fit a {fmt} file (it has no {key!r}); "
            "was it saved for another file or format?"
        )
    value = start.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StateError(f"{url}: the resume position has an invalid {key!r}: {value!r}")
    return value
