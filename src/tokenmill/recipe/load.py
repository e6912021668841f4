"""``load_recipe``: a recipe file (native, or another tool's data section) or a prepared recipe folder, validated.

Here, above :mod:`~tokenmill.recipe.schema` and :mod:`~tokenmill.recipe.foreign`, because a file may be either:
the foreign translation ends in the native schema's validation, so the module that chooses between them imports
both and neither imports the other's caller.
"""

from __future__ import annotations

import os

from tokenmill.cache import store
from tokenmill.config import key_lines, load_yaml
from tokenmill.errors import ConfigError
from tokenmill.recipe.foreign import load_foreign
from tokenmill.recipe.layout import STATE_FILE
from tokenmill.recipe.schema import Recipe, parse_recipe


def load_recipe(path: str | os.PathLike, storage_options: dict[str, str] | None = None) -> Recipe:
    """Read and validate a recipe YAML, or the recipe recorded in a prepared folder (``DIR`` or its
    ``recipe.json``, local or in a bucket; credentials then come from ``storage_options`` or the environment).

    A YAML file with a Levanter or RWKV-infctx ``data:`` section (and no ``sources:``) is read as that tool's
    configuration (:mod:`tokenmill.recipe.foreign`)."""
    text = os.fspath(path)
    if not text.endswith((".yaml", ".yml")) and (
        text.endswith(STATE_FILE) or os.path.isdir(text) or "://" in text
    ):
        uri = text if text.endswith(STATE_FILE) else store.join(text, STATE_FILE)
        so = store.resolve_storage_options(storage_options, uri)
        if not store.exists(uri, so):
            raise ConfigError(f"{text} is not a prepared recipe folder (no {STATE_FILE})")
        state = store.read_json(uri, so)
        recipe = Recipe.from_json(state["recipe"])
        recipe.trust_remote_code = False  # never from a file: only the command line or a Python argument
        recipe.storage_options = storage_options
        folder = uri[: -len(STATE_FILE)].rstrip("/")
        recipe.output = recipe.output or (os.path.abspath(folder) if store.is_local(folder) else folder)
        return recipe
    data = load_yaml(text)
    if "sources" not in data and isinstance(data.get("data"), dict):
        return load_foreign(text).recipe  # a Levanter or RWKV-infctx config file
    base = text.rsplit("/", 1)[0] if "://" in text else os.path.dirname(os.path.abspath(text))
    return parse_recipe(data, path=text, lines=key_lines(text), base=base)
