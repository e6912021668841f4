"""RWKV-infctx-trainer's ``data:`` section (``RWKV-v5/config-example.yaml``, ``src/data.py``) as a native recipe.

The data section becomes one source named ``data``. ``source`` is a Hugging Face dataset, a builder for local
files (``text``/``json``/``csv``/``parquet`` with ``source_data_dir``), a file or folder, or null (``data_path`` is
then an already tokenized dataset saved with ``save_to_disk``); ``data_path`` is otherwise where the caches go.
RWKV's record handling (``custom_text_key``, ``multi_column_*``, prompt/completion, text) maps onto tokenmill's
formats; ``text_rechunk_size`` is the windows mode's sample length, ``packing_enable`` the packed mode. Every
difference that remains is printed. See docs/migrate/rwkv-infctx.md.
"""

from __future__ import annotations

import os
import re
from typing import Any

from tokenmill.recipe.section import Reader

BUILDERS = {"text": "text", "json": "jsonl", "csv": "csv", "parquet": "parquet"}
# how the dataset is built or served, not what it holds: noted and left to tokenmill's own options
_RUNTIME = (
    "packing_batchsize",
    "packing_min_ctx_len",
    "packing_in_sequence",
    "reverse_train_dataset_before_save",
    "skip_datapath_setup",
    "processing_max_batch_size",
    "dataloader_shuffle_training",
    "dataloader_prefetch_factor",
    "dataloader_pin_memory",
    "dataset_name",
    "dataset_index",
    "is_random_datapack",
    "sort_asc",
    "world_add_endoftext_token",
)
# the keys that say what the data is
DATA_KEYS = (
    "data_path",
    "data_path_storage_options",
    "source",
    "source_data_dir",
    "source_dataset_params",
    "source_dataset_split",
    "test_split",
    "test_split_shuffle",
    "text_rechunk_size",
    "text_rechunk_auto",
    "text_rechunk_force",
    "tokenizer",
    "autoTokenizer",
    "min_token_size",
    "max_token_size",
    "sort_by_length",
    "dataset_offset",
    "dataset_length",
    "custom_text_key",
    "multi_column_keys",
    "multi_column_prefix",
    "multi_column_suffix",
    "multi_column_train_mask",
    "multi_column_separator",
    "conversation_format",
    "conversation_key",
    "conversation_input_key_prefix_map",
    "conversation_input_key_mask",
    "conversation_sender_key",
    "conversation_sender_value_map",
    "conversation_input_key_map",
    "conversation_sender_suffix",
    "conversation_sender_mask",
    "conversation_end_of_conversation",
    "disable_prompt_completion_mask",
    "data_prefix_skip_mask",
    "packing_enable",
    "packing_chunksize",
)
KEYS = (*DATA_KEYS, *_RUNTIME)
ONLY = tuple(k for k in KEYS if k != "tokenizer")
# Hugging Face's rule for a data file that belongs to the test split (its name says test)
_TEST_FILE = re.compile(r"(^|[-_. /])(test|testing|eval|evaluation)([-_. 0-9]|$)")


def convert(data: dict[str, Any], r: Reader) -> dict[str, Any]:
    section = data["data"]
    native = r.section(data, KEYS, "world")
    if section.get("autoTokenizer") is not None:
        raise r.refuse(
            "data.autoTokenizer", "pass a tokenizer.json (or folder) whose settings are already right"
        )
    seed = data.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool):
        native["seed"] = seed
        r.note("seed_everything", f"seed {seed}")
    spec: dict[str, Any] = {"weight": 1.0}
    source = section.get("source")
    if source is None:
        _saved_tokens(section, spec, native, r)
    else:
        _source(section, r.string("data.source", source), spec, native, r)
    if section.get("data_path_storage_options"):
        options = r.mapping("data.data_path_storage_options", section["data_path_storage_options"])
        native["storage_options"] = options
        r.note("data.data_path_storage_options", "storage_options of the output folder")
    if source is not None:
        _records(section, spec, r)
        _lengths(section, spec, r)
    _selection(section, spec, r)
    _sampling(section, data, native, r)
    for key in _RUNTIME:
        if key in section:
            r.note(
                f"data.{key}",
                "ignored: how RWKV builds or serves its dataset (tokenmill has its own options)",
            )
    native["sources"] = {"data": spec}
    return native


