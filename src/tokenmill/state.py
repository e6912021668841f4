"""The one resume contract of tokenmill, and the one prefetch that keeps it exact.

Every stateful piece of the library (pipeline stages, the loader's batches, mixtures, the torch views, the
trainer's data) follows one contract, the one the pipeline started with:

- a *description* is immutable (parameters and parent descriptions, nothing open); ``description.iter(state=None)``
  opens a fresh iterator, resumed from ``state`` when given, and never mutates ``state``;
- the *iterator* has ``state_dict()``, plain JSON (dicts, lists, strings, numbers, booleans, None) describing what
  the *consumer has received*, never what a background thread read ahead, and ``close()``, safe to call twice;
- a stage with a parent nests the parent's state under one key, ``"parent"``; a stateless stage returns its
  parent's state unchanged;
- the state's structure (its keys) is the same at every position, so a checkpoint format never depends on when it
  was written; :func:`tokenmill.testing.assert_resumes` checks all of this for any description, ours or a user's.

:class:`ResumableIterator` writes ``__next__``, ``state_dict``, ``close`` and the context manager once (as
torchdata.nodes' ``BaseNode`` does); a subclass writes ``next()``, ``get_state()`` and, when it holds files or
threads, ``release()``. :class:`Prefetch` is the only place where a background thread reads ahead: every item
travels together with the state that belongs to it, so "the state of the last item handed out" is written here
and nowhere else.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from tokenmill.errors import StateError

T = TypeVar("T")
U = TypeVar("U")
State = dict[str, Any]
#: the one key under which a stage nests its parent's state
PARENT = "parent"


class ResumableIterator(Iterator[T]):
    """An iterator with ``state_dict()`` and ``close()``: subclasses write ``next``, ``get_state``, ``release``."""

    _closed = False

    # --- to write ----------------------------------------------------------------------------------------
    def next(self) -> T:  # pragma: no cover - abstract
        """The next item, or ``StopIteration``."""
        raise NotImplementedError

    def get_state(self) -> State:  # pragma: no cover - abstract
        """The state after the last item returned by ``next`` (plain JSON; the caller must not mutate it)."""
        raise NotImplementedError

    def release(self) -> None:
        """Free files, threads and workers of this iterator (not its parent's); called once by ``close``."""

    # --- written once --------------------------------------------------------------------------------------
    def __iter__(self) -> ResumableIterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.next()
        except StopIteration:
            raise
        except BaseException:
            # an error ends the stream: release threads, pools and files now, not when the traceback (which
            # holds this iterator) is collected; state_dict() still gives the position before the failing item
            self.close()
            raise

    def state_dict(self) -> State:
        return self.get_state()

    def close(self) -> None:
        """Release what this iterator and its parents hold; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self.release()
        finally:
            for parent in self.parents():
                parent.close()

    def parents(self) -> tuple[ResumableIterator[Any], ...]:
        """The iterators this one reads from (closed with it)."""
        return ()

    def __enter__(self) -> ResumableIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a dropped iterator must not leak threads or open files
        try:
            self.close()
        except Exception:
            pass


class ChildIterator(ResumableIterator[T]):
    """An iterator reading one parent iterator; closing it closes the parent.

    ``get_state`` defaults to the parent's state unchanged (a stateless stage); a stateful stage returns
    ``nest(self.parent.state_dict(), own keys...)``.
    """

    def __init__(self, parent: ResumableIterator[Any]) -> None:
        self.parent = parent

    def parents(self) -> tuple[ResumableIterator[Any], ...]:
        return (self.parent,)

    def get_state(self) -> State:
        return self.parent.state_dict()


class Resumable(Protocol[T]):  # type: ignore[misc]
    """A description: ``iter(state)`` opens an iterator resumed from ``state`` (the beginning when None)."""

    def iter(self, state: State | None = None) -> ResumableIterator[T]: ...


# --- nesting ---------------------------------------------------------------------------------------------------
def nest(parent: State | None, **own: Any) -> State:
    """A stage's state: its own keys beside its parent's state under ``"parent"``."""
    return {PARENT: parent, **own}


def parent_state(state: State | None, stage: str) -> State | None:
    """The parent's part of a nested state, with a clear error when the state does not fit the stage."""
    if state is None:
        return None
    if not isinstance(state, dict) or PARENT not in state:
        raise StateError(
            f"state for stage {stage!r} has no 'parent' key: this state was saved by another pipeline"
        )
    return state[PARENT]


def require(state: State, key: str, stage: str) -> Any:
    """``state[key]``, or a :class:`StateError` naming the stage when the state lacks it."""
    try:
        return state[key]
    except (KeyError, TypeError):
        raise StateError(
            f"state for stage {stage!r} lacks {key!r}: this state was saved by another pipeline"
        ) from None


def with_states(iterator: ResumableIterator[T]) -> Iterator[tuple[T, State]]:
    """Each item of ``iterator`` together with the iterator's state right after it."""
    for item in iterator:
        yield item, iterator.state_dict()


# --- the one prefetch ------------------------------------------------------------------------------------------
class _End:
    __slots__ = ()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


def put_until_stopped(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` on a bounded queue, giving up once ``stop`` is set (then False).

    A background reader must not block forever on a full queue after its consumer has closed the iterator.
    """
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Prefetch(Generic[T, U]):
    """``(item, state)`` pairs read ``depth`` ahead in one background thread; ``state`` is the last one handed out.

    ``fn`` (optional) is applied to each item ahead of the consumer, in the reading thread or, with ``workers``
    > 1, in a pool of that many threads (results stay in order): the loader's batches are fetched this way,
    because Lance reads and numpy copies release the GIL. An error raised while reading or in ``fn`` is raised by
    ``next()`` at the position where it happened. ``close()`` stops the thread and drops what was read ahead.
    """

    def __init__(
        self,
        pairs: Iterable[tuple[T, Any]],
        initial_state: Any,
        *,
        depth: int = 2,
        fn: Callable[[T], U] | None = None,
        workers: int = 1,
        name: str = "tokenmill-prefetch",
    ) -> None:
        self.state = initial_state
        self._pairs = iter(pairs)
        self._fn = fn
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix=name) if fn is not None and workers > 1 else None
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item, state in self._pairs:
                if self._stop.is_set():
                    return
                if self._pool is not None:
                    value: Any = self._pool.submit(self._fn, item)  # type: ignore[arg-type]
                else:
                    value = self._fn(item) if self._fn is not None else item
                if not put_until_stopped(self._queue, (value, state), self._stop):
                    if isinstance(value, Future):
                        value.cancel()
                    return
            put_until_stopped(self._queue, (_END, None), self._stop)
        except BaseException as exc:  # handed to the consumer, raised there
            put_until_stopped(self._queue, (_Failed(exc), None), self._stop)

    def next(self) -> U:
        """The next item (``fn`` applied); ``self.state`` becomes the state that came with it."""
        if self._done:
            raise StopIteration
        value, state = self._queue.get()
        if value is _END:
            self._done = True
            raise StopIteration
        if isinstance(value, _Failed):
            self._done = True
            raise value.error
        if isinstance(value, Future):
            value = value.result()
        self.state = state
        return value

    def close(self) -> None:
        """Stop the reading thread and wait for it; what it read ahead is dropped."""
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(timeout=0.05)
        self._drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._pairs, "close", None)
        if close is not None:  # a generator: run its finally blocks (open files) now
            close()

    def _drain(self) -> None:
        while True:
            try:
                value, _ = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(value, Future):
                value.cancel()


class PrefetchIterator(ChildIterator[T]):
    """``parent`` read ahead in a background thread, ``depth`` items; its state stays the consumer's position."""

    def __init__(
        self,
        parent: ResumableIterator[Any],
        depth: int = 2,
        *,
        fn: Callable[[Any], T] | None = None,
        workers: int = 1,
        name: str = "tokenmill-prefetch",
    ) -> None:
        super().__init__(parent)
        self._prefetch: Prefetch[Any, T] = Prefetch(
            with_states(parent), parent.state_dict(), depth=depth, fn=fn, workers=workers, name=name
        )

    def next(self) -> T:
        return self._prefetch.next()

    def get_state(self) -> State:
        return self._prefetch.state

    def release(self) -> None:
        self._prefetch.close()
