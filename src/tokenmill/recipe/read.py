"""Reading a prepared recipe: each source's split as a :class:`tokenmill.loader.TokenDataset`, mixed by the
recipe's weights through :class:`tokenmill.loader.Mixture`."""

from __future__ import annotations

import os
from typing import Any

from tokenmill.errors import CacheError, ConfigError
from tokenmill.recipe.layout import cache_path, is_complete
from tokenmill.recipe.load import load_recipe
from tokenmill.recipe.schema import Recipe


def source_split(recipe: Recipe, output: str, name: str, split: str = "train") -> tuple[str, str]:
    """(cache, split) holding a source's ``split``: validation files live in ``NAME.validation``."""
    spec = recipe.source(name)
    if split == "validation" and spec.separate_validation:
        return cache_path(output, name, "validation"), "validation"
    if split not in ("train", "validation"):
        raise ConfigError(f"unknown split {split!r}; a recipe has train and validation")
    return cache_path(output, name), split


def output_of(recipe: Recipe, output: str | None) -> str:
    out = output or recipe.output
    if not out:
        raise ConfigError("no recipe output folder: pass it (--output DIR) or set 'output' in the recipe")
    return out.rstrip("/")


def recipe_datasets(
    recipe: Recipe,
    output: str | None = None,
    *,
    seq_len: int | None = None,
    mode: str | None = None,
    split: str = "train",
    seed: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One :class:`tokenmill.loader.TokenDataset` per source that has data in ``split`` (name -> dataset)."""
    from tokenmill.loader import TokenDataset

    output = output_of(recipe, output)
    seq_len = seq_len or recipe.seq_len
    if not seq_len:
        raise ConfigError("no seq_len: pass --seq-len or set 'seq_len' in the recipe")
    storage_options = options.pop("storage_options", None)
    out = {}
    for spec in recipe.sources:
        if split == "validation" and not spec.has_validation:
            continue
        if split == "train" and not recipe.trains_on(spec.name):
            continue
        cache, cache_split = source_split(recipe, output, spec.name, split)
        so = spec.prepare.get("storage_options") or storage_options or recipe.storage_options
        if not is_complete(cache, so):
            raise CacheError(
                f"{cache} is not prepared yet: run `tokenmill prepare --recipe ... --output {output}`"
            )
        try:
            out[spec.name] = TokenDataset(
                cache,
                split=cache_split,
                seq_len=seq_len,
                mode=mode or recipe.mode,  # type: ignore[arg-type]
                seed=recipe.seed if seed is None else seed,
                storage_options=so,
                **options,
            )
        except CacheError:
            if split == "validation":  # a validation split too small for one sample is left out
                continue
            raise
    if not out:
        raise ConfigError(f"no source of the recipe has a {split} split")
    return out


def recipe_mixture(
    recipe: Recipe | str | os.PathLike,
    output: str | None = None,
    seq_len: int | None = None,
    mode: str | None = None,
    split: str = "train",
    seed: int | None = None,
    shuffle: bool = True,
    global_batch_size: int | None = None,
    **options: Any,
):
    """The recipe's sources mixed by their weights: a :class:`tokenmill.loader.Mixture` (batches carry
    ``source_index``, the index into ``mixture.names``). For ``split="validation"`` every source with validation data
    takes part, weighted the same way (a source of weight 0 counts as much as the smallest positive weight).

    With a ``schedule`` the train mixture follows it; its points in steps are placed with ``global_batch_size``
    (the trainer's, or ``tokenmill batches --batch-size``). Validation then weighs every source alike: the
    trainer reports each source's validation loss on its own."""
    from tokenmill.loader import Mixture

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    datasets = recipe_datasets(
        recipe, output, seq_len=seq_len, mode=mode, split=split, seed=seed, shuffle=shuffle, **options
    )
    if recipe.schedule is not None:
        if split == "train":
            return Mixture(
                datasets,
                schedule=recipe.schedule,
                global_batch_size=global_batch_size,
                policy=recipe.policy,
                seed=recipe.seed if seed is None else seed,
                shuffle=shuffle,
            )
        return Mixture(
            [(d, 1.0) for d in datasets.values()],
            names=list(datasets),
            policy=recipe.policy,
            seed=recipe.seed if seed is None else seed,
            shuffle=shuffle,
        )
    weights = [recipe.source(n).weight for n in datasets]
    positive = [w for w in weights if w > 0]
    floor = min(positive) if positive else 1.0
    weights = [w if w > 0 else floor for w in weights]
    return Mixture(
        list(zip(datasets.values(), weights)),
        policy=recipe.policy,
        seed=recipe.seed if seed is None else seed,
        shuffle=shuffle,
        names=list(datasets),
    )


def recipe_caches(recipe: Recipe, output: str | None = None, split: str = "train") -> list[str]:
    """The caches a mixture of ``split`` reads (train: sources of positive weight), in recipe order."""
    output = output_of(recipe, output)
    out = []
    for spec in recipe.sources:
        if (split == "train" and recipe.trains_on(spec.name)) or (
            split == "validation" and spec.has_validation
        ):
            out.append(source_split(recipe, output, spec.name, split)[0])
    return out
