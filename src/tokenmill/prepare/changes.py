"""What changed since a cache's plan was fixed: sources rewritten or gone, new files under the patterns.

The plan in the ledger records the identity of every source it read (:mod:`tokenmill.sources.identity`). On a
rerun, a source whose identity differs is refused with the list of changes (or the cache is rebuilt with
``--rebuild-changed``): committed byte ranges of a rewritten file would otherwise be reused, losing or doubling
documents. ``--append`` works on resolved files, not pattern strings, so a file already in the cache is never read
twice, whatever pattern or path spelling names it, and a new file under a known pattern is found.
"""

from __future__ import annotations

import os
from typing import Any

from tokenmill.cache import store
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.plan import plan_units, token_datasets
from tokenmill.prepare.records import Unit
from tokenmill.sources.identity import SourceIdentity, can_identify, identify


def _spec(unit: Unit) -> Any:
    return unit.hf if unit.kind == "hf" else unit.lance if unit.kind == "lance" else None


def _identity_kind(unit: Unit) -> str:
    return "file" if unit.kind == "files" else unit.kind


def record_identities(units: list[Unit], config: PrepareConfig) -> dict[str, dict[str, Any]]:
    """The identity of every source the units read, by URL, as the plan stores them."""
    out: dict[str, dict[str, Any]] = {}
    for unit in units:
        kind = _identity_kind(unit)
        if not can_identify(kind):
            continue
        for url in unit.urls:
            if url not in out:
                found = identify(kind, url, _spec(unit), _options(config, url))
                if found is not None:
                    out[url] = found.to_json()
    return out


def changed_sources(
    plan: dict[str, Any], units: list[Unit], through: int, config: PrepareConfig
) -> dict[str, list[str]]:
    """The sources of the plan that changed since it was recorded in a way this run cannot honour: URL -> what
    changed. A whole file that only uncommitted units read is simply read as it is now (its identity in ``plan``
    is updated); a file with committed content, or cut into byte ranges or row groups, is reported."""
    recorded = plan.get("identities") or {}
    unit_of = {url: unit for unit in units for url in unit.urls}
    committed = {url for unit in units[:through] for url in unit.urls}
    changed: dict[str, list[str]] = {}
    for url, data in recorded.items():
        before = SourceIdentity.from_json(data)
        unit = unit_of.get(url)
        now = identify(before.kind, url, _spec(unit) if unit else None, _options(config, url))
        what = before.changes(now)
        if not what:
            continue
        if now is not None and url not in committed and _read_whole(url, units[through:]):
            recorded[url] = now.to_json()
            continue
        changed[url] = what
    # another Hugging Face dataset, split or argument is another source (its key, the unit's URL, differs):
    # new_urls finds it, refused without --append like a new file
    return changed


def _read_whole(url: str, units: list[Unit]) -> bool:
    """Whether every unit that reads ``url`` reads the whole file (no byte range, no row groups)."""
    for unit in units:
        for part in (unit.files or {}).get("parts", []):
            if part.get("url") == url and (part.get("byte_range") or part.get("row_groups")):
                return False
    return True


def new_urls(units: list[Unit], config: PrepareConfig) -> tuple[list[str], list[str]]:
    """The resolved sources of ``config`` that the plan does not hold yet, and those it already holds."""
    known = {_normal(u) for unit in units for u in unit.urls}
    if config.hf is not None or token_datasets(config):
        current = [u for unit in plan_units(config) for u in unit.urls]
    else:
        from tokenmill.sources import expand_urls

        if not config.sources:
            return [], []
        current = expand_urls(config.sources, storage_options=_options(config, config.sources[0]))
    new = [u for u in current if _normal(u) not in known]
    held = [u for u in current if _normal(u) in known]
    return new, held


def _normal(url: str) -> str:
    """One spelling per file: a local path made absolute (``data/a.jsonl`` and ``/abs/data/a.jsonl`` agree)."""
    if store.is_local(url) and not url.startswith("hf:"):
        return os.path.abspath(store.local_path(url))
    return url


def _options(config: PrepareConfig, url: str) -> dict[str, Any]:
    return store.fsspec_options(config.storage_options, url)
