"""Reading another tool's ``data:`` section key by key: what was taken, how it was understood, what is refused.

Levanter's and RWKV-infctx's translations (:mod:`~tokenmill.recipe.levanter`, :mod:`~tokenmill.recipe.rwkv`)
both walk their section with one :class:`Reader`; :mod:`~tokenmill.recipe.foreign` picks the tool and runs them.
Apart from both, so that neither translation imports the module that imports it.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from tokenmill.config import Where
from tokenmill.errors import ConfigError


class Reader:
    """Walks one data section key by key: what it took, what it understood, what it refuses."""

    def __init__(self, tool: str, where: Where, base: str) -> None:
        self.tool = tool
        self.where = where
        self.base = base
        self.understood: list[tuple[str, str]] = []

    def note(self, key: str, meaning: str) -> None:
        self.understood.append((key, meaning))

    def refuse(self, key: str, why: str) -> ConfigError:
        return self.where.error(key, f"{self.tool}'s {key.rsplit('.', 1)[-1]!r} cannot be honoured: {why}")

    def unknown(self, key: str, known: tuple[str, ...]) -> ConfigError:
        name = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self.where.error(
            key, f"not a {self.tool} data key tokenmill knows{hint}; known: {', '.join(known)}"
        )

    def section(self, data: dict[str, Any], known: tuple[str, ...], default_tokenizer: str) -> dict[str, Any]:
        """The data section, every key checked against ``known``, and the native recipe begun with its
        tokenizer (a path beside the file, or a name as written; the tool's default when absent)."""
        section = data["data"]
        for key in section:
            if key not in known:
                raise self.unknown(f"data.{key}", known)
        tok = self.string("data.tokenizer", section.get("tokenizer", default_tokenizer))
        default = "" if "tokenizer" in section else f" ({self.tool}'s default)"
        self.note("data.tokenizer", f"tokenizer {tok}{default}")
        return {"tokenizer": self.path(tok) if os.path.exists(self.path(tok)) else tok}

    def path(self, value: str) -> str:
        """A path as the tool means it: relative to the config file's folder (tokenmill's rule for recipes)."""
        from tokenmill.recipe.source import resolve_path

        return resolve_path(value, self.base)

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.where.error(key, f"must be a string, got {value!r}")
        return value

    def integer(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.where.error(key, f"must be an integer, got {value!r}")
        return value

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.where.error(key, f"must be a mapping, got {value!r}")
        return dict(value)

    def strings(self, key: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.where.error(key, f"must be a list of paths or URLs, got {value!r}")
        return list(value)
