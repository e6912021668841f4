"""What a Hugging Face tokenizer folder says beside ``tokenizer.json``: special tokens and the chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenmill.errors import TokenizerError


def token_text(value: Any) -> str | None:
    """A special token from a transformers config: a string or an AddedToken-like dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def read_hf_config(folder: Path) -> dict[str, Any]:
    """What tokenizer_config.json / special_tokens_map.json / chat_template.jinja say, merged."""
    cfg: dict[str, Any] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        p = folder / fname
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot read {p}: {e}; fix or remove the file") from e
            if isinstance(data, dict):
                cfg.update(data)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        cfg["chat_template"] = jinja.read_text(encoding="utf-8")
    elif (folder / "chat_template.json").is_file():
        try:
            cfg["chat_template"] = json.loads((folder / "chat_template.json").read_text())["chat_template"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    tmpl = cfg.get("chat_template")
    if isinstance(tmpl, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in tmpl if isinstance(t, dict)}
        cfg["chat_template"] = named.get("default") or next(iter(named.values()), None)
    return cfg
