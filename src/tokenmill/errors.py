"""Error types of tokenmill.

Every error a user can cause is a :class:`TokenmillError`, so a command line or a training script can catch one
type and print a message that says what to do. Errors about input data carry where the bad data is (file, line or
row, field) because "invalid JSON" alone sends the user hunting through terabytes.
"""

from __future__ import annotations


class TokenmillError(Exception):
    """Base class of every error tokenmill raises on purpose."""


class ConfigError(TokenmillError):
    """An option, a YAML config or a recipe is invalid."""


class TokenizerError(TokenmillError):
    """A tokenizer cannot be loaded, or does not match what a cache or model expects."""


class CacheError(TokenmillError):
    """A token cache is missing, incomplete, or was built in a way that conflicts with the request."""


class StateError(TokenmillError):
    """A saved iterator state does not fit the dataset or pipeline it is loaded into."""


class SourceError(TokenmillError):
    """A source file cannot be listed, opened or read.

    ``reason`` is a short machine-readable code (``"malformed_json"``, ``"missing_field"``, ...); it is the key
    under which ``--on-error skip`` counts the record in the manifest.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
        reason: str = "unreadable",
    ) -> None:
        self.path = path
        self.line = line
        self.row = row
        self.field = field
        self.reason = reason
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path or "<unknown source>"
        if self.line is not None:
            where += f", line {self.line}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.detail}"

    def __reduce__(self):  # keeps the fields (and a reader's resume position) across a process boundary
        return (
            _rebuild_source_error,
            (type(self), self.detail, self.path, self.line, self.row, self.field, self.reason),
            {"position": self.position} if hasattr(self, "position") else None,
        )


class RecordError(SourceError):
    """One record is bad (malformed, a missing or mistyped field, empty); ``--on-error skip`` may skip it."""


def _rebuild_source_error(cls, message, path, line, row, field, reason):
    return cls(message, path=path, line=line, row=row, field=field, reason=reason)


# URL protocol -> the tokenmill extra whose package gives fsspec that filesystem
PROTOCOL_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
    "hf": "hf",
}


def missing_filesystem(url: str, exc: ImportError) -> SourceError:
    """The one-line error for a URL whose fsspec filesystem package is not installed.

    fsspec raises a bare ``ImportError`` ("Please install gcsfs to access Google Storage") from deep inside
    its registry; the user needs the protocol and the extra (or package) that brings it.
    """
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    extra = PROTOCOL_EXTRAS.get(protocol)
    hint = str(exc).strip().rstrip(".") or f"no filesystem for {protocol}://"
    todo = f"pip install 'tokenmill[{extra}]'" if extra else "install the package fsspec names above"
    return SourceError(f"{protocol}:// URLs need a package that is not installed ({hint}): {todo}", path=url)
