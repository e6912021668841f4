"""What ``labels`` means in every batch tokenmill yields, and the one value that marks an untrained position.

``IGNORE_INDEX`` (-100) is the value PyTorch's ``cross_entropy`` and Hugging Face's losses skip by default.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100


def aligned_labels(labels: np.ndarray) -> np.ndarray:
    """Labels in the Hugging Face convention (aligned with ``input_ids``; the model shifts them itself).

    ``aligned[..., t] = labels[..., t - 1]``, -100 at ``t = 0``: the same targets, except the last input's (the
    model has no logit position left for it).
    """
    out = np.full_like(labels, IGNORE_INDEX)
    out[..., 1:] = labels[..., :-1]
    return out
