"""Turning user patterns into a sorted list of file URLs, and opening a URL.

Every URL goes through fsspec, so a local path, ``file://``, ``s3://``, ``gs://``, ``http(s)://`` and ``hf://``
share one code path. Brace expansion happens before globbing because object stores have no braces of their own:
``train-{00..31}.jsonl.gz`` becomes 32 names that are each checked, so a missing shard is an error instead of a
silently smaller corpus.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from ..errors import SourceError, missing_filesystem
from .detect import infer_compression

MAX_EXPANSIONS = 1_000_000

_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_ALPHA_RANGE = re.compile(r"^([a-zA-Z])\.\.([a-zA-Z])(?:\.\.(-?\d+))?$")


# -- brace expansion --------------------------------------------------------------------------------------------
def _matching_brace(s: str, start: int) -> int:
    depth = 0
    for i in range(start, len(s)):
        c = s[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _split_top_level(body: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for i, c in enumerate(body):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(body[last:i])
            last = i + 1
    parts.append(body[last:])
    return parts


def _padded(token: str) -> bool:
    digits = token.lstrip("-")
    return len(digits) > 1 and digits.startswith("0")


def _sequence(body: str) -> list[str] | None:
    """The items of a ``a..b[..step]`` range body, or None when ``body`` is not a range."""
    m = _RANGE.match(body)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        step = abs(int(m.group(3) or 1)) or 1
        width = max(len(m.group(1)), len(m.group(2))) if _padded(m.group(1)) or _padded(m.group(2)) else 0
        values = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
        if len(values) > MAX_EXPANSIONS:
            raise SourceError(f"the range {{{body}}} has {len(values)} items (more than {MAX_EXPANSIONS})")
        return [f"{v:0{width}d}" if width else str(v) for v in values]
    m = _ALPHA_RANGE.match(body)
    if m:
        a, b = ord(m.group(1)), ord(m.group(2))
        step = abs(int(m.group(3) or 1)) or 1
        values = range(a, b + 1, step) if a <= b else range(a, b - 1, -step)
        return [chr(v) for v in values]
    return None


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``{a,b}``, ``{00..31}`` (zero padding kept), ``{1..9..2}``, ``{a..e}``, nested.

    A brace pair with neither a top-level comma nor a range (``{x}``, ``{}``) stays literal, as in bash.
    Order follows bash: ``{a,b}{1,2}`` gives ``a1 a2 b1 b2``.
    """
    i = 0
    while True:
        start = pattern.find("{", i)
        if start < 0:
            return [pattern]
        end = _matching_brace(pattern, start)
        if end < 0:
            return [pattern]
        body = pattern[start + 1 : end]
        alternatives = _split_top_level(body)
        options = alternatives if len(alternatives) > 1 else _sequence(body)
        if options is None:
            i = start + 1
            continue
        prefix = pattern[:start]
        suffixes = expand_braces(pattern[end + 1 :])
        out = [
            prefix + head + tail for option in options for head in expand_braces(option) for tail in suffixes
        ]
        if len(out) > MAX_EXPANSIONS:
            raise SourceError(f"{pattern!r} expands to more than {MAX_EXPANSIONS} names")
        return out


# -- fsspec -----------------------------------------------------------------------------------------------------
ENDPOINT_KEYS = ("endpoint", "aws_endpoint", "endpoint_url", "aws_endpoint_url")


def fsspec_options(storage_options: dict[str, Any] | None, uri: str) -> dict[str, Any]:
    """Translate Lance-style storage options (``aws_access_key_id``, ``endpoint``...) to fsspec/s3fs ones.

    Users give one set of options (Lance's names, as the cache is written by Lance); sources and the cache's
    side files go through fsspec, which names them differently for S3. Other protocols pass through.
    """
    if not storage_options:
        return {}
    if not uri.startswith(("s3://", "s3a://")):
        return dict(storage_options)
    opts: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    for key, value in storage_options.items():
        k = key.lower()
        if k in ("aws_access_key_id", "access_key_id"):
            opts["key"] = value
        elif k in ("aws_secret_access_key", "secret_access_key"):
            opts["secret"] = value
        elif k in ("aws_session_token", "session_token"):
            opts["token"] = value
        elif k in ENDPOINT_KEYS:
            client_kwargs["endpoint_url"] = value
        elif k in ("region", "aws_region", "aws_default_region"):
            client_kwargs["region_name"] = value
        elif k in ("allow_http", "aws_allow_http"):
            continue
        else:
            opts[key] = value
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    return opts


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None):
    """``(filesystem, path)`` for ``url`` (fsspec's resolution; ``storage_options`` in fsspec's names).

    A protocol whose package is missing (``gs://`` without gcsfs) is one line naming the extra to install; an
    unknown protocol is one line too.
    """
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as e:
        raise missing_filesystem(url, e) from None
    except ValueError as e:
        raise SourceError(f"cannot open this URL: {e}", path=url, reason="unreadable") from None


