"""Other tools' data configurations taken as they are: a Levanter or an RWKV-infctx ``data:`` section.

A file whose top level has ``data:`` (and no ``sources:``) is read as the tool's own configuration: each key of
its ``data:`` section is translated to the native recipe (:mod:`tokenmill.recipe.schema`), and the translation
records, key by key, how it was understood, so the command line can print it before any work starts. A key that
tokenmill cannot honour is refused, naming the file, the line and what to write instead; the other sections of
the file (``model:``, ``trainer:``, ...) are ignored with a note. :func:`Conversion.to_yaml` writes the native
recipe (``tokenmill recipe convert FILE``).

The per-tool rules live in :mod:`~tokenmill.recipe.levanter` and :mod:`~tokenmill.recipe.rwkv`, on the key-by-key
:class:`~tokenmill.recipe.section.Reader` they share; this module detects the tool and runs its translation. docs/migrate/levanter.md and docs/migrate/rwkv-infctx.md show both ways side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from tokenmill.config import Where, load_yaml
from tokenmill.errors import ConfigError
from tokenmill.recipe.section import Reader

LEVANTER = "Levanter"
RWKV = "RWKV-infctx"

# Tokenizer names the tools use that tokenmill cannot load offline, with where the user finds the file instead.
TOKENIZER_HINTS = {
    "neox": "RWKV-infctx ships it as RWKV-v5/src/dataflow/20B_tokenizer.json in the trainer's folder",
    "world": "RWKV's world tokenizer is a trie over rwkv_vocab_v20230424.txt, which no tokenmill engine reads; "
    "pass a tokenizer.json of the same vocabulary",
    "gpt2": "save it once where there is a network (AutoTokenizer.from_pretrained('gpt2').save_pretrained(DIR)) "
    "and pass DIR/tokenizer.json",
    "passthrough": "Levanter's passthrough tokenizer reads pre-tokenized ids; write format: tokens in a native recipe",
}


@dataclass
class Conversion:
    """A foreign data section as a native recipe: the recipe's data, and how each key was understood."""

    tool: str
    path: str
    native: dict[str, Any]
    understood: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    recipe: Any = None  # the validated tokenmill.recipe.Recipe

    def explain(self) -> list[str]:
        """One line per key: how tokenmill understood it (what the command line prints before any work)."""
        width = max((len(k) for k, _ in self.understood), default=0)
        lines = [f"{self.path}: a {self.tool} data section, read as a tokenmill recipe:"]
        lines += [f"  {key:<{width}}  {meaning}" for key, meaning in self.understood]
        if self.ignored:
            lines.append(f"  not data (ignored): {', '.join(self.ignored)}")
        return lines

    def to_yaml(self, relative_to: str | None = None) -> str:
        """The native recipe as YAML, with the understanding as comments. Local paths are made relative to
        ``relative_to`` (the folder the recipe will be written to), so the file can be moved with its data."""
        data = _relative_paths(self.native, relative_to) if relative_to else self.native
        head = [f"# tokenmill recipe converted from {os.path.basename(self.path)} ({self.tool} data section)"]
        head += [f"#   {key}: {meaning}" for key, meaning in self.understood]
        if self.ignored:
            head.append(f"#   not data (ignored): {', '.join(self.ignored)}")
        return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def detect(data: dict[str, Any]) -> str | None:
    """Which tool a config file belongs to (by the keys of its data section), or None for a native recipe."""
    from tokenmill.recipe import levanter, rwkv

    section = data.get("data")
    if "sources" in data or not isinstance(section, dict):
        return None
    keys = set(section)
    if keys & set(rwkv.ONLY) or {"seed_everything", "ckpt_path"} & set(data):
        return RWKV
    if keys & set(levanter.ONLY) or keys <= set(levanter.KEYS):
        return LEVANTER
    return RWKV if keys <= set(rwkv.KEYS) else LEVANTER


