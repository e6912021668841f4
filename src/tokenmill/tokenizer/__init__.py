"""One small interface over every tokenizer tokenmill accepts, and a fingerprint that identifies it.

Tokenizing is the bottleneck of ``prepare`` and of on-the-fly pipelines, so this package cares about speed:
texts are always encoded in batches, by the fastest engine that gives exactly the ids of the tokenizer's own
library (fastokens where it is proven on the probe set and the first documents, else `tokenizers` or tiktoken;
see :mod:`tokenmill.tokenizer.engine`). ``engine`` names it, ``engine_reason`` says why.

Specs accepted by :func:`load_tokenizer`:

- ``"bytes"``: a built-in UTF-8 byte tokenizer that needs nothing (ids 0-255 are bytes, 256 ``<|endoftext|>``
  is EOS, 257 ``<|beginoftext|>`` is BOS, 258 ``<|pad|>`` is padding; it does not add BOS by convention);
- a ``tokenizer.json`` file, or a folder holding one (``tokenizer_config.json`` beside it, when present,
  supplies the BOS/EOS/PAD tokens and the chat template); only the ``tokenizers`` library is needed;
- a folder written by :meth:`Tokenizer.save` (a cache's ``tokenizer/`` copy);
- a tiktoken encoding name (``cl100k_base``; must be loadable by tiktoken, which downloads it unless it is in
  tiktoken's cache) or a ``.tiktoken`` ranks file;
- any other folder or a Hugging Face model name, through ``transformers.AutoTokenizer`` (fast tokenizers only);
- a tokenizer object: a transformers tokenizer (v4 ``PreTrainedTokenizerFast``, v5 ``TokenizersBackend``, a slow
  class built on tiktoken), a ``tokenizers.Tokenizer``, a ``tiktoken.Encoding`` (:mod:`tokenmill.tokenizer.objects`).

Special tokens: :meth:`Tokenizer.encode_batch` adds none, and the *text* of a special token in the input (say a
document that contains ``<|endoftext|>``) is encoded as plain text, never as the control token: data must not be
able to inject control tokens. The record formatter asks for control tokens explicitly (``parse_special=True``)
only for text produced by a chat template.
"""

from __future__ import annotations

from tokenmill.tokenizer.base import META_FILE, Tokenizer
from tokenmill.tokenizer.bytes import ByteTokenizer
from tokenmill.tokenizer.engine import ENGINES
from tokenmill.tokenizer.huggingface import HFTokenizer
from tokenmill.tokenizer.load import load_tokenizer, load_transformers
from tokenmill.tokenizer.objects import from_object
from tokenmill.tokenizer.tiktoken import TiktokenTokenizer
from tokenmill.tokenizer.train import train_tokenizer

__all__ = [
    "META_FILE",
    "ByteTokenizer",
    "HFTokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "train_tokenizer",
    "ENGINES",
    "from_object",
    "load_transformers",
]
