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
from typing import Any

import fsspec
import numpy as np

_ENDPOINT_KEYS = ("endpoint", "aws_endpoint", "endpoint_url", "aws_endpoint_url")


def fsspec_options(storage_options: dict[str, str] | None, uri: str) -> dict[str, Any]:
    """Translate Lance-style storage options (``aws_access_key_id``, ``endpoint``...) to fsspec/s3fs ones."""
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
        elif k in _ENDPOINT_KEYS:
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
    endpoint = next((opts[keys[k]] for k in _ENDPOINT_KEYS if k in keys), None)
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
    fs, path = fsspec.core.url_to_fs(uri, **fsspec_options(storage_options, uri))
    return fs, path


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
    with np.load(io.BytesIO(read_bytes(uri, storage_options)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


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


def local_copy(uri: str, storage_options: dict[str, str] | None = None) -> str:
    """A local path for ``uri``: itself when local, else a temporary copy of the file or folder (tokenizer files
    are small, and the tokenizer libraries read local files only). Anything that is not a URL (a hub name,
    ``bytes``) comes back unchanged."""
    if is_local(uri):
        return local_path(uri)
    import tempfile

    fs, path = get_fs(uri, storage_options)
    local = tempfile.mkdtemp(prefix="tokenmill-")
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", local + "/", recursive=True)
        return local
    target = os.path.join(local, path.rstrip("/").rsplit("/", 1)[-1])
    fs.get(path, target)
    return target