def is_foreign(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a YAML file holding a Levanter or RWKV-infctx data section."""
    text = os.fspath(path)
    if not text.endswith((".yaml", ".yml")):
        return False
    try:
        return detect(load_yaml(text)) is not None
    except ConfigError:
        return False


def load_foreign(
    path: str | os.PathLike, *, tokenizer: str | None = None, output: str | None = None
) -> Conversion:
    """Read a Levanter or RWKV-infctx config file's data section as a validated recipe (nothing is read or
    written): ``tokenizer`` and ``output`` replace the file's own (``--tokenizer`` / ``--output``)."""
    from tokenmill.recipe import levanter, rwkv
    from tokenmill.recipe.schema import parse_recipe

    text = os.fspath(path)
    data = load_yaml(text)
    tool = detect(data)
    if tool is None:
        raise ConfigError(
            f"{text}: no Levanter or RWKV-infctx 'data:' section (a native recipe has 'sources:')"
        )
    where = Where.of_file(text)
    base = text.rsplit("/", 1)[0] if "://" in text else os.path.dirname(os.path.abspath(text))
    reader = Reader(tool, where, base)
    convert = levanter.convert if tool == LEVANTER else rwkv.convert
    native = convert(data, reader)
    if tokenizer is not None:  # a command-line path is relative to the working folder
        native["tokenizer"] = os.path.abspath(tokenizer) if os.path.exists(tokenizer) else tokenizer
        reader.note(
            "--tokenizer", f"tokenizer {tokenizer} (given on the command line, replaces data.tokenizer)"
        )
    if output is not None:
        native["output"] = output
    conversion = Conversion(tool, text, native, reader.understood, sorted(k for k in data if k != "data"))
    try:
        conversion.recipe = parse_recipe(native, path=text, lines={}, base=base)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in the recipe converted from its {tool} data section)") from None
    return conversion


def check_tokenizer_offline(conversion: Conversion) -> None:
    """A tokenizer named the tool's way that is not available offline fails in one line saying which file to
    pass; called before a build (reading a prepared folder needs no tokenizer)."""
    from tokenmill.tokenizer import load_tokenizer

    name = conversion.native["tokenizer"]
    if os.path.exists(name) or "://" in name:
        return
    try:
        if name in ("neox", "world", "passthrough"):  # the tools' own names: no engine or hub knows them
            raise LookupError(name)
        load_tokenizer(name)
    except Exception:  # any failure to find it offline: the one-line answer below says what to do
        hint = TOKENIZER_HINTS.get(name) or (
            "save it once where there is a network (AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)) "
            "and pass DIR/tokenizer.json"
        )
        key = "--tokenizer" if any(k == "--tokenizer" for k, _ in conversion.understood) else "data.tokenizer"
        where = Where.of_file(conversion.path)
        raise where.error(
            key,
            f"tokenizer {name!r} is not available offline (tokenmill downloads nothing): pass its file with "
            f"--tokenizer PATH/tokenizer.json ({hint})",
        ) from None


def _relative_paths(native: dict[str, Any], folder: str) -> dict[str, Any]:
    folder = os.path.abspath(folder)

    def rel(value: Any) -> Any:
        if isinstance(value, str) and os.path.isabs(value) and "://" not in value:
            return os.path.relpath(value, folder)
        if isinstance(value, list):
            return [rel(v) for v in value]
        return value

    out = dict(native)
    for key in ("tokenizer", "output"):
        if key in out and (key == "output" or os.path.exists(out[key])):
            out[key] = rel(out[key])
    sources = {}
    for name, spec in native.get("sources", {}).items():
        spec = dict(spec)
        for key in ("urls", "validation_urls"):
            if key in spec:
                spec[key] = rel(spec[key])
        if isinstance(spec.get("hf"), dict) and os.path.exists(str(spec["hf"].get("name", ""))):
            spec["hf"] = {**spec["hf"], "name": rel(spec["hf"]["name"])}
        sources[name] = spec
    out["sources"] = sources
    return out
