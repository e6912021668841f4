"""What one pass of a recipe's mixture means per source: documents, tokens, shares under the weights, epochs."""

from __future__ import annotations

from typing import Any

from tokenmill.recipe.layout import cache_path
from tokenmill.recipe.read import output_of, recipe_datasets, source_split
from tokenmill.recipe.schema import Recipe


def recipe_report(
    recipe: Recipe,
    output: str | None = None,
    *,
    seq_len: int | None = None,
    mode: str | None = None,
    global_batch_size: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Per source: documents, tokens, trained tokens, weight, the effective share of the tokens (and trained
    tokens) the model sees under the weights, and how many epochs of the source one pass of the mixture is.

    With a schedule, "one pass" is the planned run (to the last point, or to ``steps``), and ``schedule`` lists
    per segment the samples, tokens and epochs each source gets (points in steps are placed with
    ``global_batch_size``)."""
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
    if recipe.schedule is not None:
        plan = schedule_plan(recipe, mixed, seq_len, global_batch_size, steps)
        return _report(recipe, output, seq_len, mode, rows, mixed, plan["shares"], plan["draws"], plan)
    schedule = MixtureSchedule(
        [r["samples"] for r in mixed], [r["weight"] for r in mixed], policy=recipe.policy
    )
    pass_samples = schedule.epoch_length(0)
    # exact draws of each source in one pass: whole blocks, plus the slots of the last, partial one
    full, rest = divmod(pass_samples, schedule.block_size)
    owner, _ = schedule.block_layout(0, full)
    draws = full * schedule.counts + np.bincount(owner[:rest], minlength=len(mixed))
    return _report(recipe, output, seq_len, mode, rows, mixed, schedule.shares, draws, None)


def _report(recipe, output, seq_len, mode, rows, mixed, shares, draws, plan) -> dict[str, Any]:
    """The per-source rows of a pass that draws ``draws`` samples of each mixed source at ``shares``."""
    import numpy as np

    draws = np.asarray(draws)
    pass_samples = int(round(float(draws.sum())))
    tokens_per = [r["tokens"] / max(1, r["samples"]) for r in mixed]
    trained_per = [r["trained_tokens"] / max(1, r["samples"]) for r in mixed]
    seen_tokens = sum(s * t for s, t in zip(shares, tokens_per))
    seen_trained = sum(s * t for s, t in zip(shares, trained_per))
    total_tokens = sum(r["tokens"] for r in mixed) or 1
    for r, share, tp, trp, d in zip(mixed, shares, tokens_per, trained_per, draws.tolist()):
        r["sample_share"] = float(share)
        r["token_share"] = float(share * tp / seen_tokens) if seen_tokens else 0.0
        r["trained_token_share"] = float(share * trp / seen_trained) if seen_trained else 0.0
        r["natural_share"] = r["tokens"] / total_tokens
        r["draws_per_pass"] = int(round(d))
        r["epochs_per_pass"] = d / r["samples"]
    if plan is not None:  # the schedule holds the weights
        for r in rows:
            r["weight"] = None
    for r in rows:
        if r["name"] not in [m["name"] for m in mixed]:
            r.update(sample_share=0.0, token_share=0.0, trained_token_share=0.0, natural_share=0.0)
            r["epochs_per_pass"] = 0.0
            r["draws_per_pass"] = 0
    out = {
        "output": output,
        "recipe": recipe.path,
        "tokenizer": recipe.tokenizer,
        "seq_len": seq_len,
        "mode": mode,
        "policy": recipe.policy,
        "samples_per_pass": pass_samples,
        "tokens_per_pass": int(round(pass_samples * sum(s * t for s, t in zip(shares, tokens_per)))),
        "sources": rows,
    }
    if plan is not None:
        out["schedule"] = {k: v for k, v in plan.items() if k not in ("shares", "draws")}
    return out


def schedule_plan(
    recipe: Recipe,
    mixed: list[dict[str, Any]],
    seq_len: int,
    global_batch_size: int | None,
    steps: int | None,
) -> dict[str, Any]:
    """Per segment of the recipe's schedule: its span, shape, and each source's shares at its ends, samples,
    tokens, epochs in the segment and epochs so far. Exact expected counts (the integral of the shares); the
    stream realises them within a few samples."""
    from tokenmill.errors import ConfigError
    from tokenmill.sampling.schedule import ScheduleError, resolve_points, schedule_of

    names = [r["name"] for r in mixed]
    unit = "tokens" if "tokens" in recipe.schedule[0] else "step"
    try:
        points = resolve_points(recipe.schedule, names, global_batch_size=global_batch_size, seq_len=seq_len)
    except ScheduleError as exc:
        hint = "; pass --global-batch-size" if global_batch_size is None else ""
        raise ConfigError(f"{recipe.path or 'recipe'}: {exc}{hint}") from None
    per_unit = seq_len if unit == "tokens" else 1 / int(global_batch_size)  # the schedule's units per sample
    weights = schedule_of(points)
    bounds = [p["at"] for p in points]
    if steps is not None:
        if global_batch_size is None:
            raise ConfigError("--steps needs --global-batch-size to say how many samples the run reads")
        end = int(steps) * int(global_batch_size)
        bounds = [b for b in bounds if b < end] + [end]
    sizes = [r["samples"] for r in mixed]
    tokens_per = [r["tokens"] / max(1, r["samples"]) for r in mixed]
    segments = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        q0, q1 = weights.quota(lo), weights.quota(hi)
        kind = points[i]["segment"] if i < len(points) else "constant"
        segments.append(
            {
                "from": lo * per_unit,
                "to": hi * per_unit,
                "samples": hi - lo,
                "segment": kind if i < len(points) - 1 else "constant",
                "sources": [
                    {
                        "name": name,
                        "share_start": float(weights.shares_at(lo)[k]),
                        "share_end": float(weights.shares_at(hi - 1)[k]) if hi > lo else 0.0,
                        "samples": float(q1[k] - q0[k]),
                        "tokens": float(q1[k] - q0[k]) * tokens_per[k],
                        "epochs": float(q1[k] - q0[k]) / max(1, sizes[k]),
                        "epochs_so_far": float(q1[k]) / max(1, sizes[k]),
                    }
                    for k, name in enumerate(names)
                ],
            }
        )
    end = bounds[-1]
    draws = [float(q) for q in weights.quota(end)] if end > 0 else [0.0] * len(names)
    shares = [d / end for d in draws] if end > 0 else [float(v) for v in weights.shares_at(0)]
    return {
        "unit": unit,
        "global_batch_size": global_batch_size,
        "end": end * per_unit,
        "points": recipe.schedule,
        "resolved": points,  # the points in samples, weights in ``names`` order
        "names": names,
        "segments": segments,
        "shares": shares,
        "draws": draws,
    }
