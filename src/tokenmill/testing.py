"""Checks users can run on their own resumable stages: :func:`assert_resumes`.

A stage that resumes *almost* right is worse than one that cannot resume: a training run restarted from a
checkpoint silently sees some samples twice or never. The check here runs a description once without
interruption, saving the state after every item, then restores from a chosen set of those states (the start,
mid-epoch, each side of every epoch end, across epochs, the end) and asserts that each resumed run yields exactly
the rest of the uninterrupted one, with the same states. It also asserts what the contract of
:mod:`tokenmill.state` promises about the states themselves: plain JSON, left unmodified by ``iter``, and of one
structure (the same keys) at every position.

    from tokenmill.testing import assert_resumes
    assert_resumes(my_pipeline, max_items=300, epoch_length=100)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tokenmill.state import Resumable, State

__all__ = ["assert_resumes", "items_equal", "state_structure"]


def items_equal(a: Any, b: Any) -> bool:
    """Deep equality of items: dicts, lists, tuples, numpy arrays and torch tensors (by value, dtype-blind)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(items_equal(a[k], b[k]) for k in a)
    if _is_array(a) or _is_array(b):
        import numpy as np

        x, y = _to_numpy(a), _to_numpy(b)
        return x.shape == y.shape and bool(np.array_equal(x, y))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(items_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _to_numpy(x: Any) -> Any:
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def state_structure(state: Any) -> Any:
    """The shape of a state: dict keys, recursively; a list is the list of its items' shapes (its length may vary:
    items received out of order, active files); numbers, strings and booleans are leaves. None fits any shape (a
    position not yet known, such as "the file's start", or the state of a pipeline that is not being read)."""
    if isinstance(state, dict):
        return {k: state_structure(v) for k, v in sorted(state.items())}
    if isinstance(state, list):
        return [state_structure(v) for v in state]
    return None if state is None else "leaf"


def _structure_fits(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_structure_fits(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return all(_structure_fits(x, y) for x, y in zip(a, b))
    return a == b


def _plain_json(state: Any, where: str) -> State:
    try:
        text = json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"the state {where} is not plain JSON ({exc}): {state!r}") from None
    again = json.loads(text)
    if again != state:
        raise AssertionError(
            f"the state {where} changes in a JSON round trip (tuples, non-string keys?): {state!r} -> {again!r}"
        )
    return again


def _default_checkpoints(n: int, finished: bool, epoch_length: int | None, rng: random.Random) -> list[int]:
    points = {0, 1, n // 2, n - 1, n}
    if epoch_length:
        for end in range(epoch_length, n + 1, epoch_length):
            points.update({end - 1, end, end + 1, end + epoch_length // 2})
    if n <= 24:
        points.update(range(n + 1))
    points.update(rng.randrange(n + 1) for _ in range(4))
    if not finished:
        points.discard(n)  # the run was cut at max_items: nothing is known past it
    return sorted(p for p in points if 0 <= p <= n)


def assert_resumes(
    description: Resumable[Any],
    *,
    max_items: int = 200,
    epoch_length: int | None = None,
    checkpoints: Iterable[int] | None = None,
    equal: Callable[[Any, Any], bool] = items_equal,
    compare_states: bool = True,
    seed: int = 0,
) -> list[Any]:
    """Assert that ``description`` resumes exactly from any saved state; returns the uninterrupted items.

    ``description.iter(state=None)`` must return an iterator with ``state_dict()`` and ``close()``. The
    uninterrupted run is read for up to ``max_items`` items (an endless description needs this bound; give one that
    crosses at least one epoch end to test across epochs). ``epoch_length`` (items per epoch, when known) adds
    checkpoints on each side of every epoch end. ``checkpoints`` replaces the chosen positions (item counts).
    ``equal`` compares two items. With ``compare_states`` the resumed run must also report the same state as the
    uninterrupted one after every item, so a resumed run can be resumed again. A checkpoint past the items read is
    taken at the last one (so random positions from hypothesis need no bound).
    """
    items, states, finished = _uninterrupted(description, max_items)
    n = len(items)
    structure = state_structure(states[0])
    for i, state in enumerate(states):
        if not _structure_fits(structure, state_structure(state)):
            raise AssertionError(
                f"the state's structure changes after {i} items:\n  at 0: {structure}\n  at {i}: "
                f"{state_structure(state)}\n(keep the same keys at every position: a checkpoint format must not "
                "depend on when it was written)"
            )
    rng = random.Random(seed)
    points = sorted({min(int(k), n) for k in checkpoints}) if checkpoints is not None else None
    for k in points or _default_checkpoints(n, finished, epoch_length, rng):
        if k < 0:
            raise AssertionError(f"checkpoint {k} is negative")
        _check_resume(description, k, items, states, finished, equal, compare_states)
    return items


def _uninterrupted(description: Resumable[Any], max_items: int) -> tuple[list[Any], list[State], bool]:
    items: list[Any] = []
    it = description.iter(state=None)
    try:
        states = [_plain_json(it.state_dict(), "before the first item")]
        finished = True
        while len(items) < max_items:
            try:
                item = next(it)
            except StopIteration:
                break
            items.append(item)
            states.append(_plain_json(it.state_dict(), f"after {len(items)} items"))
        else:
            finished = False
    finally:
        it.close()
        it.close()  # close is idempotent
    return items, states, finished


def _check_resume(
    description: Resumable[Any],
    k: int,
    items: list[Any],
    states: list[State],
    finished: bool,
    equal: Callable[[Any, Any], bool],
    compare_states: bool,
) -> None:
    saved = json.loads(json.dumps(states[k]))
    it = description.iter(state=saved)
    try:
        if saved != states[k]:
            raise AssertionError(f"iter(state) modified the state it was given (resume after {k} items)")
        for i in range(k, len(items)):
            try:
                got = next(it)
            except StopIteration:
                raise AssertionError(
                    f"resumed after {k} items, the run ended after item {i}; the uninterrupted run had "
                    f"{len(items)} items"
                ) from None
            if not equal(got, items[i]):
                raise AssertionError(
                    f"resumed after {k} items, item {i} differs:\n  resumed:       {_short(got)}\n"
                    f"  uninterrupted: {_short(items[i])}"
                )
            if compare_states:
                now = it.state_dict()
                if now != states[i + 1]:
                    raise AssertionError(
                        f"resumed after {k} items, the state after item {i} differs:\n  resumed:       {now}\n"
                        f"  uninterrupted: {states[i + 1]}"
                    )
        if finished:
            extra = next(it, _MISSING)
            if extra is not _MISSING:
                raise AssertionError(
                    f"resumed after {k} items, the run yields more than the uninterrupted {len(items)}: {_short(extra)}"
                )
    finally:
        it.close()


_MISSING = object()


def _short(item: Any, limit: int = 300) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[:limit] + "..."