def local_copy(uri: str, storage_options: dict[str, Any] | None = None) -> str:
    """A local path for ``uri``: itself when local, else a temporary copy of the file or folder.

    For small things that libraries read from local files only (tokenizer files, a YAML recipe). Anything that
    is not a URL (a hub name, ``bytes``) comes back unchanged. ``storage_options`` are Lance-style names.
    """
    if "://" not in uri:
        return uri
    if uri.startswith("file://"):
        return uri[len("file://") :]
    import tempfile

    fs, path = url_to_fs(uri, fsspec_options(storage_options, uri))
    local = tempfile.mkdtemp(prefix="tokenmill-")
    try:
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", local + "/", recursive=True)
            return local
        target = os.path.join(local, path.rstrip("/").rsplit("/", 1)[-1])
        fs.get(path, target)
    except FileNotFoundError:
        raise SourceError("file not found", path=uri, reason="unreadable") from None
    except PermissionError as e:
        raise SourceError(f"permission denied: {e}", path=uri, reason="unreadable") from None
    return target


def _protocol(url: str) -> str | None:
    """The protocol written in ``url`` (``s3``, ``file``, ...), or None for a plain local path."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://", url)
    return m.group(1) if m else None


def _has_magic(path: str, protocol: str | None) -> bool:
    if protocol in ("http", "https"):  # '?' starts a query string there
        return "*" in path
    return any(c in path for c in "*?[")


def _hidden(relative: str) -> bool:
    """Files a directory source skips: names starting with '.' or '_' (``_SUCCESS``, ``.crc``, as Spark/pyarrow)."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _walk(fs, directory: str) -> list[str]:
    root = directory.rstrip("/")
    files = fs.find(root, detail=False)
    return sorted(f for f in files if not _hidden(f[len(root) :]))


def _files_of(pattern: str, storage_options: dict[str, Any] | None) -> list[str]:
    protocol = _protocol(pattern)
    fs, path = url_to_fs(pattern, storage_options)
    if _has_magic(path, protocol):
        found = fs.glob(path, detail=True)
        files: list[str] = []
        for name, info in found.items():
            if info.get("type") == "directory":
                files.extend(_walk(fs, name))
            else:
                files.append(name)
    else:
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return []
        files = _walk(fs, path) if info.get("type") == "directory" else [path]
    files = sorted(set(files))
    return [_restore_protocol(fs, f, protocol) for f in files]


def _restore_protocol(fs, path: str, protocol: str | None) -> str:
    if "://" in path:  # http(s) listings are full URLs already
        return path
    if protocol is None:
        return path
    if protocol == "file":
        return "file://" + path
    return f"{protocol}://{path.lstrip('/')}"


def expand_urls(
    patterns: str | os.PathLike | Iterable[str | os.PathLike], storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Every file named by ``patterns``, in a deterministic order, each once.

    Each pattern is brace-expanded; each expansion is globbed (``*``, ``?``, ``[..]``, ``**``), or, when it has
    no glob characters, checked to exist. Directories (given or matched) stand for the files below them,
    recursively, minus names starting with ``.`` or ``_``. Files are sorted within each expansion; patterns and
    brace alternatives keep their order; a file named twice is kept at its first place. Local paths come back as
    absolute plain paths, other URLs keep their protocol.

    Raises:
        SourceError: an expansion matches no file (the message names the expansion and its pattern).
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    out: list[str] = []
    seen: set[str] = set()
    for raw in patterns:
        pattern = os.fspath(raw)
        for expanded in expand_braces(pattern):
            files = _files_of(expanded, storage_options)
            if not files:
                origin = f" (from the pattern {pattern!r})" if expanded != pattern else ""
                raise SourceError(
                    f"no file matches this pattern{origin}; check the path and, for buckets, the credentials",
                    path=expanded,
                    reason="unreadable",
                )
            for f in files:
                if f not in seen:
                    seen.add(f)
                    out.append(f)
    return out


def open_raw(url: str, storage_options: dict[str, Any] | None = None):
    """The file's bytes as stored (no decompression), seekable; missing or forbidden files raise SourceError."""
    fs, path = url_to_fs(url, storage_options)
    try:
        return fs.open(path, "rb")
    except FileNotFoundError as e:
        raise SourceError("file not found", path=url, reason="unreadable") from e
    except IsADirectoryError as e:
        raise SourceError("is a directory, not a file", path=url, reason="unreadable") from e
    except PermissionError as e:
        raise SourceError(f"permission denied: {e}", path=url, reason="unreadable") from e


def open_url(
    url: str,
    mode: str = "rb",
    storage_options: dict[str, Any] | None = None,
    compression: str | None = "infer",
):
    """An fsspec file object for ``url``, decompressed per its suffix (``.gz``, ``.zst``/``.zstd``, ``.bz2``, ``.xz``).

    The caller closes it (or uses it in a ``with`` block). ``compression=None`` gives the stored bytes.
    """
    import fsspec

    if compression == "infer":
        compression = infer_compression(url)
    try:
        return fsspec.open(url, mode, compression=compression, **(storage_options or {})).open()
    except ImportError as e:
        raise missing_filesystem(url, e) from None
    except FileNotFoundError as e:
        raise SourceError("file not found", path=url, reason="unreadable") from e
    except IsADirectoryError as e:
        raise SourceError("is a directory, not a file", path=url, reason="unreadable") from e
    except PermissionError as e:
        raise SourceError(f"permission denied: {e}", path=url, reason="unreadable") from e
