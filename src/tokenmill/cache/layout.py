"""The Lance schema of a token cache and the vectorised step that turns tokenized documents into rows.

Rows are *pieces* of documents, at most ``row_tokens`` long: a random window then reads at most a couple of
rows (whole-document rows would make a window inside a 200k-token document read the whole document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

DEFAULT_ROW_TOKENS = 4096
TOKENS_DATASET = "tokens.lance"


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id of the vocabulary."""
    if vocab_size <= 2**8:
        return np.dtype(np.uint8)
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def cache_schema(dtype: np.dtype) -> pa.Schema:
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.from_numpy_dtype(dtype)), nullable=False),
            pa.field("loss_mask", pa.list_(pa.bool_()), nullable=True),
            pa.field("piece", pa.uint32(), nullable=False),
            pa.field("num_tokens", pa.uint32(), nullable=False),
            pa.field("num_trained", pa.uint32(), nullable=False),
            pa.field("split_hash", pa.uint64(), nullable=False),
        ]
    )


def split_hash(ids: np.ndarray, seed: int) -> int:
    """A 64-bit hash of a document's tokens and the seed: decides its split the same way on every worker."""
    data = np.ascontiguousarray(ids, dtype=np.uint32)  # hashed through the buffer protocol: no copy
    key = int(seed).to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")


def documents_to_batch(
    ids: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    hashes: Sequence[int],
    dtype: np.dtype,
    row_tokens: int,
) -> pa.RecordBatch:
    """Build one record batch from tokenized documents, cutting each into pieces of at most ``row_tokens``."""
    schema = cache_schema(dtype)
    n_docs = len(ids)
    if n_docs == 0:
        return pa.RecordBatch.from_pylist([], schema=schema)
    doc_len = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n_docs)
    flat = np.concatenate(ids).astype(dtype, copy=False) if n_docs else np.zeros(0, dtype)
    pieces_per_doc = np.maximum(1, -(-doc_len // row_tokens))
    n_rows = int(pieces_per_doc.sum())
    doc_of_row = np.repeat(np.arange(n_docs), pieces_per_doc)
    first_row_of_doc = np.cumsum(pieces_per_doc) - pieces_per_doc
    piece = np.arange(n_rows) - first_row_of_doc[doc_of_row]
    doc_start = np.cumsum(doc_len) - doc_len
    row_start = doc_start[doc_of_row] + piece * row_tokens
    row_len = np.minimum(row_tokens, doc_len[doc_of_row] - piece * row_tokens)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    # rows are contiguous in `flat` (pieces follow each other), so `offsets` index it directly
    input_ids = pa.LargeListArray.from_arrays(offsets, pa.array(flat)).cast(
        pa.list_(pa.from_numpy_dtype(dtype))
    )

    # plain text, every token trained: no mask to build and scan (per 38.7M tokens in batches of 0.5M,
    # documents_to_batch takes 0.03 s instead of 0.48 s)
    if all(m is None for m in masks):
        num_trained = row_len.astype(np.uint32)
        loss_mask = pa.nulls(n_rows, type=pa.list_(pa.bool_()))
    else:
        num_trained, loss_mask = _row_masks(masks, doc_len, row_start, row_len)
    hashes_arr = np.asarray(hashes, dtype=np.uint64)[doc_of_row]
    return pa.RecordBatch.from_arrays(
        [
            input_ids,
            loss_mask,
            pa.array(piece.astype(np.uint32)),
            pa.array(row_len.astype(np.uint32)),
            pa.array(num_trained),
            pa.array(hashes_arr),
        ],
        schema=schema,
    )


def _row_masks(
    masks: Sequence[np.ndarray | None], doc_len: np.ndarray, row_start: np.ndarray, row_len: np.ndarray
) -> tuple[np.ndarray, pa.Array]:
    """Trained tokens per row and the rows' loss masks (null for a row whose tokens are all trained)."""
    n_rows = len(row_len)
    flat_mask = np.concatenate(
        [
            m.astype(bool, copy=False) if m is not None else np.ones(n, dtype=bool)
            for m, n in zip(masks, doc_len)
        ]
    )
    masked_prefix = np.zeros(len(flat_mask) + 1, dtype=np.int64)
    np.cumsum(~flat_mask, out=masked_prefix[1:])
    masked_per_row = masked_prefix[row_start + row_len] - masked_prefix[row_start]
    num_trained = (row_len - masked_per_row).astype(np.uint32)
    has_mask = masked_per_row > 0
    if has_mask.any():
        m_len = np.where(has_mask, row_len, 0)
        m_off = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(m_len, out=m_off[1:])
        keep = np.repeat(has_mask, row_len)
        loss_mask = pa.LargeListArray.from_arrays(m_off, pa.array(flat_mask[keep]), mask=pa.array(~has_mask))
        loss_mask = loss_mask.cast(pa.list_(pa.bool_()))
    else:
        loss_mask = pa.nulls(n_rows, type=pa.list_(pa.bool_()))
    return num_trained, loss_mask
