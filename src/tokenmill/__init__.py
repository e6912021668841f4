"""tokenmill: raw text to training-ready token batches, fast, exactly resumable, laptop to cluster.

The public API, by stage (heavy modules load on first use, so ``import tokenmill`` stays cheap):

- prepare: :func:`prepare`, :class:`PrepareConfig`, :class:`CacheReader`, :func:`read_manifest`
- tokenizers and formats: :func:`load_tokenizer`, :func:`train_tokenizer`, :class:`Tokenizer`,
  :class:`FormatConfig`, :class:`RecordFormatter`
- sources: :func:`expand_urls`, :func:`read_records`
- load: :class:`TokenDataset`, :class:`Mixture`, :class:`BatchIterator`, :class:`Pipeline`
- recipes: :func:`load_recipe`, :func:`prepare_recipe`, :func:`recipe_mixture`, :func:`recipe_report`
- torch (optional): ``tokenmill.torch``; train (optional): ``tokenmill.train``
- resuming: every stateful piece follows one contract (``tokenmill.state``: ``description.iter(state)`` gives an
  iterator with ``state_dict()`` and ``close()``); ``tokenmill.testing.assert_resumes`` checks your own stages
- errors: :class:`TokenmillError` and its subclasses
"""

import os as _os
import sys as _sys
import types as _types

# Lance logs a warning for every first write into a new dataset folder; it is expected in a parallel prepare.
_os.environ.setdefault("LANCE_LOG", "error")


class _Package(_types.ModuleType):
    """``tokenmill.prepare`` stays the function, whatever is imported first.

    Importing the subpackage ``tokenmill.prepare`` (``from tokenmill.prepare import PrepareConfig``) makes Python
    set the package attribute ``tokenmill.prepare`` to the module, after which ``tokenmill.prepare(config)``
    would fail with "'module' object is not callable"; this class puts the function back in that moment.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "prepare" and isinstance(value, _types.ModuleType):
            value = value.prepare  # type: ignore[attr-defined]
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

from tokenmill.errors import (  # noqa: E402
    CacheError,
    ConfigError,
    RecordError,
    SourceError,
    StateError,
    TokenizerError,
    TokenmillError,
)

__version__ = "0.1.0"

_LAZY = {
    "prepare": "tokenmill.prepare",
    "PrepareConfig": "tokenmill.prepare",
    "PrepareSummary": "tokenmill.prepare",
    "CacheReader": "tokenmill.cache",
    "read_manifest": "tokenmill.cache",
    "load_tokenizer": "tokenmill.tokenizer",
    "train_tokenizer": "tokenmill.tokenizer",
    "Tokenizer": "tokenmill.tokenizer",
    "FormatConfig": "tokenmill.formats",
    "RecordFormatter": "tokenmill.formats",
    "expand_urls": "tokenmill.sources",
    "read_records": "tokenmill.sources",
    "TokenDataset": "tokenmill.loader",
    "Mixture": "tokenmill.loader",
    "BatchIterator": "tokenmill.loader",
    "Batches": "tokenmill.loader",
    "Pipeline": "tokenmill.pipeline",
    "load_recipe": "tokenmill.recipe",
    "prepare_recipe": "tokenmill.recipe",
    "recipe_mixture": "tokenmill.recipe",
    "recipe_report": "tokenmill.recipe",
    "Recipe": "tokenmill.recipe",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenmill' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "CacheError",
    "ConfigError",
    "RecordError",
    "SourceError",
    "StateError",
    "TokenizerError",
    "TokenmillError",
    "__version__",
    *_LAZY,
]
