"""``tokens``: a record that is already token ids (and optionally a 0/1 loss mask), checked against the
tokenizer's vocabulary so a cache never holds an id the model cannot embed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import Layout, record_error


def layout_tokens(config: FormatConfig, rec: Mapping[str, Any], vocab_size: int) -> Layout:
    cfg = config
    key = cfg.tokens_key
    if key not in rec:
        raise record_error(f"field {key!r} is missing", key, "missing_field")
    value = rec[key]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise record_error(f"field {key!r} must be a list of token ids", key, "bad_tokens")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise record_error(f"field {key!r} must be a flat list of token ids", key, "bad_tokens") from None
    if arr.size == 0:
        raise record_error(f"field {key!r} is empty", key, "empty")
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise record_error(f"field {key!r} must be a flat list of integer token ids", key, "bad_tokens")
    vocab = vocab_size
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        raise record_error(
            f"field {key!r} holds token id {bad}, outside the tokenizer's vocabulary (0..{vocab - 1})",
            key,
            "bad_tokens",
        )
    trained: bool | np.ndarray = True
    if cfg.tokens_mask_key is not None:
        mkey = cfg.tokens_mask_key
        if mkey not in rec:
            raise record_error(f"field {mkey!r} is missing", mkey, "missing_field")
        try:
            m = np.asarray(rec[mkey])
        except (ValueError, TypeError):
            m = np.asarray([None])
        if (
            m.shape != arr.shape
            or m.dtype.kind not in "biu"
            or (m.dtype.kind != "b" and ((m < 0) | (m > 1)).any())
        ):
            raise record_error(
                f"field {mkey!r} must be a list of booleans as long as {key!r}", mkey, "bad_mask"
            )
        trained = m.astype(bool)
    lay = Layout()
    lay.add_ids(arr.astype(np.uint32), trained)
    return lay
