"""Parquet, streamed by row group and record batch; positions are (row group, row within it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import StateError
from .records import SourceRecord
from .stream import start_field
from .urls import open_raw

BATCH_ROWS = 1024  # rows decoded to Python at a time: bounds memory for long documents


def _after(group: int, index: int, group_rows: int, row: int) -> dict[str, int]:
    """The position after row ``index`` of ``group``: normalised to the next group at a group's end."""
    if index + 1 >= group_rows:
        return {"row_group": group + 1, "group_row": 0, "row": row + 1}
    return {"row_group": group, "group_row": index + 1, "row": row + 1}


def read_parquet(
    url: str,
    *,
    start: dict[str, Any] | None,
    storage_options: dict[str, Any] | None,
    row_groups: tuple[int, int] | None,
    columns: list[str] | None,
    **_: Any,
) -> Iterator[SourceRecord | Exception]:
    import pyarrow.parquet as pq

    f = open_raw(url, storage_options)
    try:
        pf = pq.ParquetFile(f)
        md = pf.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        first_row = [0]
        for n in sizes:
            first_row.append(first_row[-1] + n)
        g0, g1 = row_groups if row_groups is not None else (0, len(sizes))
        if not (0 <= g0 <= g1 <= len(sizes)):
            raise StateError(f"{url}: row groups {g0}..{g1} out of range (the file has {len(sizes)})")
        group, skip = g0, 0
        if start is not None:
            group = start_field(start, "row_group", url, "parquet")
            skip = start_field(start, "group_row", url, "parquet")
            if group > len(sizes) or (group < len(sizes) and skip > sizes[group]):
                raise StateError(f"{url}: the resume position {start} lies outside the file; did it change?")
        for g in range(group, g1):
            index = skip if g == group else 0
            n_rows = sizes[g]
            if index >= n_rows:
                continue
            to_skip = index
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g], columns=columns):
                if to_skip:
                    if to_skip >= batch.num_rows:
                        to_skip -= batch.num_rows
                        continue
                    batch = batch.slice(to_skip)
                    to_skip = 0
                for record in batch.to_pylist():
                    row = first_row[g] + index
                    yield SourceRecord(record, url, None, row, _after(g, index, n_rows, row))
                    index += 1
    finally:
        f.close()