def _saved_tokens(section: dict[str, Any], spec: dict[str, Any], native: dict[str, Any], r: Reader) -> None:
    """``source: null``: data_path is a tokenized dataset saved with save_to_disk (input_ids, attention_mask)."""
    if "data_path" not in section:
        raise r.where.error("data.source", "with source null, data_path names the saved dataset to read")
    path = r.path(r.string("data.data_path", section["data_path"]))
    spec["hf"] = {"name": path, "split": "train"}
    spec["format"] = {
        "format": "tokens",
        "tokens_key": "input_ids",
        "tokens_mask_key": "attention_mask",
        "add_bos": False,
        "add_eos": False,
    }
    r.note(
        "data.source", "null: data_path is read as RWKV saved it (input_ids, attention_mask as the loss mask)"
    )
    r.note("data.data_path", f"{path}: the saved dataset (the caches go to --output)")
    native["output"] = (
        os.path.join(path + ".tokenmill") if "://" not in path else path.rstrip("/") + ".tokenmill"
    )
    _test_split_of_saved(path, spec, r)


def _test_split_of_saved(path: str, spec: dict[str, Any], r: Reader) -> None:
    if os.path.isdir(os.path.join(path, "test")):
        from tokenmill.recipe.levanter import _hf_validation_supported

        if _hf_validation_supported():
            spec["hf"]["validation_split"] = "test"
            r.note(
                "data.test_split", "the saved dataset has a test split: it is the validation (as RWKV does)"
            )


def _source(
    section: dict[str, Any], source: str, spec: dict[str, Any], native: dict[str, Any], r: Reader
) -> None:
    data_path = section.get("data_path")
    if data_path is not None:
        native["output"] = r.path(r.string("data.data_path", data_path))
        r.note("data.data_path", f"output folder {native['output']} (where RWKV would save its dataset)")
    directory = section.get("source_data_dir")
    params = r.mapping("data.source_dataset_params", section.get("source_dataset_params") or {})
    if source in BUILDERS:
        if directory is None:
            raise r.where.error(
                "data.source", f"source {source!r} reads the files of source_data_dir: name it"
            )
        folder = r.path(r.string("data.source_data_dir", directory))
        if params:
            raise r.refuse(
                "data.source_dataset_params", "arguments of the local file builders have no tokenmill use"
            )
        _local_files(folder, BUILDERS[source], spec, r, f"{source} files under {directory}")
        r.note("data.source", f"{source}: local files read as {BUILDERS[source]}")
        if source == "text":
            spec["text_split"] = "lines"
            r.note("data.source", "text: one document per line (as Hugging Face's text builder reads it)")
        return
    local = r.path(source)
    if os.path.exists(local) and "://" not in source:
        _local_files(local, None, spec, r, f"files {source}")
        r.note("data.source", f"{source}: a local file or folder")
        return
    hf: dict[str, Any] = {"name": source, "split": section.get("source_dataset_split", "train")}
    kwargs = dict(params)
    if directory is not None:
        kwargs["data_dir"] = directory
    if kwargs:
        from tokenmill.recipe.levanter import _hf_validation_supported

        if not _hf_validation_supported():
            raise r.refuse(
                "data.source_dataset_params", "load_dataset arguments need a newer tokenmill build"
            )
        hf["kwargs"] = kwargs
        r.note("data.source_dataset_params", f"load_dataset arguments {kwargs}")
    spec["hf"] = hf
    r.note("data.source", f"Hugging Face dataset {source}, split {hf['split']}")
    r.note(
        "data.source",
        "whether it has a test split of its own is not known offline: if it has, convert and set "
        "hf.validation_split: test (RWKV's rule), else test_split applies",
    )


