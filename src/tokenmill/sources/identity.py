"""Source identity: what a source was when a cache read it, so a later run can tell that it changed.

A cache's ledger records one :class:`SourceIdentity` per source (``ledger/plan.json``, key ``identities``). A
rerun (resume, append, or a finished cache asked again) compares them with the sources as they are now and
refuses to mix old and new content: committed byte ranges of a file that was rewritten would otherwise be reused
silently (documents lost or doubled).

The record is generic so that any kind of source plugs in: ``kind`` names who made it and ``fields`` holds what
identifies that kind. Files (local or in object stores) record size, modification time and, where the store has
them, the ETag and object version; other kinds register an identifier with :func:`register_identifier`
(a Hugging Face dataset: name, config, split, revision, arguments).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenmill.errors import missing_filesystem

# object-store metadata keys that identify a version of an object (fsspec's ``info()`` spells them per store)
_VERSION_KEYS = {
    "etag": ("ETag", "etag", "md5Hash", "content_md5"),
    "version": ("VersionId", "version_id", "generation", "version"),
}


@dataclass(frozen=True)
class SourceIdentity:
    """One source as it was read: ``url``, the ``kind`` of source and the ``fields`` that identify it."""

    url: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "kind": self.kind, **self.fields}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceIdentity:
        rest = {k: v for k, v in data.items() if k not in ("url", "kind")}
        return cls(str(data["url"]), str(data.get("kind", "file")), rest)

    def changes(self, now: SourceIdentity | None) -> list[str]:
        """What differs between this record and ``now`` (``None``: the source is gone), in words."""
        if now is None:
            return ["no longer exists"]
        keys = sorted(set(self.fields) | set(now.fields))
        return [
            f"{k} {self.fields.get(k)!r} -> {now.fields.get(k)!r}"
            for k in keys
            if self.fields.get(k) != now.fields.get(k)
        ]


# (url, spec, storage_options) -> the identity now, or None when the source is gone. ``spec`` is what the kind
# needs besides the URL (a Hugging Face source: its load_dataset arguments); files need none.
Identifier = Callable[[str, Any, "dict[str, Any] | None"], "SourceIdentity | None"]
_IDENTIFIERS: dict[str, Identifier] = {}


def register_identifier(kind: str, identifier: Identifier) -> None:
    """Make :func:`identify` of sources of ``kind`` call ``identifier(url, spec, storage_options)``."""
    _IDENTIFIERS[kind] = identifier


def identify(
    kind: str, url: str, spec: Any = None, storage_options: dict[str, Any] | None = None
) -> SourceIdentity | None:
    """The identity of a source now (None: it no longer exists). A kind nobody registered has no identity
    to check, which :func:`can_identify` tells."""
    return _IDENTIFIERS[kind](url, spec, storage_options)


def can_identify(kind: str) -> bool:
    return kind in _IDENTIFIERS


def file_identity(
    url: str, spec: Any = None, storage_options: dict[str, Any] | None = None
) -> SourceIdentity | None:
    """Size and modification time of a file; for object stores also its ETag and version where the store has
    them. None when the file does not exist."""
    if "://" not in url or url.startswith("file://"):
        path = url.removeprefix("file://")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return SourceIdentity(url, "file", {"size": st.st_size, "mtime_ns": st.st_mtime_ns})
    from tokenmill.sources.urls import url_to_fs

    try:
        fs, path = url_to_fs(url, storage_options)
        info = fs.info(path)
    except FileNotFoundError:
        return None
    except ImportError as exc:
        raise missing_filesystem(url, exc) from None
    fields: dict[str, Any] = {"size": int(info.get("size") or 0)}
    mtime = info.get("LastModified") or info.get("mtime") or info.get("updated") or info.get("last_modified")
    if mtime is not None:
        fields["mtime"] = str(mtime)
    for name, keys in _VERSION_KEYS.items():
        for key in keys:
            if info.get(key) not in (None, ""):
                fields[name] = str(info[key]).strip('"')
                break
    return SourceIdentity(url, "file", fields)


def hf_identity(url: str, spec: Any = None, storage_options: dict[str, Any] | None = None) -> SourceIdentity:
    """A Hugging Face dataset: what was asked for, and what of its content can be seen locally
    (:func:`tokenmill.sources.hf.hf_identity`)."""
    from tokenmill.sources.hf import hf_identity as identity_of

    return SourceIdentity(url, "hf", identity_of(spec or {"name": url}))


register_identifier("file", file_identity)
register_identifier("hf", hf_identity)


def describe_changes(changed: dict[str, list[str]], limit: int = 10) -> str:
    """``changed`` (url -> changes) as lines for an error message, at most ``limit`` sources named."""
    lines = [f"  {url}: {', '.join(what)}" for url, what in list(changed.items())[:limit]]
    if len(changed) > limit:
        lines.append(f"  ... and {len(changed) - limit} more")
    return "\n".join(lines)
