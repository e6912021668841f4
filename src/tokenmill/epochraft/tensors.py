"""Token arrays as epochraft hands them out: 1-D ``torch.long`` tensors.

epochraft accepts a token column as a list, a numpy integer array or a tensor, also the ``(1, n)`` shape that
``tokenizer(text, return_tensors="pt")`` returns, and refuses floats and other shapes. The pipeline's token
stages work on numpy arrays; these two picklable converters sit before and after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tokenmill.epochraft.errors import EpochraftValueError


def token_tensor(data: Any) -> torch.Tensor:
    """A 1-D ``torch.long`` tensor from a token array (None or an int count as a list of 0 or 1 tokens)."""
    if data is None:
        data = []
    if isinstance(data, int):
        data = [data]
    if isinstance(data, torch.Tensor):
        tensor = data
    elif isinstance(data, np.ndarray):
        if not np.issubdtype(data.dtype, np.integer):
            raise EpochraftValueError(f"token arrays must hold integers, got a numpy array of {data.dtype}")
        tensor = torch.from_numpy(data if data.flags.c_contiguous else data.copy()).long()
    else:
        tensor = torch.tensor(data, dtype=torch.long)
    if tensor.dtype != torch.long:
        raise EpochraftValueError(f"token tensors must be torch.long, got {tensor.dtype}")
    if tensor.dim() == 2:
        if tensor.shape[0] != 1:
            raise EpochraftValueError(
                f"a 2-D token array must have one row (batch size 1), got shape {tuple(tensor.shape)}"
            )
        tensor = tensor[0]
    elif tensor.dim() != 1:
        raise EpochraftValueError(f"token arrays must be 1-D, got shape {tuple(tensor.shape)}")
    return tensor


def token_array(data: Any) -> np.ndarray:
    """The same checks as :func:`token_tensor`, as an int64 numpy array (what the pipeline's stages cut)."""
    return token_tensor(data).numpy()


class ToArrays:
    """``sample -> sample`` with ``columns`` as 1-D int64 numpy arrays (checked as epochraft checks them)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for c in self.columns:
            if c not in sample:
                raise EpochraftValueError(f"column {c!r} not found in sample (columns: {sorted(sample)})")
            out[c] = token_array(sample[c])
        return out


class ToTensors:
    """``sample -> sample`` with ``columns`` as 1-D ``torch.long`` tensors."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for c in self.columns:
            if c in out:
                out[c] = token_tensor(out[c])
        return out


class AddBosEos:
    """epochraft's ``add_bos_eos``: the given ids before and after ``column``, always, as a long tensor."""

    def __init__(self, bos: int | None, eos: int | None, column: str) -> None:
        self.bos = token_tensor([] if bos is None else [bos])
        self.eos = token_tensor([] if eos is None else [eos])
        self.column = column

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        out[self.column] = torch.cat((self.bos, token_tensor(sample[self.column]), self.eos))
        return out


class Pad:
    """epochraft's ``pad``: each column in ``values`` padded to ``length`` with its value (too long: an error)."""

    def __init__(self, values: dict[str, int], length: int) -> None:
        self.values = dict(values)
        self.length = int(length)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        for column, value in self.values.items():
            if column not in sample:
                raise EpochraftValueError(
                    f"pad: column {column!r} not found in sample (columns: {sorted(sample)})"
                )
            tokens = token_tensor(sample[column])
            if len(tokens) > self.length:
                raise EpochraftValueError(
                    f"pad: column {column!r} has {len(tokens)} tokens, more than chunk_length={self.length}; "
                    "cut it first with chunk, concat_chunk or pack_chunk"
                )
            fill = torch.full((self.length - len(tokens),), int(value), dtype=torch.long)
            out[column] = torch.cat((tokens, fill))
        return out
