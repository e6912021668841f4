"""Data recipes: one YAML file describes a whole training mixture, from sources to weighted batches.

A recipe names a tokenizer, a seed and a set of sources; each source has its own files (or Hugging Face dataset),
record format and keys, validation set, subset, dedup and weight::

    tokenizer: tokenizer.json
    seed: 0
    sources:
      web:  {urls: ["data/web/*.jsonl.gz"], weight: 0.7, validation: 0.01, dedup: exact}
      code: {urls: ["data/code/*.parquet"], text_key: content, weight: 0.2, max_documents: 50000, sample: random}
      chat: {urls: ["data/chat/*.jsonl"], format: chat, weight: 0.1, validation_urls: ["data/chat-val.jsonl"]}

The package follows a recipe's life (docs/recipes.md):

* :mod:`~tokenmill.recipe.load` and :mod:`~tokenmill.recipe.schema`: :func:`load_recipe` validates all of it
  before anything runs (an unknown
  key, a value of the wrong type, a weight that is not a number are errors naming the key and its YAML line);
  :mod:`~tokenmill.recipe.source` one source's keys, checked by the layers that own them;
* :mod:`~tokenmill.recipe.foreign`: a Levanter or RWKV-infctx ``data:`` section taken as a recipe (each key read
  by :mod:`~tokenmill.recipe.section`);
* :mod:`~tokenmill.recipe.inputs`: every source's files listed, and the tokenizer loaded, before any writing;
* :mod:`~tokenmill.recipe.layout`: the output folder (``recipe.json`` and one cache per source);
* :mod:`~tokenmill.recipe.build`: :func:`prepare_recipe` brings each cache up to date (fingerprints);
* :mod:`~tokenmill.recipe.read`: :func:`recipe_mixture` mixes the sources' splits by their weights;
* :mod:`~tokenmill.recipe.report` and :mod:`~tokenmill.recipe.plot`: what one pass of the mixture means.
"""

from __future__ import annotations

from tokenmill.recipe.build import ALL_DOCUMENTS, CacheResult, RecipeSummary, prepare_recipe
from tokenmill.recipe.foreign import Conversion, is_foreign, load_foreign
from tokenmill.recipe.inputs import SourceInputs, check_inputs
from tokenmill.recipe.layout import STATE_FILE, STATE_FORMAT, VALIDATION_SUFFIX, cache_path
from tokenmill.recipe.load import load_recipe
from tokenmill.recipe.plot import plot_schedule, plot_shares
from tokenmill.recipe.read import recipe_caches, recipe_datasets, recipe_mixture, source_split
from tokenmill.recipe.report import recipe_report
from tokenmill.recipe.schema import (
    MODES,
    NAME,
    POLICIES,
    TOP_KEYS,
    Recipe,
    is_recipe,
    parse_recipe,
)
from tokenmill.recipe.source import (
    PREPARE_KEYS,
    RECIPE_KEYS,
    RENAMED,
    SAMPLES,
    SOURCE_ONLY,
    SourceSpec,
    _format_keys,
)
from tokenmill.sources.hf import HF_KEYS  # the keys an HF source names itself (the rest: load_dataset args)

__all__ = [
    "ALL_DOCUMENTS",
    "HF_KEYS",
    "MODES",
    "NAME",
    "POLICIES",
    "PREPARE_KEYS",
    "RECIPE_KEYS",
    "RENAMED",
    "SAMPLES",
    "SOURCE_ONLY",
    "STATE_FILE",
    "STATE_FORMAT",
    "TOP_KEYS",
    "VALIDATION_SUFFIX",
    "CacheResult",
    "Conversion",
    "Recipe",
    "RecipeSummary",
    "SourceInputs",
    "SourceSpec",
    "_format_keys",
    "cache_path",
    "check_inputs",
    "is_foreign",
    "is_recipe",
    "load_foreign",
    "load_recipe",
    "parse_recipe",
    "plot_schedule",
    "plot_shares",
    "prepare_recipe",
    "recipe_caches",
    "recipe_datasets",
    "recipe_mixture",
    "recipe_report",
    "source_split",
]
