"""Which format and which compression a URL holds, decided from its name.

Names are the only cheap signal for a URL that may live in a bucket: sniffing bytes would cost a request per file
before any work is planned. ``--input-format`` (the ``override``) covers files whose names lie.
"""

from __future__ import annotations

from ..errors import ConfigError

FORMATS = ("jsonl", "parquet", "csv", "cbor", "text")

# suffix -> codec name understood by both fsspec and :mod:`tokenmill.sources.compression`
COMPRESSIONS = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".bz2": "bz2",
    ".xz": "xz",
}

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".cbor": "cbor",
}

# names accepted by ``--input-format`` besides the canonical ones
_ALIASES = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet", "tsv": "csv", "txt": "text"}
INPUT_FORMAT_ALIASES = tuple(_ALIASES)


def _name(url: str) -> str:
    """The last path component, lower-cased, without an http query or fragment."""
    name = url.split("?", 1)[0].split("#", 1)[0] if "://" in url else url
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def infer_compression(url: str) -> str | None:
    """The codec of ``url`` from its last suffix (``gzip``, ``zstd``, ``bz2``, ``xz``), or None."""
    name = _name(url)
    for suffix, codec in COMPRESSIONS.items():
        if name.endswith(suffix):
            return codec
    return None


def strip_compression(url: str) -> str:
    """The file name without its compression suffix: ``a.jsonl.gz`` -> ``a.jsonl``."""
    name = _name(url)
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def detect_format(url: str, override: str | None = None) -> str:
    """``jsonl | parquet | csv | cbor | text`` for ``url``; unknown extensions are read as plain text.

    Text is the fallback because a code or prose corpus (``.py``, ``.md``, ``.rst``, ...) has countless
    extensions, while every structured format has a few well-known ones.
    """
    if override is not None:
        fmt = _ALIASES.get(override.lower(), override.lower())
        if fmt not in FORMATS:
            raise ConfigError(
                f"unknown input format {override!r}: choose one of {', '.join(FORMATS)} "
                f"(or an alias: {', '.join(sorted(_ALIASES))})"
            )
        return fmt
    name = strip_compression(url)
    dot = name.rfind(".")
    return _EXTENSIONS.get(name[dot:], "text") if dot >= 0 else "text"


def csv_delimiter(url: str) -> str:
    """Tab for ``.tsv`` names, comma otherwise."""
    return "\t" if strip_compression(url).endswith(".tsv") else ","
