"""Helpers shared by the pipeline tests: items as plain Python, a run to a list, and a resume check at one position
through the shipped checker (tokenmill.testing.assert_resumes)."""

from __future__ import annotations

import numpy as np

from tokenmill.pipeline import Pipeline
from tokenmill.testing import assert_resumes as check_resumes


def plain(x):
    """Items as comparable plain Python (numpy arrays -> lists)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def run(pipe: Pipeline, state=None, limit: int = 10_000) -> list:
    with pipe.iter(state) as it:
        out = []
        for item in it:
            out.append(plain(item))
            if len(out) >= limit:
                break
        return out


def assert_resumes(pipe: Pipeline, k: int, limit: int = 2_000) -> dict:
    """Resume after ``k`` items (the last item when there are fewer) and compare the rest, items and states, with
    the uninterrupted run; returns the state saved after ``k`` items."""
    items = check_resumes(pipe, max_items=limit, checkpoints=[k])
    with pipe.iter() as it:
        for _ in range(min(k, len(items))):
            next(it)
        return it.state_dict()
