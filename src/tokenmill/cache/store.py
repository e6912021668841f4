"""Small file operations on the cache folder, local or in object storage.

The cache's side files (manifest, ledger, index) are small JSON/npy objects written whole. Writing them through
one place keeps the atomicity rule in one spot: a local file is written to a temporary name and renamed; an
object store PUT is atomic by itself.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import numpy as np

from tokenmill.errors import CacheError
from tokenmill.sources.urls import ENDPOINT_KEYS, fsspec_options, local_copy, url_to_fs


def resolve_storage_options(storage_options: dict[str, str] | None, uri: str) -> dict[str, str] | None:
    """Lance-style options for ``uri``, completed where Lance needs more than the environment gives it.

    Lance reads credentials, region and endpoint from the usual ``AWS_*`` variables itself, but refuses a plain
    ``http://`` endpoint (MinIO, moto, a local gateway) unless ``allow_http`` is set: naming such an endpoint, in
    an option or in ``AWS_ENDPOINT_URL``, is taken as that permission.
    """
    if not uri.startswith(("s3://", "s3a://")):
        return storage_options
    opts = dict(storage_options or {})
    keys = {k.lower(): k for k in opts}
    endpoint = next((opts[keys[k]] for k in ENDPOINT_KEYS if k in keys), None)
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")
    allowed = "allow_http" in keys or "aws_allow_http" in keys or "AWS_ALLOW_HTTP" in os.environ
    if endpoint and str(endpoint).startswith("http://") and not allowed:
        opts["allow_http"] = "true"
    return opts or storage_options


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def join(uri: str, *parts: str) -> str:
    out = uri.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def get_fs(uri: str, storage_options: dict[str, str] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``uri`` (a missing package for its protocol is one line naming the extra)."""
    return url_to_fs(uri, fsspec_options(storage_options, uri))


def exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    fs, path = get_fs(uri, storage_options)
    return fs.exists(path)


def write_bytes(uri: str, data: bytes, storage_options: dict[str, str] | None = None) -> None:
    """Write a whole object atomically (temporary name + rename locally; one PUT remotely)."""
    if is_local(uri):
        path = local_path(uri)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    fs, path = get_fs(uri, storage_options)
    fs.pipe_file(path, data)


def read_bytes(uri: str, storage_options: dict[str, str] | None = None) -> bytes:
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    fs, path = get_fs(uri, storage_options)
    return fs.cat_file(path)


def write_json(uri: str, obj: Any, storage_options: dict[str, str] | None = None) -> None:
    write_bytes(uri, json.dumps(obj, indent=1, sort_keys=False).encode(), storage_options)


def read_json(uri: str, storage_options: dict[str, str] | None = None) -> Any:
    return json.loads(read_bytes(uri, storage_options))


def write_npz(uri: str, storage_options: dict[str, str] | None = None, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(uri, buf.getvalue(), storage_options)


def read_npz(uri: str, storage_options: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``; a damaged one (truncated, bad CRC) is a ``ValueError`` naming it."""
    try:
        with np.load(io.BytesIO(read_bytes(uri, storage_options)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{uri} is damaged: {exc}") from None


def remove(uri: str, storage_options: dict[str, str] | None = None, recursive: bool = False) -> None:
    if is_local(uri):
        import shutil

        path = local_path(uri)
        if os.path.isdir(path):
            if recursive:
                shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        return
    fs, path = get_fs(uri, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def list_names(uri: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """Base names of the entries directly under ``uri`` (empty when it does not exist)."""
    if is_local(uri):
        path = local_path(uri)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    fs, path = get_fs(uri, storage_options)
    if not fs.exists(path):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


__all__ = [
    "exists",
    "fsspec_options",
    "get_fs",
    "is_local",
    "join",
    "list_names",
    "local_copy",
    "local_path",
    "read_bytes",
    "read_json",
    "read_npz",
    "remove",
    "resolve_storage_options",
    "write_bytes",
    "write_json",
    "write_npz",
]


@contextmanager
def lance_reads(cache: str) -> Iterator[None]:
    """Lance's errors about missing or damaged data files, as a CacheError that says what to do."""
    try:
        yield
    except BaseException as exc:
        # pyarrow's ArrowInvalid is a ValueError; a panic in Lance's decoder (damaged bytes) is a pyo3
        # PanicException, which derives from BaseException
        if (
            not isinstance(exc, (OSError, RuntimeError, ValueError))
            and type(exc).__name__ != "PanicException"
        ):
            raise
        raise CacheError(
            f"{cache}: cannot read the cache's Lance data ({type(exc).__name__}: {str(exc)[:300]}); data files are "
            f"missing or damaged: run `tokenmill verify {cache}`, and rebuild the cache (prepare with --overwrite)"
        ) from None
