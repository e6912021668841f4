"""Levanter's ``data:`` section (``LMDatasetConfig`` / ``LMMixtureDatasetConfig``) as a native recipe.

One dataset (``train_urls`` / ``validation_urls`` or a Hugging Face ``id``/``name``/``stream``) becomes one source
named ``data``; the mixture form (``configs`` + ``train_weights``) becomes one source per config with its weight.
``cache_dir`` is where the caches go (tokenmill's output folder), ``tokenizer`` the recipe's tokenizer (Levanter's
default ``gpt2`` when absent). See docs/migrate/levanter.md.
"""

from __future__ import annotations

import os
from typing import Any

from tokenmill.recipe.section import Reader

SOURCE_KEYS = (
    "id",
    "name",
    "stream",
    "train_urls",
    "validation_urls",
    "cache_dir",
    "text_key",
    "plaintext",
    "format",
    "tags",
)
TASK_KEYS = (
    "tokenizer",
    "vocab_size",
    "cache_dir",
    "cache_options",
    "enforce_eos",
    "ignore_token_id",
    "shuffle",
    "configs",
    "train_weights",
    "stop_strategy",
    "mixture_block_size",
    "max_train_batches",
    "num_validation_sequences",
    "target_budget",
    "experiment_budget",
    "auto_build_caches",
)
KEYS = tuple(dict.fromkeys((*SOURCE_KEYS, *TASK_KEYS)))
# keys only Levanter has (RWKV-infctx has tokenizer too)
ONLY = tuple(k for k in KEYS if k != "tokenizer")
# options that change how Levanter builds or schedules, not what the data is: noted, not refused
_RUNTIME = {
    "cache_options": "how Levanter batches its cache build; tokenmill's prepare has its own (--workers)",
    "mixture_block_size": "tokenmill lays out each mixture block from the weights exactly",
    "auto_build_caches": "tokenmill builds with `tokenmill prepare --config FILE`",
}


def convert(data: dict[str, Any], r: Reader) -> dict[str, Any]:
    section = data["data"]
    if section.get("tokenizer") == "passthrough":
        raise r.refuse(
            "data.tokenizer", "pre-tokenized ids are the tokens format: write format: tokens in a recipe"
        )
    native = r.section(data, KEYS, "gpt2")
    cache_dir = r.string("data.cache_dir", section.get("cache_dir", "cache/"))
    native["output"] = r.path(cache_dir)
    r.note("data.cache_dir", f"output folder {native['output']} (one cache per source under it)")
    _task_options(section, native, r)
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("seq_len"), int):
        native["seq_len"] = model["seq_len"]
        r.note(
            "model.seq_len",
            f"seq_len {model['seq_len']} (for batches and inspect; the rest of model: ignored)",
        )
    defaults = native.pop("defaults", {})
    if "configs" in section:
        native["sources"], native["policy"] = _mixture(section, r)
        stages = section.get("train_weights")
        if isinstance(stages, list):
            native["schedule"] = _schedule(stages, section["configs"], r)
            for spec in native["sources"].values():  # the schedule gives the weights
                spec.pop("weight", None)
    else:
        for key in ("train_weights", "stop_strategy"):
            if key in section:
                raise r.where.error(f"data.{key}", f"{key} belongs to the mixture form (with configs:)")
        own = {
            k: v for k, v in section.items() if k in SOURCE_KEYS and k != "cache_dir"
        }  # cache_dir: the task's
        native["sources"] = {"data": _source(own, "data", r, weight=1.0)}
    if defaults:
        native["defaults"] = defaults
    return native


def _task_options(section: dict[str, Any], native: dict[str, Any], r: Reader) -> None:
    """Options of the whole task (every source): EOS, shuffling, ids, limits."""
    defaults: dict[str, Any] = {}
    if "enforce_eos" in section:
        eos = section["enforce_eos"]
        defaults["add_eos"] = bool(eos)
        r.note("data.enforce_eos", "add_eos: true (EOS after every document)" if eos else "add_eos: false")
    shuffle = section.get("shuffle", False)
    if shuffle is False:
        default = "" if "shuffle" in section else " (Levanter's default)"
        r.note(
            "data.shuffle", f"false{default}: `batches --no-shuffle` reads in cache order; tokenmill shuffles"
        )
    elif shuffle is True:
        r.note("data.shuffle", "true: tokenmill's seeded shuffle, a new order each epoch")
    else:
        r.note(
            "data.shuffle", f"{shuffle} (era shuffle): tokenmill shuffles whole epochs, not eras of {shuffle}"
        )
    for key in ("ignore_token_id", "vocab_size", "max_train_batches", "num_validation_sequences"):
        if section.get(key) is not None:
            raise r.refuse(
                f"data.{key}",
                "tokenmill has no such option; leave it out (masks come from the record format, limits from "
                "max_documents / max_tokens per source)",
            )
    for key in ("target_budget", "experiment_budget"):
        if section.get(key) is not None:
            raise r.refuse(
                f"data.{key}", "simulated epoching is not in tokenmill; give each source max_tokens"
            )
    for key, why in _RUNTIME.items():
        if key in section:
            r.note(f"data.{key}", f"ignored: {why}")
    if defaults:
        native["defaults"] = defaults


