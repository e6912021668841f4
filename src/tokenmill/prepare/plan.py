"""The plan of a build: the input cut into work units, fixed in the ledger before any work starts.

A rerun reads the stored plan instead of planning again, so a killed build resumes over the same units even if
the planner or the listing of a bucket would now cut differently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from tokenmill.cache import store
from tokenmill.config import digest
from tokenmill.errors import ConfigError
from tokenmill.prepare.config import PrepareConfig
from tokenmill.prepare.records import Unit, unit_urls


def plan_units(config: PrepareConfig) -> list[Unit]:
    """The work units of a build, in the order their documents enter the cache."""
    if config.hf is not None:
        return [Unit(kind="hf", bytes=0, urls=tuple(config.source_names()), hf=config.hf)]
    if token_datasets(config):
        return _plan_token_datasets(config)
    from tokenmill.sources import expand_urls
    from tokenmill.sources import plan_units as plan_file_units

    if not config.sources:
        raise ConfigError("no sources given: name files, URLs, brace patterns or globs to prepare")
    source_options = store.fsspec_options(config.storage_options, config.sources[0])
    urls = expand_urls(config.sources, storage_options=source_options)
    work = plan_file_units(
        urls,
        config.input_format,
        target_bytes=config.unit_bytes,
        text_split=config.text_split,
        storage_options=source_options,
    )
    units = []
    for unit in work:
        data = unit.to_json()
        units.append(
            Unit(kind="files", bytes=int(unit.nbytes), urls=tuple(sorted(set(unit_urls(data)))), files=data)
        )
    if config.sample == "random":  # a random subset takes whole units in a seeded random order
        order = np.random.default_rng(derived_seed(config.seed, "units")).permutation(len(units))
        units = [units[i] for i in order]
    return units


def token_datasets(config: PrepareConfig) -> list[str]:
    """The sources that are Lance datasets (token datasets to take over); mixing them with files is refused."""
    from tokenmill.sources.lance_tokens import looks_like_lance

    found = [s for s in config.sources if looks_like_lance(s)]
    if found and len(found) != len(config.sources):
        others = [s for s in config.sources if s not in found]
        raise ConfigError(
            f"a Lance token dataset ({', '.join(found)}) is taken over on its own; prepare the other sources "
            f"({', '.join(others)}) into another cache and mix the two in a recipe"
        )
    return found


def adopt_token_datasets(config: PrepareConfig) -> list[str]:
    """Set the record format for Lance token datasets among the sources; returns what was assumed, to print.

    Their ids are stored as they are: format ``tokens`` on the dataset's column, no BOS/EOS added.
    """
    uris = token_datasets(config)
    if not uris:
        return []
    from tokenmill.sources.lance_tokens import open_token_dataset

    fmt = config.format_options()
    if fmt.get("format") not in (None, "auto", "tokens"):
        raise ConfigError(
            f"{uris[0]} is a Lance token dataset: its token ids are taken as they are, so the record format "
            f"{fmt['format']!r} does not apply (leave --format out)"
        )
    found = [open_token_dataset(u, config.storage_options, fmt.get("tokens_key")) for u in uris]
    if len({(d.column, d.layout) for d in found}) > 1:
        raise ConfigError("these Lance token datasets differ in column or layout; take each over on its own")
    for key, value in (("add_bos", False), ("add_eos", False)):
        if fmt.get(key):
            raise ConfigError(
                f"{uris[0]}: {key} would change the dataset's tokens; a taken-over dataset keeps them as they are"
            )
        config.format[key] = value
    config.format["format"] = "tokens"
    config.format["tokens_key"] = found[0].column
    return [d.assumption(config.row_tokens) for d in found]


def _plan_token_datasets(config: PrepareConfig) -> list[Unit]:
    from tokenmill.sources.lance_tokens import open_token_dataset, plan_row_ranges

    out = []
    for uri in token_datasets(config):
        found = open_token_dataset(uri, config.storage_options, config.format.get("tokens_key"))
        for a, b, nbytes in plan_row_ranges(
            found, config.unit_bytes, config.row_tokens, config.storage_options
        ):
            spec = {"uri": uri, "column": found.column, "layout": found.layout, "version": found.version}
            out.append(Unit(kind="lance", bytes=nbytes, urls=(uri,), lance={**spec, "rows": [a, b]}))
    return out


def derived_seed(seed: int, *parts: Any) -> int:
    """A 64-bit seed for one purpose (``parts``) derived from the user's seed, stable across runs and machines."""
    blob = json.dumps([seed, *parts], sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")


def identity_hash(identity: dict[str, Any]) -> str:
    """A short digest of a build's identity, stored in the plan."""
    return digest(identity)
