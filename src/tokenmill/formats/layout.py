"""What every format shares: a record laid out as parts, the encoded result, record errors, BOS/EOS.

How masks stay exact. A record is first laid out as a list of *parts*, each a piece of text with a train flag
(prompt: masked, completion: trained, ...). Consecutive parts with the same flag are joined, and each resulting
run is tokenized on its own; the ids are the concatenation of the runs. So the boundary between masked and
trained tokens is exactly the boundary between the parts, whatever the tokenizer would have merged across it:
with prompt ``"hel"`` and completion ``"lo world"`` the prompt is ``hel`` (masked) and the completion ``lo``,
`` world`` (trained), never one ``hello`` token half-trained. We chose this over character offsets because
offsets cannot split a token that spans the join, and because tiktoken (our fast engine) gives no offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenmill.errors import RecordError

PLAIN, SPECIAL = 0, 1  # text tokenized as plain text / with control tokens recognised (chat template text)


class Layout:
    """A record laid out as parts: (text, kind, trained) or literal ids (ids, None, trained)."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[Any, int | None, bool | np.ndarray]] = []

    def add(self, text: str, trained: bool, kind: int = PLAIN) -> None:
        if not text:
            return
        if self.parts:
            prev_text, prev_kind, prev_trained = self.parts[-1]
            if prev_kind == kind and prev_trained == trained and kind is not None:
                self.parts[-1] = (prev_text + text, kind, trained)
                return
        self.parts.append((text, kind, trained))

    def add_ids(self, ids: np.ndarray, trained: bool | np.ndarray) -> None:
        self.parts.append((ids, None, trained))


@dataclass
class Encoded:
    """One formatted record: ``ids`` (uint32) and ``mask`` (bool, True = trained), or ``mask=None`` when every
    token is trained (the cache then stores no mask for it)."""

    ids: np.ndarray
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_trained(self) -> int:
        return len(self.ids) if self.mask is None else int(self.mask.sum())


def record_error(message: str, field: str | None, reason: str) -> RecordError:
    """A bad record; the formatter does not know where it came from (see :func:`with_location`)."""
    return RecordError(message, field=field, reason=reason)


def with_location(
    error: RecordError, *, path: str | None = None, line: int | None = None, row: int | None = None
) -> RecordError:
    """The same record error, now saying where the record came from (formatters do not know)."""
    return RecordError(error.detail, path=path, line=line, row=row, field=error.field, reason=error.reason)


def string_field(rec: Mapping[str, Any], key: str, *, allow_empty: bool) -> str:
    """``rec[key]`` as a string, or the record error that says what is wrong with it."""
    if key not in rec:
        raise record_error(f"field {key!r} is missing", key, "missing_field")
    value = rec[key]
    if not isinstance(value, str):
        raise record_error(f"must be a string, got {type(value).__name__}", key, "not_string")
    if not value and not allow_empty:
        raise record_error(f"field {key!r} is empty", key, "empty")
    return value


def ensure_bos_eos(
    ids: Sequence[int] | np.ndarray, bos_id: int | None, eos_id: int | None
) -> tuple[bool, bool]:
    """Whether BOS / EOS must be added to ``ids`` (None = do not add), never doubling one already there."""
    n = len(ids)
    add_bos = bos_id is not None and (n == 0 or int(ids[0]) != bos_id)
    add_eos = eos_id is not None and (n == 0 or int(ids[-1]) != eos_id)
    return add_bos, add_eos
