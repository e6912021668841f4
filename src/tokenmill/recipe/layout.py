"""The recipe's output folder: where each source's cache lives, and ``recipe.json``, the build state::

DIR/recipe.json             the resolved recipe (absolute paths, no credentials) and per-cache build state
DIR/NAME/                   the source's cache: train split, and validation by fraction or count
DIR/NAME.validation/        with ``validation_urls``: a cache whose every document is in split "validation"
"""

from __future__ import annotations

from typing import Any

from tokenmill.cache import store
from tokenmill.errors import CacheError

STATE_FILE = "recipe.json"
STATE_FORMAT = "tokenmill.recipe/1"
VALIDATION_SUFFIX = ".validation"


def cache_path(output: str, name: str, role: str = "train") -> str:
    """Where a source's cache lives under the recipe's output folder."""
    return store.join(output.rstrip("/"), name + (VALIDATION_SUFFIX if role == "validation" else ""))


def read_state(output: str, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    uri = store.join(output, STATE_FILE)
    if not store.exists(uri, storage_options):
        return {"format": STATE_FORMAT, "caches": {}}
    state = store.read_json(uri, storage_options)
    if state.get("format") != STATE_FORMAT:
        raise CacheError(f"{uri} was written by another version of tokenmill ({state.get('format')!r})")
    return state


def write_state(output: str, state: dict[str, Any], storage_options: dict[str, str] | None = None) -> None:
    store.write_json(store.join(output, STATE_FILE), state, storage_options)


def is_complete(cache: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether ``cache`` holds a finished build."""
    from tokenmill.cache import read_manifest

    try:
        return read_manifest(cache, storage_options).complete
    except CacheError:
        return False
