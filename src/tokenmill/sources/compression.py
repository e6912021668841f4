"""Decompression that remembers where each compressed member starts, so a reader can resume near a position.

gzip, bzip2, xz and zstd all allow a file to be a concatenation of independent members (gzip members, bzip2
streams, xz streams, zstd frames). Tools such as ``pigz -i``, ``bgzip``, ``pzstd`` and ``zstd --stream-size``
writers produce many members; ``gzip``/``zstd`` on the command line produce one. This stream decompresses member
by member and records ``(uncompressed offset, compressed offset)`` at each member start. A resume position then
carries the member holding it, and resuming costs decompressing (and discarding) at most one member, not the whole
file. For a single-member file that is the whole prefix, which is the unavoidable cost of resuming such a file.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections import deque
from typing import BinaryIO

from ..errors import SourceError

_INPUT_SIZE = 1 << 18  # compressed bytes fed at a time: bounds the memory one feed can expand to


def _gzip_module():
    """``isal.isal_zlib`` (Intel's ISA-L, same API and output as zlib) where it is installed, else zlib:
    decompressing the benchmark corpus (100 MB of JSON lines in 21 MB of gzip) takes 0.096 CPU-s with it
    against 0.244 with zlib, about 2% of a `tokenmill prepare` with a fast engine."""
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:  # pragma: no cover - isal is a core dependency where it has wheels
        return zlib


def _decompressor(codec: str):
    if codec == "gzip":
        return _gzip_module().decompressobj(16 + zlib.MAX_WBITS)
    if codec == "bz2":
        return bz2.BZ2Decompressor()
    if codec == "xz":
        return lzma.LZMADecompressor()
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(f"unknown codec {codec!r}")


def _codec_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error, _gzip_module().error, lzma.LZMAError, EOFError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a core dependency
        pass
    return tuple(errors)


class BlockStream(io.RawIOBase):
    """A read-only, forward-only view of the uncompressed bytes of ``raw``.

    ``block``/``block_offset`` start decompressing at a member boundary: the compressed offset of a member and
    the uncompressed offset at which that member's output begins (both 0 for the file start).
    """

    def __init__(self, raw: BinaryIO, codec: str, path: str, block: int = 0, block_offset: int = 0) -> None:
        super().__init__()
        self._raw = raw
        self._codec = codec
        self._path = path
        if block:
            raw.seek(block)
        self._cin = block  # compressed offset right after the last byte taken from raw
        self._uout = block_offset  # uncompressed bytes produced so far (absolute)
        self._upos = block_offset  # uncompressed offset of the next byte read() returns
        self._members: deque[tuple[int, int]] = deque([(block_offset, block)])
        self._d = _decompressor(codec)
        self._started = False  # the current member has received input
        self._pending = b""  # compressed bytes after the end of the previous member
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._errors = _codec_errors()

    # -- io.RawIOBase -------------------------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._upos

    def readinto(self, b) -> int:
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def read(self, n: int = -1) -> bytes:
        while self._pos >= len(self._buf):
            if self._eof:
                return b""
            self._fill()
        avail = len(self._buf) - self._pos
        if n < 0 or n >= avail:
            out = self._buf if self._pos == 0 else self._buf[self._pos :]
            self._buf, self._pos = b"", 0
        else:
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
        self._upos += len(out)
        return out

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read():
            parts.append(chunk)
        return b"".join(parts)

    # -- positions ----------------------------------------------------------------------------------------------
    def block_at(self, offset: int) -> tuple[int, int]:
        """``(compressed offset, uncompressed offset)`` of a member start at or before ``offset``.

        ``offset`` must not go backwards between calls: older member starts are forgotten, which keeps memory
        bounded on files with millions of small members.
        """
        members = self._members
        while len(members) > 1 and members[1][0] <= offset:
            members.popleft()
        ustart, cstart = members[0]
        return cstart, ustart

    def skip(self, n: int) -> None:
        """Decompress and discard ``n`` bytes (the cost of resuming inside a member)."""
        while n > 0:
            chunk = self.read(min(n, 1 << 20))
            if not chunk:
                raise SourceError(
                    f"the resume position lies {n} bytes past the end of the decompressed data; "
                    "the file changed since the position was saved",
                    path=self._path,
                    reason="unreadable",
                )
            n -= len(chunk)

    # -- decompression ------------------------------------------------------------------------------------------
    def _fill(self) -> None:
        if self._pending:
            data, self._pending = self._pending, b""
        else:
            data = self._raw.read(_INPUT_SIZE)
            if not data:
                if self._started:
                    raise SourceError(
                        f"truncated {self._codec} data: the file ends inside a compressed member "
                        f"(after {self._uout} uncompressed bytes)",
                        path=self._path,
                        reason="unreadable",
                    )
                self._eof = True
                return
            self._cin += len(data)
        data_start = self._cin - len(data)
        if not self._started:
            if self._codec == "gzip":  # gzip tools may pad with zero bytes between/after members
                stripped = data.lstrip(b"\0")
                data_start += len(data) - len(stripped)
                data = stripped
                if not data:
                    return
            self._started = True
            if self._members[-1] != (self._uout, data_start):
                self._members.append((self._uout, data_start))
        try:
            out = self._d.decompress(data)
        except self._errors as e:
            raise SourceError(
                f"corrupt {self._codec} data after {self._uout} uncompressed bytes: {e}",
                path=self._path,
                reason="unreadable",
            ) from e
        self._uout += len(out)
        self._buf, self._pos = out, 0
        if self._d.eof:
            self._pending = self._d.unused_data
            self._d = _decompressor(self._codec)
            self._started = False

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