def _local_files(folder: str, input_format: str | None, spec: dict[str, Any], r: Reader, what: str) -> None:
    """Files of a folder; those Hugging Face would put in the test split (a name saying test) are validation."""
    if input_format is not None:
        spec["input_format"] = input_format
    if not os.path.isdir(folder):
        spec["urls"] = [folder]
        return
    files = sorted(
        os.path.join(root, f)
        for root, _, names in os.walk(folder)
        for f in names
        if not f.startswith((".", "_"))
    )
    test = [f for f in files if _TEST_FILE.search(os.path.relpath(f, folder).lower())]
    if test and len(test) < len(files):
        spec["urls"] = [f for f in files if f not in test]
        spec["validation_urls"] = test
        r.note(
            "data.source_data_dir",
            f"{what}; the files named test are the validation (the dataset's test split)",
        )
    else:
        spec["urls"] = [folder]
        r.note("data.source_data_dir", what)


def _records(section: dict[str, Any], spec: dict[str, Any], r: Reader) -> None:
    """custom_text_key, multi_column_*, prompt/completion and text, in RWKV's order of preference."""
    fmt: dict[str, Any] = {}
    custom = section.get("custom_text_key")
    if custom is not None:
        fmt["format"] = "text"
        fmt["text_key"] = r.string("data.custom_text_key", custom)
        r.note("data.custom_text_key", f"format text, text_key {custom} (a record without it is an error)")
    for key in [k for k in section if k.startswith("conversation_")]:
        if section[key] is not None:
            raise r.refuse(
                f"data.{key}", "write the conversations as messages and use format: chat in a recipe"
            )
    keys = section.get("multi_column_keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise r.where.error("data.multi_column_keys", f"must be a list of column names, got {keys!r}")
        if not keys:
            raise r.refuse(
                "data.multi_column_keys",
                "[] (no column merging) is format: prompt-completion or format: text in a recipe",
            )
        n = len(keys)
        fmt["column_keys"] = keys
        fmt["column_prefixes"] = _per_column(section, "multi_column_prefix", n, "", r)
        fmt["column_suffixes"] = _per_column(section, "multi_column_suffix", n, "", r)
        fmt["column_train"] = _per_column(section, "multi_column_train_mask", n, True, r)
        if section.get("multi_column_separator") is not None:
            fmt["column_separator"] = r.string(
                "data.multi_column_separator", section["multi_column_separator"]
            )
        r.note(
            "data.multi_column_keys",
            f"columns {keys} with their prefixes, suffixes, train mask and separator "
            "(tokenmill does not train prefixes and separators; RWKV does)",
        )
    else:
        r.note(
            "data.multi_column_keys", "(default) instruction/input/output columns, RWKV's prefixes and mask"
        )
    if "disable_prompt_completion_mask" in section:
        fmt["prompt_mask"] = not bool(section["disable_prompt_completion_mask"])
        r.note("data.disable_prompt_completion_mask", f"prompt_mask {fmt['prompt_mask']}")
    if section.get("data_prefix_skip_mask"):
        raise r.refuse(
            "data.data_prefix_skip_mask", "tokenmill masks by record fields, not the first N tokens"
        )
    if fmt:
        spec["format"] = fmt


def _per_column(section: dict[str, Any], key: str, n: int, missing: Any, r: Reader) -> list[Any]:
    value = section.get(key)
    if value is None:
        return [missing] * n
    if not isinstance(value, list) or len(value) > n:
        raise r.where.error(
            f"data.{key}", f"must be a list of at most {n} entries (one per column), got {value!r}"
        )
    return [missing if v is None else v for v in value] + [missing] * (n - len(value))


def _lengths(section: dict[str, Any], spec: dict[str, Any], r: Reader) -> None:
    """min_token_size / max_token_size (-1 = no limit; RWKV drops records outside, and always those of < 2)."""
    fmt = spec.setdefault("format", {})
    low = section.get("min_token_size", 2)
    high = section.get("max_token_size", -1)
    for key, value in (("min_token_size", low), ("max_token_size", high)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise r.where.error(f"data.{key}", f"must be an integer (-1 for no limit), got {value!r}")
    fmt["min_tokens"] = max(low, 2)
    r.note("data.min_token_size", f"min_tokens {fmt['min_tokens']} (shorter records are skipped and counted)")
    if high > 0:
        fmt["max_tokens"] = high
        fmt["truncate"] = "drop"
        r.note(
            "data.max_token_size", f"max_tokens {high}, truncate drop (longer records skipped and counted)"
        )
    else:
        r.note("data.max_token_size", "-1: no limit")
    if not fmt:
        spec.pop("format")


def _selection(section: dict[str, Any], spec: dict[str, Any], r: Reader) -> None:
    """test_split, dataset_offset/length, sort_by_length."""
    has_own = "validation_urls" in spec or "validation_split" in (spec.get("hf") or {})
    split = section.get("test_split", 0.01)
    if has_own:
        if "test_split" in section:
            r.note("data.test_split", "not used: the dataset has a test split of its own (RWKV's rule)")
    elif isinstance(split, bool) or not isinstance(split, (int, float)):
        raise r.where.error("data.test_split", f"must be a fraction or a count, got {split!r}")
    elif isinstance(split, float) and 0 < split < 1:
        spec["validation"] = split
        r.note("data.test_split", f"validation {split} (a fraction of the documents)")
    elif isinstance(split, float) and split >= 1:
        raise r.refuse("data.test_split", "a fraction must be below 1.0")
    else:
        spec["validation"] = max(1, int(split))  # RWKV always keeps at least one test sample
        r.note("data.test_split", f"validation {spec['validation']} (a document count)")
    if "validation" in spec and "test_split_shuffle" in section:
        r.note(
            "data.test_split_shuffle",
            f"{section['test_split_shuffle']}: tokenmill picks validation documents by a seeded content hash "
            "(stable across reruns and worker counts), not the dataset's last rows",
        )
    offset = section.get("dataset_offset", -1)
    length = section.get("dataset_length", -1)
    if isinstance(offset, (int, float)) and offset > 0:
        raise r.refuse(
            "data.dataset_offset", "tokenmill takes documents from the start; cut the files instead"
        )
    if isinstance(length, float) and 0 < length < 1:
        raise r.refuse("data.dataset_length", "give a document count (max_documents), not a fraction")
    if isinstance(length, int) and not isinstance(length, bool) and length > 0:
        spec["max_documents"] = length
        r.note("data.dataset_length", f"max_documents {length}")
    if section.get("sort_by_length"):
        raise r.refuse("data.sort_by_length", "tokenmill shuffles (or packs) samples; leave it false")


def _sampling(section: dict[str, Any], data: dict[str, Any], native: dict[str, Any], r: Reader) -> None:
    """How samples are cut: text rechunking is the windows mode, packing the packed mode, else one document each."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    source = section.get("source")
    size = r.integer("data.text_rechunk_size", section.get("text_rechunk_size", 4096) or 0)
    auto = section.get("text_rechunk_auto", True)
    force = bool(section.get("text_rechunk_force", False))
    rechunk = size > 0 and ((source == "text" and (auto or force)) or (source != "text" and force))
    if rechunk:
        native["mode"], native["seq_len"] = "windows", size
        r.note(
            "data.text_rechunk_size",
            f"mode windows, seq_len {size}: documents joined with EOS and cut in {size}-token samples when read "
            "(the cache keeps whole documents)",
        )
    elif section.get("packing_enable"):
        chunk = r.integer("data.packing_chunksize", section.get("packing_chunksize", 4096))
        native["mode"], native["seq_len"] = "packed", chunk
        r.note("data.packing_enable", f"mode packed, seq_len {chunk} (packing_chunksize)")
    elif isinstance(model.get("ctx_len"), int):
        native["mode"], native["seq_len"] = "padded", model["ctx_len"]
        r.note(
            "model.ctx_len",
            f"mode padded, seq_len {model['ctx_len']}: one document per sample, longer ones split in ctx_len "
            "pieces (RWKV's BPTT segments)",
        )
