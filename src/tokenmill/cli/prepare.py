"""``tokenmill prepare``: build (or resume, extend, confirm) a token cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from tokenmill.cli._common import (
    add_engine_argument,
    human,
    import_arrow_without_pandas,
    parse_key_values,
    parse_number,
    print_json,
)
from tokenmill.config import Where, key_lines, load_yaml
from tokenmill.errors import ConfigError
from tokenmill.sources.detect import FORMATS as INPUT_FORMATS
from tokenmill.sources.detect import INPUT_FORMAT_ALIASES

DEFAULT_UNIT_BYTES = 8 << 20  # PrepareConfig.unit_bytes (a test keeps the two equal)

# command-line flag -> record-format option (the formats layer validates the values)
FORMAT_FLAGS = {
    "format": "format",
    "prompt_key": "prompt_key",
    "completion_key": "completion_key",
    "prompt_mask": "prompt_mask",
    "messages_key": "messages_key",
    "train_on": "train_on",
    "tokens_key": "tokens_key",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="tokenize sources into a resumable Lance token cache",
        description="Read SOURCEs (paths or URLs, brace patterns, globs), tokenize them in parallel and write a "
        "versioned Lance token cache. Run the same command again to resume a killed build.",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files, URLs, brace patterns or globs")
    p.add_argument(
        "--config",
        help="YAML file with prepare options (flags override it), or a Levanter / RWKV-infctx config file whose "
        "data section is prepared as a recipe (docs/migrate/)",
    )
    p.add_argument(
        "--recipe",
        metavar="RECIPE.yaml",
        help="prepare every source of a data recipe, one cache each under --output (docs/recipes.md)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument(
        "--tokenizer", help="tokenizer.json, HF name or folder, tiktoken name or .tiktoken file, or 'bytes'"
    )
    add_engine_argument(p)
    p.add_argument("--output", "-o", help="cache folder or URL")
    p.add_argument(
        "--input-format",
        choices=[*INPUT_FORMATS, *INPUT_FORMAT_ALIASES],
        metavar="FORMAT",
        help="override detection: jsonl, parquet, csv, cbor, text (aliases json, ndjson, pq, tsv, txt)",
    )
    p.add_argument("--text-key", help="field holding the text (default: text)")
    p.add_argument(
        "--text-split", choices=["document", "lines"], help="text files: one document per file or line"
    )
    p.add_argument("--format", choices=["auto", "text", "prompt-completion", "columns", "chat", "tokens"])
    p.add_argument("--prompt-key")
    p.add_argument("--completion-key")
    p.add_argument("--no-prompt-mask", dest="prompt_mask", action="store_false", default=None)
    p.add_argument("--messages-key")
    p.add_argument("--train-on", choices=["assistant", "all"])
    p.add_argument("--tokens-key")
    p.add_argument("--set-format", action="append", metavar="KEY=VALUE", help="any record-format option")
    p.add_argument("--min-tokens", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--truncate", choices=["left", "right", "drop"])
    p.add_argument("--max-documents", type=int, help="take the first N documents and stop reading")
    p.add_argument("--max-total-tokens", type=int, help="take documents until N tokens and stop reading")
    p.add_argument("--validation", help="validation split: a fraction (0.01) or a document count (500)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--workers",
        type=int,
        help="units run in parallel (default: all cores; 0 = one at a time, in this process)",
    )
    p.add_argument(
        "--on-error", choices=["raise", "skip"], help="bad records: stop (default) or skip and count"
    )
    p.add_argument("--row-tokens", type=int, help="longest cache row; longer documents span several rows")
    p.add_argument(
        "--unit-bytes",
        type=int,
        help=f"target input bytes per work unit (default {DEFAULT_UNIT_BYTES >> 20} MiB)",
    )
    p.add_argument("--append", action="store_true", default=None, help="add new sources to an existing cache")
    p.add_argument("--overwrite", action="store_true", default=None, help="rebuild a cache made differently")
    p.add_argument(
        "--rebuild-changed",
        action="store_true",
        default=None,
        help="rebuild the cache when a source changed since it was built (without it, such a run is refused)",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        default=None,
        help="a build that finds no document is not an error",
    )
    p.add_argument(
        "--executor",
        choices=["local", "thread", "process", "ray"],
        help="where units run: local (default: threads sharing the tokenizer when its engine releases the GIL, "
        "else processes), thread, process, or ray",
    )
    p.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE", help="object-store option")
    p.add_argument(
        "--hf-dataset", help="a Hugging Face dataset name or save_to_disk folder (needs `datasets`)"
    )
    p.add_argument("--hf-config", help="the dataset's configuration (load_dataset's second argument)")
    p.add_argument("--hf-split", default=None, help="the split to read (default: train)")
    p.add_argument("--hf-revision", help="a branch, tag or commit of the hub dataset")
    p.add_argument(
        "--hf-data-files", action="append", metavar="PATH", help="data files for a builder (json, ...)"
    )
    p.add_argument(
        "--hf-streaming",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read rows as they are needed: a budget (--max-documents/--max-total-tokens) stops the download",
    )
    p.add_argument(
        "--hf-arg",
        action="append",
        metavar="KEY=VALUE",
        help="a further load_dataset argument, VALUE read as YAML: --hf-arg 'languages=[Python]'",
    )
    p.add_argument("--trust-remote-code", action="store_true", default=None)
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(run=run)


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """YAML values first, then every flag the user gave."""
    data: dict[str, Any] = load_yaml(args.config) if args.config else {}
    if "trust_remote_code" in data:
        from tokenmill.recipe.schema import TRUST_FROM_FILE

        line = key_lines(args.config).get("trust_remote_code")
        raise ConfigError(
            f"{args.config}{f', line {line}' if line else ''}, key 'trust_remote_code': {TRUST_FROM_FILE}"
        )
    if args.sources:
        data["sources"] = list(args.sources)
    simple = [
        "tokenizer",
        "output",
        "input_format",
        "text_key",
        "text_split",
        "min_tokens",
        "max_tokens",
        "truncate",
        "max_documents",
        "max_total_tokens",
        "seed",
        "workers",
        "on_error",
        "row_tokens",
        "unit_bytes",
        "append",
        "overwrite",
        "rebuild_changed",
        "allow_empty",
        "executor",
        "ray_address",
        "trust_remote_code",
        "engine",
    ]
    for name in simple:
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.validation is not None:
        data["validation"] = parse_number(args.validation, "--validation")
    fmt = dict(data.get("format") or {})
    for flag, key in FORMAT_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            fmt[key] = value
    for key, value in parse_key_values(args.set_format, "--set-format").items():
        fmt[key] = yaml.safe_load(value) if value else value
    if fmt:
        data["format"] = fmt
    options = parse_key_values(args.storage_option, "--storage-option")
    if options:
        data["storage_options"] = {**(data.get("storage_options") or {}), **options}
    return _hf_options(args, data)


def _yaml_value(text: str) -> Any:
    """A flag's value read as YAML (``[Python]`` is a list), or the text itself where it is not YAML."""
    try:
        return yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        return text


