"""Lance token datasets made outside tokenmill, taken over as a source of token ids (their text is not needed).

Two layouts are recognised:

- **one token per row**, as the Lance tutorials write it ("Creating text dataset for LLM training using Lance":
  a single ``input_ids`` int64 column; the Lance blog names it ``value``). Each document was written as one
  record batch, but Lance keeps no record of where batches began, so **no document boundary survives**: the
  tokens are one stream. They are taken in pieces of ``piece_tokens`` tokens, each piece one cache document,
  in row order; the cache's concatenated token stream is the dataset's, token for token, and the samples a
  loader cuts from it cross the original documents as the tutorial's own training loop does.
- **one document per row**: a list-of-integers column (``input_ids``, as Lance's Rust example and Hugging Face
  tokenized datasets write it); each row is one document, boundaries kept.

Positions are row numbers, so a unit (a row range) resumes exactly. The dataset version is pinned in the plan:
rows appended to the dataset later are not mixed into a build that started earlier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SourceError
from .records import SourceRecord
from .stream import start_field

LAYOUTS = ("token-per-row", "document-per-row")
# column names tried in this order when a dataset has several integer columns
TOKEN_COLUMNS = ("input_ids", "tokens", "token_ids", "ids", "value")
SCAN_ROWS = 1 << 16


@dataclass(frozen=True)
class TokenDataset:
    """What was found at a Lance dataset's URL: the column holding token ids, its layout, its size."""

    uri: str
    column: str
    layout: str
    rows: int
    version: int
    dtype: str

    def assumption(self, piece_tokens: int) -> str:
        """One paragraph saying what was assumed about document boundaries (printed by ``prepare``)."""
        if self.layout == "document-per-row":
            return (
                f"{self.uri}: a Lance token dataset, one document per row (column {self.column!r}, "
                f"list of {self.dtype}, {self.rows} documents, version {self.version}): each row is kept as "
                "one document, with no BOS/EOS added"
            )
        return (
            f"{self.uri}: a Lance token dataset, one token per row as the Lance tutorial writes it (column "
            f"{self.column!r}, {self.dtype}, {self.rows} tokens, version {self.version}). It stores no document "
            f"boundaries, so its tokens are taken as one stream, in row order, cut into documents of "
            f"{piece_tokens} tokens, with no BOS/EOS added; samples cross the original documents, as in the "
            "tutorial's training loop"
        )


def _lance():
    import lance

    return lance


def looks_like_lance(uri: str) -> bool:
    """Whether ``uri`` names a Lance dataset folder (cheap: a name ending in ``.lance`` or a ``_versions`` folder)."""
    if uri.rstrip("/").endswith(".lance"):
        return True
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    return "://" not in local and os.path.isdir(os.path.join(local, "_versions"))


def _integer(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t)


def _list_of_integers(t) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and _integer(
        t.value_type
    )


def open_token_dataset(
    uri: str, storage_options: dict[str, str] | None = None, column: str | None = None
) -> TokenDataset:
    """Open ``uri`` as a Lance token dataset and say which column and layout hold the tokens.

    Raises:
        SourceError: not a Lance dataset, or no column of integers (or lists of integers) to take tokens from.
    """
    lance = _lance()
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    if "://" not in local and not os.path.isdir(os.path.join(local, "_versions")):
        raise SourceError("no Lance dataset here (no folder, or no _versions/ in it)", path=uri)
    try:
        ds = lance.dataset(uri, storage_options=storage_options)
    except (OSError, ValueError) as e:
        detail = str(e).split(", /")[0]  # Lance appends the Rust source locations
        raise SourceError(f"cannot open this Lance dataset: {detail}", path=uri) from None
    schema = ds.schema
    candidates = [f for f in schema if _integer(f.type) or _list_of_integers(f.type)]
    if column is not None:
        chosen = [f for f in candidates if f.name == column]
        if not chosen:
            raise SourceError(
                f"no column {column!r} of token ids (integers or lists of integers); the dataset has "
                f"{', '.join(f'{f.name}: {f.type}' for f in schema)}",
                path=uri,
            )
        field = chosen[0]
    else:
        if not candidates:
            raise SourceError(
                "a Lance dataset without a column of token ids (integers, or lists of integers); it has "
                f"{', '.join(f'{f.name}: {f.type}' for f in schema)}. A text dataset is read through its "
                "files instead; see docs/migrate/lance.md",
                path=uri,
            )
        by_name = {f.name: f for f in candidates}
        named = [by_name[n] for n in TOKEN_COLUMNS if n in by_name]
        if named:
            field = named[0]
        elif len(candidates) == 1:
            field = candidates[0]
        else:
            raise SourceError(
                f"several integer columns ({', '.join(f.name for f in candidates)}): say which holds the token "
                "ids with the format option tokens_key",
                path=uri,
            )
    layout = "token-per-row" if _integer(field.type) else "document-per-row"
    dtype = str(field.type if layout == "token-per-row" else field.type.value_type)
    return TokenDataset(uri, field.name, layout, ds.count_rows(), int(ds.version), dtype)


