"""Sources: URLs (fsspec, brace expansion, globs) and file formats, read as resumable streams of records.

Public API: :func:`expand_urls`, :func:`open_url`, :func:`detect_format`, :func:`read_records` (yielding
:class:`SourceRecord`), :func:`plan_units` (:class:`WorkUnit`), :func:`read_hf` (:class:`HFSource`). See ``docs/sources.md``.
"""

from .detect import FORMATS, detect_format, infer_compression
from .hf import HFSource, read_hf
from .reader import read_records
from .records import SourceRecord
from .units import FilePart, WorkUnit, plan_units
from .urls import expand_braces, expand_urls, open_url

__all__ = [
    "FORMATS",
    "FilePart",
    "HFSource",
    "SourceRecord",
    "WorkUnit",
    "detect_format",
    "expand_braces",
    "expand_urls",
    "infer_compression",
    "open_url",
    "plan_units",
    "read_hf",
    "read_records",
]
