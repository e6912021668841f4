"""``read_records``: one entry point over every format, with the error policy and the retry loop in one place.

Format readers yield bad records as RecordError *values*; this module decides whether one is raised or reported to
``on_error``. Transient I/O errors (a dropped connection, a timeout) re-open the file at the last position the
consumer saw, so nothing is lost or delivered twice.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from ..errors import ConfigError, RecordError, SourceError, StateError
from .cbor import read_cbor
from .delimited import read_csv
from .detect import detect_format, infer_compression
from .jsonl import read_jsonl
from .parquet import read_parquet
from .records import SourceRecord
from .text import read_text_document, read_text_lines

log = logging.getLogger("tokenmill.sources")

TEXT_SPLITS = ("document", "lines")
READ_SIZE = 1 << 20

_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


@lru_cache(maxsize=1)
def transient_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "try again": network and timeout errors of the stdlib, aiohttp and botocore."""
    types: list[type[BaseException]] = [OSError, TimeoutError, ConnectionError, http.client.HTTPException]
    try:
        import aiohttp

        types.append(aiohttp.ClientError)
    except ImportError:
        pass
    try:
        from botocore import exceptions as be

        types += [be.HTTPClientError, be.ConnectionError, be.ReadTimeoutError]
    except ImportError:
        pass
    try:
        from urllib3 import exceptions as ue

        types += [ue.ProtocolError, ue.IncompleteRead, ue.TimeoutError]
    except ImportError:
        pass
    return tuple(types)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised while handling) is a network hiccup worth a retry.

    The chain matters: s3fs, for one, turns a read timeout into an ``IndexError`` inside its own error handler.
    """
    if isinstance(error, _PERMANENT):
        return False
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, transient_errors()) and not isinstance(error, _PERMANENT):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


_IO_LIBRARIES = (
    "fsspec",
    "s3fs",
    "gcsfs",
    "adlfs",
    "huggingface_hub",
    "aiohttp",
    "aiobotocore",
    "botocore",
    "pyarrow",
)


def _raised_by_io_library(error: BaseException) -> bool:
    """Whether ``error`` comes from a filesystem or file-format library (a file problem, not a tokenmill bug).

    Such libraries raise plain ValueErrors for file conditions (fsspec: "the HTTP server doesn't appear to
    support range requests"; pyarrow: ArrowInvalid for a corrupt footer); these become SourceErrors naming the file.
    """
    if type(error).__module__.split(".")[0] in _IO_LIBRARIES:
        return True
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.split(".")[0] in _IO_LIBRARIES


def _reader_for(fmt: str, text_split: str):
    if fmt == "text":
        return read_text_lines if text_split == "lines" else read_text_document
    return {"jsonl": read_jsonl, "parquet": read_parquet, "csv": read_csv, "cbor": read_cbor}[fmt]


def read_records(
    url: str,
    fmt: str | None = None,
    *,
    text_split: str = "document",
    text_key: str = "text",
    storage_options: dict[str, Any] | None = None,
    start: dict[str, Any] | None = None,
    byte_range: tuple[int, int] | None = None,
    row_groups: tuple[int, int] | None = None,
    columns: list[str] | None = None,
    on_error: Callable[[RecordError], None] | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    read_size: int = READ_SIZE,
) -> Iterator[SourceRecord]:
    """The records of one file, streamed, as :class:`SourceRecord` (record, path, line, row, position).

    Args:
        fmt: ``jsonl | parquet | csv | cbor | text`` (or an alias); None detects it from the name.
        text_split: plain text as one record per file (``"document"``) or per line (``"lines"``).
        text_key: the key plain text is stored under.
        start: a ``position`` from an earlier record (or RecordError): continue right after it.
        byte_range: ``(a, b)``: only the lines whose first byte lies in ``[a, b)`` (uncompressed JSON lines and
            text lines). Ranges that tile a file read each line exactly once.
        row_groups: ``(g0, g1)``: only Parquet row groups ``g0 <= g < g1``.
        columns: Parquet columns to read (None: all).
        on_error: called with each bad record's RecordError, and reading goes on; None raises it. Either way the
            error has ``.position``, so ``read_records(url, start=error.position)`` goes on after it.
        retries: re-opens after consecutive transient I/O failures without progress, before giving up with
            ``SourceError(reason="unreadable")``; the wait doubles from ``backoff`` seconds each time.
        read_size: bytes read per call from the file (line-oriented formats).

    Raises:
        RecordError: a bad record, when ``on_error`` is None.
        SourceError: the file is missing, unreadable, corrupt, or stayed unreachable after ``retries``.
        ConfigError: options that do not fit the format.
    """
    fmt = detect_format(url, fmt)
    if text_split not in TEXT_SPLITS:
        raise ConfigError(f"text_split must be one of {TEXT_SPLITS}, got {text_split!r}")
    line_oriented = fmt == "jsonl" or (fmt == "text" and text_split == "lines")
    if byte_range is not None:
        if not line_oriented:
            raise ConfigError(
                f"{url}: byte ranges split only JSON lines and text read by lines, not {fmt}"
                + (" documents" if fmt == "text" else "")
            )
        if infer_compression(url) is not None:
            raise ConfigError(f"{url}: a compressed file cannot be split into byte ranges; read it whole")
        a, b = byte_range
        if not (0 <= a <= b):
            raise ConfigError(f"{url}: invalid byte range {byte_range}")
        byte_range = (int(a), int(b))
    if row_groups is not None and fmt != "parquet":
        raise ConfigError(f"{url}: row_groups applies to Parquet files only, not {fmt}")
    if start is not None and not isinstance(start, dict):
        raise StateError(f"{url}: a resume position must be a dict, got {type(start).__name__}")
    if retries < 0 or backoff < 0:
        raise ConfigError("retries and backoff must be >= 0")
    options = dict(
        byte_range=byte_range,
        row_groups=row_groups,
        columns=columns,
        storage_options=storage_options,
        text_key=text_key,
        read_size=read_size,
    )
    reader = _reader_for(fmt, text_split)
    return _resilient(url, reader, options, start, on_error, retries, backoff)


def _resilient(
    url: str,
    reader,
    options: dict[str, Any],
    start: dict[str, Any] | None,
    on_error: Callable[[RecordError], None] | None,
    retries: int,
    backoff: float,
) -> Iterator[SourceRecord]:
    position = start
    failures = 0
    while True:
        items = reader(url, start=position, **options)
        try:
            for item in items:
                position = item.position
                failures = 0
                if type(item) is SourceRecord:
                    yield item
                elif on_error is None:
                    raise item
                else:
                    on_error(item)
            return
        except SourceError:
            raise
        except Exception as e:
            if not is_transient(e):
                if isinstance(e, OSError) or _raised_by_io_library(e):
                    raise SourceError(f"cannot read the file: {e}", path=url, reason="unreadable") from e
                raise
            failures += 1
            if failures > retries:
                raise SourceError(
                    f"gave up after {retries} retries: {type(e).__name__}: {e}", path=url, reason="unreadable"
                ) from e
            wait = backoff * 2 ** (failures - 1)
            log.warning(
                "%s: %s: %s; retry %d of %d in %.2f s", url, type(e).__name__, e, failures, retries, wait
            )
            time.sleep(wait)
        finally:
            items.close()  # the file is closed now, also when the consumer stops early
