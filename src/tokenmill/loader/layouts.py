"""Sample layouts: how token runs of a split become rows of ``seq_len`` (windows, packed, padded).

A layout knows how many samples a split makes and reads a batch of them, by sample index in cache order, from a
token stream (:mod:`tokenmill.loader.streams`). The index math that decides the runs lives in
:mod:`tokenmill.sampling` (windows, packing plans); here it meets the tokens.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tokenmill.labels import IGNORE_INDEX
from tokenmill.sampling.packing import split_documents
from tokenmill.sampling.ragged import ragged_arange
from tokenmill.sampling.windows import num_windows, window_starts

MODES = ("windows", "packed", "padded")
Mode = Literal["windows", "packed", "padded"]
# padded mode: a document longer than seq_len is cut into pieces, or cut off after the first
LONG_DOCUMENTS = ("split", "truncate")
# padded mode: pad every batch to seq_len, or to its longest sample
PAD_TO = ("seq_len", "longest")


def cu_seqlens_from_position_ids(position_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Cumulative sequence boundaries over the flattened batch (int32) and the longest sequence.

    Every place where ``position_ids`` restarts at 0 begins a sequence; padding at the end of a packed sample is
    one more sequence of its own (its labels are -100), so ``cu_seqlens[-1]`` is the number of tokens in the batch.
    """
    flat = np.asarray(position_ids).reshape(-1)
    starts = np.flatnonzero(flat == 0)
    cu = np.append(starts, flat.size).astype(np.int32)
    return cu, int(np.diff(cu).max()) if cu.size > 1 else 0


def assemble(
    n: int,
    seq_len: int,
    seg_sample: np.ndarray,
    seg_offset: np.ndarray,
    seg_len: np.ndarray,
    tokens: np.ndarray,
    mask: np.ndarray | None,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Lay segments (token runs that are documents or document pieces) into ``n`` rows of ``seq_len``.

    Segments fill each row from column 0 without gaps, in order (``seg_offset`` is where each starts in its row),
    so ``tokens``, the segments' tokens one after the other, are exactly the row-major order of the cells
    ``column < fill[row]``: one boolean scatter places them all. Everything else is whole-grid arithmetic plus
    scatters over segments, never over tokens. Labels are aligned with the inputs (:mod:`tokenmill.labels`): a
    token is its own label, except the first token of every segment (so no document is trained to predict the
    next one), loss-masked tokens and padding, which get -100; positions restart at 0 per segment and for the
    padding.
    """
    fill = np.zeros(n, dtype=np.int64)
    np.add.at(fill, seg_sample, seg_len)
    column = np.arange(seq_len, dtype=np.int64)
    real = column[None, :] < fill[:, None]
    # one allocation for the four outputs: fresh large arrays per batch make glibc hand memory back and forth
    # to the kernel (hundreds of page faults per batch, more time than the arithmetic)
    block = np.empty((4, n, seq_len), dtype=np.int64)
    input_ids, labels, position_ids, attention_mask = block
    input_ids.fill(pad_id)
    input_ids[real] = tokens
    np.copyto(labels, input_ids)
    labels[~real] = IGNORE_INDEX
    if mask is not None:
        trained = np.ones((n, seq_len), dtype=bool)
        trained[real] = mask
        labels[~trained] = IGNORE_INDEX
    labels[seg_sample, seg_offset] = IGNORE_INDEX
    position_ids[...] = fill[:, None]
    position_ids[real] = np.repeat(seg_offset, seg_len)
    np.subtract(column[None, :], position_ids, out=position_ids)
    np.copyto(attention_mask, real)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": attention_mask,
    }


class WindowsLayout:
    """The split's stream cut into windows of ``seq_len`` inputs plus the one token the last input predicts.

    ``labels`` are aligned with the inputs, so they cannot hold that extra target; ``shift_labels`` (the target of
    every input, -100 where loss-masked) carries it, and Hugging Face causal LMs use it when given, so
    ``model(**batch)`` trains every token of the stream exactly once. ``labels[:, 0]`` is -100: the first input's
    token is the previous window's last target.
    """

    def __init__(self, index, seq_len: int) -> None:
        self.seq_len = seq_len
        self.num_samples = num_windows(index.num_tokens, seq_len)

    def fetch(self, stream, samples: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        w, m = stream.windows(window_starts(samples, self.seq_len), self.seq_len + 1)
        # labels and shift_labels are two read-only views of one [n, seq_len + 1] array ([-100, targets]): two
        # allocations per batch as before the labels had two names. A third fresh array (or one [3, n, seq_len]
        # block) made glibc map and page-fault new memory on every batch: 3-10x slower for batches of 64 x 1024
        input_ids = w[:, :-1].astype(np.int64)
        targets = np.empty((w.shape[0], self.seq_len + 1), dtype=np.int64)
        targets[:, 0] = IGNORE_INDEX
        targets[:, 1:] = w[:, 1:]
        if m is not None:
            targets[:, 1:][~m[:, 1:]] = IGNORE_INDEX
        targets.flags.writeable = False
        labels, shift_labels = targets[:, :-1], targets[:, 1:]
        return {"input_ids": input_ids, "labels": labels, "shift_labels": shift_labels}


class SegmentsLayout:
    """Samples made of (document, start, length) segments in CSR form: packed bins or padded pieces."""

    keys: tuple[str, ...] = ("input_ids", "labels", "position_ids", "attention_mask")

    def __init__(self, index, seq_len: int, offsets, seg_doc, seg_start, seg_length) -> None:
        self.seq_len = seq_len
        self.doc_starts, _ = index.document_bounds()
        self.offsets, self.seg_doc, self.seg_start, self.seg_length = offsets, seg_doc, seg_start, seg_length
        self.num_samples = int(offsets.size - 1)

    def lengths(self, samples: np.ndarray) -> np.ndarray:
        """Tokens in each sample (used for length grouping)."""
        lo, hi = self.offsets[samples], self.offsets[samples + 1]
        seg = ragged_arange(lo, hi - lo)
        owner = np.repeat(np.arange(samples.size), hi - lo)
        return np.bincount(owner, weights=self.seg_length[seg], minlength=samples.size).astype(np.int64)

    def fetch(self, stream, samples: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
        samples = np.asarray(samples, dtype=np.int64)
        n = samples.size
        lo, hi = self.offsets[samples], self.offsets[samples + 1]
        count = hi - lo
        seg = ragged_arange(lo, count)
        seg_sample = np.repeat(np.arange(n, dtype=np.int64), count)
        seg_len = self.seg_length[seg]
        cum = np.cumsum(seg_len) - seg_len
        first = np.cumsum(count) - count
        seg_offset = cum - np.repeat(cum[np.minimum(first, max(0, seg.size - 1))], count)
        tokens, mask = stream.ranges(self.doc_starts[self.seg_doc[seg]] + self.seg_start[seg], seg_len)
        batch = assemble(n, self.seq_len, seg_sample, seg_offset, seg_len, tokens, mask, pad_id)
        return {k: batch[k] for k in self.keys}


class PaddedLayout(SegmentsLayout):
    keys = ("input_ids", "labels", "attention_mask")

    def __init__(self, index, seq_len: int, long_documents: str) -> None:
        starts, ends = index.document_bounds()
        doc, start, length = split_documents(ends - starts, seq_len)
        if long_documents == "truncate":
            keep = start == 0
            doc, start, length = doc[keep], start[keep], length[keep]
        offsets = np.arange(doc.size + 1, dtype=np.int64)
        super().__init__(index, seq_len, offsets, doc, start, length)
