"""The record type every reader yields, and the error a bad record becomes."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import RecordError


class SourceRecord(NamedTuple):
    """One record of a source file.

    ``line`` is the 1-based line number (line-oriented formats; None inside a byte range that does not start the
    file, where it is unknown without a scan), ``row`` the 0-based row/item index (Parquet, CSV, CBOR, datasets).
    ``position`` is a small JSON-able dict meaning "right after this record": ``read_records(url,
    start=position)`` goes on with the next record.
    """

    record: dict[str, Any]
    path: str
    line: int | None
    row: int | None
    position: dict[str, Any]


def record_error(
    message: str,
    *,
    path: str,
    reason: str,
    position: dict[str, Any],
    line: int | None = None,
    row: int | None = None,
    field: str | None = None,
) -> RecordError:
    """A RecordError that also carries ``position`` (right after the bad record), so reading can go on there."""
    err = RecordError(message, path=path, line=line, row=row, field=field, reason=reason)
    err.position = position  # type: ignore[attr-defined]
    return err