def _mixture(section: dict[str, Any], r: Reader) -> tuple[dict[str, Any], str]:
    configs = section["configs"]
    if not isinstance(configs, dict) or not configs:
        raise r.where.error("data.configs", "must be a mapping of source names to their configs")
    weights = section.get("train_weights", {})
    if isinstance(weights, list):  # stages: every source takes part; the schedule gives the weights
        weights = {name: 1.0 for name in configs}
    if not isinstance(weights, dict):
        raise r.where.error("data.train_weights", "must map each config's name to its weight")
    for name in weights:
        if name not in configs:
            raise r.where.error(f"data.train_weights.{name}", f"no config named {name!r} in data.configs")
    strategy = r.string("data.stop_strategy", section.get("stop_strategy", "restart"))
    policy = {"restart": "repeat", "first_exhausted": "stop"}.get(strategy)
    if policy is None:
        raise r.refuse(
            "data.stop_strategy",
            f"{strategy!r}: tokenmill repeats sources (restart) or stops at the first exhausted one "
            "(first_exhausted); use one of those",
        )
    r.note("data.stop_strategy", f"{strategy}: policy {policy}")
    r.note("data.train_weights", "source weights (relative, like Levanter's; a source left out has weight 0)")
    out = {}
    for name, cfg in configs.items():
        key = f"data.configs.{name}"
        if not isinstance(cfg, dict):
            raise r.where.error(key, f"must be a mapping (train_urls, validation_urls or id), got {cfg!r}")
        for k in cfg:
            if k not in SOURCE_KEYS:
                raise r.unknown(f"{key}.{k}", SOURCE_KEYS)
        weight = weights.get(name, 0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise r.where.error(f"data.train_weights.{name}", f"must be a number >= 0, got {weight!r}")
        out[name] = _source(cfg, name, r, weight=float(weight), prefix=key)
    return out, policy


def _schedule(stages: list[Any], configs: dict[str, Any], r: Reader) -> list[dict[str, Any]]:
    """``train_weights`` as ``[step, weights]`` stages: a recipe schedule whose weights hold (``segment:
    constant``) from each stage's step to the next, as Levanter switches them."""
    points = []
    for i, stage in enumerate(stages):
        key = f"data.train_weights.{i}"
        if not isinstance(stage, (list, tuple)) or len(stage) != 2 or not isinstance(stage[1], dict):
            raise r.where.error(key, f"a stage is [step, {{name: weight, ...}}], got {stage!r}")
        step = r.integer(key, stage[0])
        for name in stage[1]:
            if name not in configs:
                raise r.where.error(key, f"no config named {name!r} in data.configs")
        points.append({"at": step, "weights": dict(stage[1]), "segment": "constant"})
    r.note(
        "data.train_weights", f"{len(points)} stages: a schedule, each stage's weights held until the next"
    )
    return points


def _source(
    cfg: dict[str, Any], name: str, r: Reader, *, weight: float, prefix: str = "data"
) -> dict[str, Any]:
    """One Levanter source (files or a Hugging Face dataset) as a recipe source."""
    spec: dict[str, Any] = {}
    has_files = bool(cfg.get("train_urls"))
    if "id" in cfg and has_files:
        raise r.where.error(f"{prefix}.id", "give either id (a Hugging Face dataset) or train_urls, not both")
    if cfg.get("id") is not None:
        spec["hf"] = _hf(cfg, r, prefix)
    elif has_files:
        spec["urls"] = [r.path(u) for u in r.strings(f"{prefix}.train_urls", cfg["train_urls"])]
        r.note(f"{prefix}.train_urls", f"source {name!r}: files {', '.join(cfg['train_urls'])}")
    elif cfg.get("validation_urls"):  # an evaluation-only source: weight 0, every document in validation
        spec["urls"] = [r.path(u) for u in r.strings(f"{prefix}.validation_urls", cfg["validation_urls"])]
        spec["validation"] = 2**62
        weight = 0.0
        r.note(f"{prefix}.validation_urls", f"source {name!r}: validation only (weight 0)")
    else:
        raise r.where.error(prefix, "a source needs train_urls, validation_urls or id")
    if (has_files or cfg.get("id") is not None) and cfg.get("validation_urls"):
        spec["validation_urls"] = [
            r.path(u) for u in r.strings(f"{prefix}.validation_urls", cfg["validation_urls"])
        ]
        r.note(f"{prefix}.validation_urls", f"source {name!r}: validation files (a cache of their own)")
    spec["weight"] = weight
    if cfg.get("plaintext"):
        raise r.refuse(
            f"{prefix}.plaintext",
            "plain text files are input_format: text in a recipe (with text_split: document or lines); convert "
            "the file and set them",
        )
    if "text_key" in cfg:
        spec["text_key"] = r.string(f"{prefix}.text_key", cfg["text_key"])
        r.note(f"{prefix}.text_key", f"text_key {spec['text_key']}")
    if "format" in cfg:
        spec.update(_format(cfg["format"], f"{prefix}.format", r))
    if cfg.get("cache_dir") is not None:
        r.note(f"{prefix}.cache_dir", "ignored: every source's cache lives under the one output folder")
    if cfg.get("tags"):
        r.note(f"{prefix}.tags", "ignored: tokenmill names a source by its key")
    return spec


def _hf(cfg: dict[str, Any], r: Reader, prefix: str) -> dict[str, Any]:
    ident = r.string(f"{prefix}.id", cfg["id"])
    local = r.path(ident)
    hf: dict[str, Any] = {"name": local if os.path.exists(local) else ident, "split": "train"}
    if cfg.get("name") is not None:
        hf["config"] = r.string(f"{prefix}.name", cfg["name"])
    stream = cfg.get("stream", True)
    if stream:
        hf["streaming"] = True
    what = f"Hugging Face dataset {ident}" + (f" (config {hf['config']})" if "config" in hf else "")
    r.note(f"{prefix}.id", f"{what}, split train" + (", streamed" if stream else ""))
    if cfg.get("validation_urls"):
        return hf
    if _hf_validation_supported() and os.path.isdir(os.path.join(hf["name"], "validation")):
        hf["validation_split"] = "validation"
        r.note(f"{prefix}.id", "its own validation split is the source's validation (as Levanter reads it)")
    else:  # a hub dataset's splits are not known offline: say so rather than guess
        r.note(
            f"{prefix}.id",
            "no validation read from it: give validation_urls, or convert and set hf.validation_split",
        )
    return hf


def _hf_validation_supported() -> bool:
    try:
        from tokenmill.sources.hf import HF_KEYS  # type: ignore[attr-defined]
    except ImportError:
        return False
    return "validation_split" in HF_KEYS


def _format(value: Any, key: str, r: Reader) -> dict[str, Any]:
    """Levanter's ``format:`` (text, chat, supervised) as record-format options."""
    if not isinstance(value, dict):
        raise r.where.error(key, f"must be a mapping with 'type', got {value!r}")
    kind = value.get("type", "text")
    rest = {k: v for k, v in value.items() if k != "type"}
    out: dict[str, Any]
    if kind == "text":
        out = {"format": "text"}
        if "text_key" in rest:
            out["text_key"] = rest.pop("text_key")
    elif kind == "chat":
        out = {"format": "chat"}
        if "messages_field" in rest:
            out["messages_key"] = rest.pop("messages_field")
        if rest.get("chat_template") is not None:
            out["chat_template"] = rest.pop("chat_template")
        rest.pop("chat_template", None)
        out["train_on"] = "assistant" if rest.pop("mask_user_turns", True) else "all"
        rest.pop("single_turn", None)
    elif kind == "supervised":
        out = {"format": "prompt-completion"}
        out["prompt_key"] = rest.pop("input_field", "prompt")
        out["completion_key"] = rest.pop("output_field", "response")
        out["prompt_mask"] = bool(rest.pop("mask_inputs", True))
        if rest.pop("separate_with", None) is not None:
            raise r.refuse(f"{key}.separate_with", "write the separator into the prompt field itself")
    else:
        raise r.refuse(
            f"{key}.type", f"format {kind!r} has no tokenmill counterpart (text, chat, supervised do)"
        )
    if "pack" in rest:
        pack = rest.pop("pack")
        r.note(
            f"{key}.pack", "packing is a reading mode in tokenmill: mode packed" if pack else "mode padded"
        )
    if rest:
        raise r.unknown(f"{key}.{sorted(rest)[0]}", ("type", "text_key", "messages_field", "chat_template"))
    r.note(f"{key}.type", f"{kind}: " + ", ".join(f"{k} {v!r}" for k, v in out.items()))
    return out
