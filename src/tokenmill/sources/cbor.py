"""CBOR sequences (RFC 8742): items written back to back, each a map."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import SourceError
from .records import SourceRecord, record_error
from .stream import open_stream, start_field


def read_cbor(
    url: str,
    *,
    start: dict[str, Any] | None,
    storage_options: dict[str, Any] | None,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    """Items as records; an item that is not a map is a RecordError.

    An item that cannot be decoded is a SourceError that ends the file: CBOR has no record separator, so there
    is no next item to find after garbage.
    """
    import cbor2

    offset, item = 0, 0
    if start is not None:
        offset = start_field(start, "offset", url, "cbor")
        item = start_field(start, "row", url, "cbor")
    with open_stream(url, storage_options, offset, start, buffered=True) as stream:
        f = stream.file
        decoder = cbor2.CBORDecoder(f)
        before = offset
        while True:
            try:
                value = decoder.decode()
            except cbor2.CBORDecodeEOF as e:
                if f.tell() == before:
                    return
                raise SourceError(
                    f"truncated CBOR item {item} (the file ends inside it, at byte {f.tell()})",
                    path=url,
                    row=item,
                    reason="malformed_cbor",
                ) from e
            except cbor2.CBORDecodeError as e:
                raise SourceError(
                    f"undecodable CBOR item {item} starting at byte {before}: {e}; "
                    "the rest of the file cannot be read",
                    path=url,
                    row=item,
                    reason="malformed_cbor",
                ) from e
            before = f.tell()
            pos = stream.position(before, row=item + 1)
            if isinstance(value, dict):
                yield SourceRecord(value, url, None, item, pos)
            else:
                yield record_error(
                    f"expected a CBOR map for each item, got {type(value).__name__}",
                    path=url,
                    reason="not_object",
                    position=pos,
                    row=item,
                )
            item += 1
