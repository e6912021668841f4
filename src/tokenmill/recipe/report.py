"""What one pass of a recipe's mixture means per source: documents, tokens, shares under the weights, epochs."""

from __future__ import annotations

from typing import Any

from tokenmill.recipe.layout import cache_path
from tokenmill.recipe.read import output_of, recipe_datasets, source_split
from tokenmill.recipe.schema import Recipe


def recipe_report(
    recipe: Recipe, output: str | None = None, *, seq_len: int | None = None, mode: str | None = None
) -> dict[str, Any]:
    """Per source: documents, tokens, trained tokens, weight, the effective share of the tokens (and trained
    tokens) the model sees under the weights, and how many epochs of the source one pass of the mixture is."""
    import numpy as np

    from tokenmill.cache import read_manifest
    from tokenmill.sampling.mixture import MixtureSchedule

    output = output_of(recipe, output)
    seq_len = seq_len or recipe.seq_len or 1024
    mode = mode or recipe.mode
    datasets = recipe_datasets(recipe, output, seq_len=seq_len, mode=mode, split="train")
    rows = []
    for spec in recipe.sources:
        so = spec.prepare.get("storage_options") or recipe.storage_options
        manifest = read_manifest(cache_path(output, spec.name), so)
        train = manifest.splits.get("train")
        row: dict[str, Any] = {
            "name": spec.name,
            "cache": cache_path(output, spec.name),
            "weight": spec.weight,
            "documents": train.documents if train else 0,
            "tokens": train.tokens if train else 0,
            "trained_tokens": train.trained_tokens if train else 0,
            "skipped": dict(manifest.skipped),
            "samples": len(datasets[spec.name]) if spec.name in datasets else 0,
        }
        cache, split = source_split(recipe, output, spec.name, "validation")
        val = read_manifest(cache, so).splits.get(split) if spec.has_validation else None
        row["validation"] = {
            "cache": cache,
            "documents": val.documents if val else 0,
            "tokens": val.tokens if val else 0,
        }
        rows.append(row)
    mixed = [r for r in rows if r["name"] in datasets]
    schedule = MixtureSchedule(
        [r["samples"] for r in mixed], [r["weight"] for r in mixed], policy=recipe.policy
    )
    pass_samples = schedule.epoch_length(0)
    # exact draws of each source in one pass: whole blocks, plus the slots of the last, partial one
    full, rest = divmod(pass_samples, schedule.block_size)
    owner, _ = schedule.block_layout(0, full)
    draws = full * schedule.counts + np.bincount(owner[:rest], minlength=len(mixed))
    tokens_per = [r["tokens"] / max(1, r["samples"]) for r in mixed]
    trained_per = [r["trained_tokens"] / max(1, r["samples"]) for r in mixed]
    seen_tokens = sum(s * t for s, t in zip(schedule.shares, tokens_per))
    seen_trained = sum(s * t for s, t in zip(schedule.shares, trained_per))
    total_tokens = sum(r["tokens"] for r in mixed) or 1
    for r, share, tp, trp, d in zip(mixed, schedule.shares, tokens_per, trained_per, draws.tolist()):
        r["sample_share"] = float(share)
        r["token_share"] = float(share * tp / seen_tokens) if seen_tokens else 0.0
        r["trained_token_share"] = float(share * trp / seen_trained) if seen_trained else 0.0
        r["natural_share"] = r["tokens"] / total_tokens
        r["draws_per_pass"] = int(d)
        r["epochs_per_pass"] = d / r["samples"]
    for r in rows:
        if r["name"] not in datasets:
            r.update(sample_share=0.0, token_share=0.0, trained_token_share=0.0, natural_share=0.0)
            r["epochs_per_pass"] = 0.0
            r["draws_per_pass"] = 0
    return {
        "output": output,
        "recipe": recipe.path,
        "tokenizer": recipe.tokenizer,
        "seq_len": seq_len,
        "mode": mode,
        "policy": recipe.policy,
        "samples_per_pass": int(pass_samples),
        "tokens_per_pass": int(round(pass_samples * sum(s * t for s, t in zip(schedule.shares, tokens_per)))),
        "sources": rows,
    }
