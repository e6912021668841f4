"""tokenmill: raw text to training-ready token batches, fast, exactly resumable, laptop to cluster."""

import os as _os

# Lance logs a warning for every first write into a new dataset folder; it is expected in a parallel prepare.
_os.environ.setdefault("LANCE_LOG", "error")

__version__ = "0.1.0"