def plan_row_ranges(
    dataset: TokenDataset, target_bytes: int, piece_tokens: int, storage_options: dict[str, str] | None = None
) -> list[tuple[int, int, int]]:
    """Row ranges ``(start, stop, nbytes)`` of about ``target_bytes`` of token ids each, deterministic.

    For one token per row, range lengths are multiples of ``piece_tokens`` so the pieces (cache documents) are
    the same however the dataset is cut into units.
    """
    n = dataset.rows
    if n == 0:
        return []
    if dataset.layout == "token-per-row":
        itemsize = np.dtype(dataset.dtype).itemsize if dataset.dtype in np.sctypeDict else 8
        per_unit = max(piece_tokens, target_bytes // itemsize // piece_tokens * piece_tokens)
        return [
            (a, min(a + per_unit, n), (min(a + per_unit, n) - a) * itemsize) for a in range(0, n, per_unit)
        ]
    # one document per row: the average row length from the first rows sets the rows per unit
    lance = _lance()
    ds = lance.dataset(dataset.uri, version=dataset.version, storage_options=storage_options)
    first = ds.scanner(columns=[dataset.column], limit=min(n, 1024)).to_table().column(dataset.column)
    lengths = first.combine_chunks().value_lengths().to_numpy(zero_copy_only=False)
    avg_bytes = max(1.0, float(np.mean(lengths)) * 8 if len(lengths) else 8.0)
    per_unit = max(1, int(target_bytes // avg_bytes))
    return [
        (a, min(a + per_unit, n), int((min(a + per_unit, n) - a) * avg_bytes)) for a in range(0, n, per_unit)
    ]


def read_token_rows(
    uri: str,
    *,
    column: str,
    layout: str,
    version: int,
    rows: tuple[int, int],
    piece_tokens: int,
    start: dict[str, Any] | None = None,
    storage_options: dict[str, str] | None = None,
) -> Iterator[SourceRecord]:
    """The records ``{column: token ids}`` of rows ``[rows[0], rows[1])``; position ``{"row": next row}``.

    One token per row gives pieces of ``piece_tokens`` tokens (the last one shorter); one document per row gives
    a record per row. ``row`` of a record is its first row in the dataset.
    """
    if layout not in LAYOUTS:
        raise SourceError(f"unknown Lance token layout {layout!r}", path=uri)
    a, b = rows
    row = a if start is None else start_field(start, "row", uri, "Lance token dataset")
    if not a <= row <= b:
        raise SourceError(f"resume row {row} lies outside this unit's rows [{a}, {b})", path=uri)
    if row == b:
        return
    ds = _lance().dataset(uri, version=version, storage_options=storage_options)
    if layout == "token-per-row":
        yield from _pieces(ds, uri, column, row, b, piece_tokens)
    else:
        yield from _documents(ds, uri, column, row, b)


def _scan(ds, column: str, row: int, stop: int):
    return ds.scanner(columns=[column], offset=row, limit=stop - row, batch_size=SCAN_ROWS).to_batches()


def _pieces(ds, uri: str, column: str, row: int, stop: int, piece: int) -> Iterator[SourceRecord]:
    pending: list[np.ndarray] = []
    have = 0
    first = batch_row = row
    for batch in _scan(ds, column, row, stop):
        arr = batch.column(0)
        if arr.null_count:
            bad = batch_row + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise SourceError("a null token id", path=uri, row=bad, field=column, reason="bad_tokens")
        batch_row += len(arr)
        values = arr.to_numpy(zero_copy_only=False)
        while len(values):
            take = min(piece - have, len(values))
            pending.append(values[:take])
            have += take
            values = values[take:]
            if have == piece:
                yield SourceRecord({column: np.concatenate(pending)}, uri, None, first, {"row": first + have})
                first, pending, have = first + have, [], 0
    if have:
        yield SourceRecord({column: np.concatenate(pending)}, uri, None, first, {"row": first + have})


def _documents(ds, uri: str, column: str, row: int, stop: int) -> Iterator[SourceRecord]:
    for batch in _scan(ds, column, row, stop):
        arr = batch.column(0)
        if hasattr(arr, "flatten") and not hasattr(arr, "offsets"):  # fixed-size lists
            width = arr.type.list_size
            offsets = np.arange(len(arr) + 1, dtype=np.int64) * width
        else:
            offsets = arr.offsets.to_numpy(zero_copy_only=False) - arr.offsets[0].as_py()
        values = arr.flatten().to_numpy(zero_copy_only=False)
        nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
        for i in range(len(arr)):
            if nulls is not None and nulls[i]:
                raise SourceError(
                    "a null row of token ids", path=uri, row=row, field=column, reason="bad_tokens"
                )
            yield SourceRecord(
                {column: values[offsets[i] : offsets[i + 1]]}, uri, None, row, {"row": row + 1}
            )
            row += 1