def _hf_options(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """The ``hf`` mapping: the YAML one, with every --hf-* flag given on top (a new name starts afresh)."""
    given = {
        "config": args.hf_config,
        "split": args.hf_split,
        "revision": args.hf_revision,
        "data_files": args.hf_data_files,
        "streaming": args.hf_streaming,
    }
    extra = {key: _yaml_value(value) for key, value in parse_key_values(args.hf_arg, "--hf-arg").items()}
    if not args.hf_dataset and not extra and all(v is None for v in given.values()):
        return data
    hf = dict(data.get("hf") or {}) if not args.hf_dataset else {}
    if isinstance(data.get("hf"), str) and not args.hf_dataset:
        hf = {"name": data["hf"]}
    if args.hf_dataset:
        hf["name"] = args.hf_dataset
    if "name" not in hf:
        from tokenmill.errors import ConfigError

        raise ConfigError(
            "--hf-* options need a dataset: pass --hf-dataset NAME (or hf: in the --config file)"
        )
    hf.update({k: v for k, v in given.items() if v is not None})
    hf.update(extra)
    data["hf"] = hf
    return data


def _preload_engine(data: dict[str, Any]) -> None:
    """Where this process will encode itself (threads), start building the fast engine of a tokenizer.json before
    the rest of tokenmill (lance, pyarrow) is imported: the two overlap (0.3 s with cl100k)."""
    tokenizer, engine = data.get("tokenizer"), data.get("engine") or "auto"
    here = data.get("executor") in (None, "local", "thread") or data.get("workers") == 0
    if isinstance(tokenizer, str) and engine in ("auto", "fastokens") and here:
        from tokenmill.tokenizer.load import preload_file

        preload_file(tokenizer)


def run(args: argparse.Namespace) -> int:
    from tokenmill.cli._recipe import is_foreign_config, run_prepare

    if args.recipe or is_foreign_config(args):
        return run_prepare(args)
    data = resolve_config(args)
    _preload_engine(data)
    if not data.get("hf") and data.get("executor") != "ray":
        import_arrow_without_pandas(
            args
        )  # before tokenmill.prepare imports lance, which imports pyarrow.dataset
    from tokenmill.prepare import PrepareConfig, prepare

    config = PrepareConfig.from_dict(data, _where(args, data))
    if args.print_config:
        shown = config.public_dict()
        yaml.safe_dump(shown, sys.stdout, sort_keys=False)
        return 0
    summary = prepare(config, progress=args.progress)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print_json(summary.to_json())
        return 0
    if summary.status == "nothing to do":
        print(
            f"{summary.output}: already complete ({summary.documents} documents, {summary.tokens} tokens); nothing to do"
        )
        return 0
    print(
        f"{summary.output}: {summary.status}: {summary.documents} documents, {summary.tokens} tokens "
        f"({human(summary.tokens_per_s)} tokens/s this run, {summary.seconds:.1f} s)"
    )
    for name, split in summary.splits.items():
        print(f"  {name:<10} {split['documents']:>10} documents {split['tokens']:>14} tokens")
    if summary.skipped:
        skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(summary.skipped.items()))
        print(f"  skipped    {skipped}")
    return 0


def _where(args: argparse.Namespace, data: dict[str, Any]) -> Where:
    """Errors name the config file and line of a key the file gave (a flag's value is named as an option)."""
    if not args.config:
        return Where("prepare options")
    from_file = load_yaml(args.config)
    lines = {
        key: line
        for key, line in key_lines(args.config).items()
        if data.get(key.split(".")[0]) == from_file.get(key.split(".")[0])
    }
    return Where(args.config, lines)
