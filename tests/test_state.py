"""The one resume contract (tokenmill.state) and its shipped checker (tokenmill.testing.assert_resumes)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from tokenmill.pipeline import Pipeline
from tokenmill.state import ChildIterator, Prefetch, PrefetchIterator, ResumableIterator, nest, with_states
from tokenmill.testing import assert_resumes, state_structure


class CountIterator(ResumableIterator[int]):
    """0, 1, ..., n-1, resumable by position: the smallest stage a user writes."""

    def __init__(self, n: int, state: dict | None) -> None:
        self.n = n
        self.pos = 0 if state is None else int(state["pos"])
        self.released = 0

    def next(self) -> int:
        if self.pos >= self.n:
            raise StopIteration
        self.pos += 1
        return self.pos - 1

    def get_state(self) -> dict:
        return {"pos": self.pos}

    def release(self) -> None:
        self.released += 1


@dataclasses.dataclass(frozen=True)
class Count:
    n: int

    def iter(self, state=None):
        return CountIterator(self.n, state)


class Doubled(ChildIterator[int]):
    def next(self) -> int:
        return 2 * next(self.parent)


@dataclasses.dataclass(frozen=True)
class Double:
    parent: Count

    def iter(self, state=None):
        return Doubled(self.parent.iter(state))


def test_a_users_stage_passes_and_close_is_written_once():
    assert assert_resumes(Count(30)) == list(range(30))
    assert assert_resumes(Double(Count(7))) == [0, 2, 4, 6, 8, 10, 12]
    it = Double(Count(3)).iter()
    it.close()
    it.close()
    assert it.parent.released == 1  # closing the child closes the parent, once


@dataclasses.dataclass(frozen=True)
class Forgetful:
    """Forgets how many items were handed out when the position passes 5: resumes wrongly there."""

    def iter(self, state=None):
        it = CountIterator(12, state)
        it.get_state = lambda: {"pos": min(it.pos, 5)}  # type: ignore[method-assign]
        return it


@dataclasses.dataclass(frozen=True)
class Reshaping:
    """A state whose keys change with the position: refused, a checkpoint format must not depend on timing."""

    def iter(self, state=None):
        it = CountIterator(8, state)
        it.get_state = lambda: {"pos": it.pos} if it.pos < 4 else {"pos": it.pos, "late": True}  # type: ignore[method-assign]
        return it


@dataclasses.dataclass(frozen=True)
class Tupled:
    def iter(self, state=None):
        it = CountIterator(4, state)
        it.get_state = lambda: {"pos": (it.pos,)}  # type: ignore[method-assign]
        return it


@dataclasses.dataclass(frozen=True)
class Mutating:
    """Consumes the state it is given (pops its key): refused, a caller may resume twice from one checkpoint."""

    def iter(self, state=None):
        pos = None if state is None else {"pos": state.pop("pos")}
        return CountIterator(6, pos)


def test_the_checker_catches_wrong_resumes_changing_shapes_and_non_json():
    with pytest.raises(AssertionError, match="modified the state"):
        assert_resumes(Mutating())
    with pytest.raises(AssertionError, match="differs"):
        assert_resumes(Forgetful())
    with pytest.raises(AssertionError, match="structure changes"):
        assert_resumes(Reshaping())
    with pytest.raises(AssertionError, match="JSON round trip"):
        assert_resumes(Tupled())


def test_structure_ignores_list_lengths_and_unknown_positions():
    assert state_structure({"a": [1, {"x": 2}], "b": {"c": None}}) == {
        "a": ["leaf", {"x": "leaf"}],
        "b": {"c": None},
    }


def test_prefetch_hands_out_each_item_with_its_own_state():
    it = PrefetchIterator(Count(50).iter(), depth=4)
    for expected in range(20):
        assert next(it) == expected
        time.sleep(0.001 * (expected % 3))  # let the thread read ahead
        assert it.state_dict() == {"pos": expected + 1}
    it.close()
    assert it.parent.released == 1


def test_prefetch_applies_fn_in_order_with_workers_and_raises_where_it_failed():
    def slow_square(x: int) -> int:
        time.sleep(0.002 * (x % 4))
        if x == 9:
            raise ValueError("bad item 9")
        return x * x

    p = Prefetch(with_states(Count(20).iter()), {"pos": 0}, depth=3, fn=slow_square, workers=3)
    got = [p.next() for _ in range(9)]
    assert got == [x * x for x in range(9)] and p.state == {"pos": 9}
    with pytest.raises(ValueError, match="bad item 9"):
        p.next()
    p.close()


def test_closing_a_prefetch_mid_stream_leaves_no_thread():
    before = threading.active_count()
    for _ in range(5):
        it = Pipeline.from_sequence(list(range(1000)), repeat=True).prefetch(3).iter()
        next(it)
        it.close()
    assert threading.active_count() <= before


def test_pipelines_follow_the_contract():
    pipe = (
        Pipeline.from_sequence([{"x": i} for i in range(30)], repeat=True, shuffle=True)
        .shuffle(4)
        .prefetch(2)
    )
    assert_resumes(pipe, max_items=75, epoch_length=30)
    assert nest({"a": 1}, skip=2) == {"parent": {"a": 1}, "skip": 2}
    it = pipe.iter()
    next(it)
    again = pipe.iter(state_dict=it.state_dict())  # epochraft's name for the argument
    assert next(again) == next(it)


def _fails_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def test_an_error_releases_threads_while_its_traceback_is_still_held():
    """A user who catches the error keeps the traceback (and so the iterator) alive: the threads and the worker
    pool must stop when the error is raised, not when the traceback is collected."""
    import threading
    import time

    from tokenmill.pipeline import Pipeline

    before = {t.ident for t in threading.enumerate()}
    it = Pipeline.from_sequence(list(range(50))).parallel_map(_fails_on_seven, executor_type="thread").iter()
    with pytest.raises(ValueError, match="seven") as caught:
        for _ in it:
            pass
    deadline = time.time() + 5
    while time.time() < deadline:
        started = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not started:
            break
        time.sleep(0.02)
    assert not started, started
    assert caught.value is not None and it.state_dict() is not None
