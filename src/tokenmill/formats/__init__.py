"""Record -> (token ids, loss mask), the same way in ``prepare`` and in the streaming pipeline.

Formats: ``text``, ``prompt-completion``, ``columns``, ``chat``, ``tokens`` and ``auto`` (docs/formats.md), one
module each; :mod:`~tokenmill.formats.config` holds their options, :mod:`~tokenmill.formats.layout` what they
share (parts with train flags, which is how masks stay exact across a prompt/completion join), and
:mod:`~tokenmill.formats.formatter` the :class:`RecordFormatter` that tokenizes and assembles them.
"""

from __future__ import annotations

from tokenmill.formats.chat import BUILTIN_CHAT_TEMPLATE
from tokenmill.formats.config import (
    DEFAULT_COLUMN_KEYS,
    DEFAULT_COLUMN_PREFIXES,
    DEFAULT_COLUMN_TRAIN,
    FORMATS,
    TRAIN_ON,
    TRUNCATE,
    FormatConfig,
    unescape,
)
from tokenmill.formats.formatter import RecordFormatter
from tokenmill.formats.layout import Encoded, ensure_bos_eos, with_location

__all__ = [
    "BUILTIN_CHAT_TEMPLATE",
    "DEFAULT_COLUMN_KEYS",
    "DEFAULT_COLUMN_PREFIXES",
    "DEFAULT_COLUMN_TRAIN",
    "FORMATS",
    "TRAIN_ON",
    "TRUNCATE",
    "Encoded",
    "FormatConfig",
    "RecordFormatter",
    "ensure_bos_eos",
    "unescape",
    "with_location",
]
