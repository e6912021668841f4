"""``prefetch``: run everything above this stage in a background thread, ``buffer_size`` items ahead.

Each item travels with the parent's state right after it, so the state is the one that goes with the last item
the consumer received, not with what the thread has read ahead. This is the built-in background iterator for
training loops that use no DataLoader.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any

from tokenmill.pipeline.base import Node, ParentStage, Stage, StateDict, put_until_stopped

_END = object()


@dataclasses.dataclass(frozen=True, eq=False)
class PrefetchNode(Node):
    parent: Node
    buffer_size: int = 2
    name = "prefetch"
    stateless = True

    def build(self, state: StateDict | None) -> Stage:
        return PrefetchStage(self.parent.build(state), max(1, self.buffer_size))


class PrefetchStage(ParentStage):
    def __init__(self, parent: Stage, buffer_size: int) -> None:
        super().__init__(parent)
        self.state = parent.state_dict()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="tokenmill-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = next(self.parent)
                except StopIteration:
                    self._put((_END, None))
                    return
                self._put((item, self.parent.state_dict()))
        except BaseException as exc:
            self._put((exc, None))

    def _put(self, entry: Any) -> None:
        put_until_stopped(self._queue, entry, self._stop)

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        item, state = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if state is None and isinstance(item, BaseException):
            self._done = True
            raise item
        self.state = state
        return item

    def state_dict(self) -> StateDict:
        return self.state

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)
        super().close()
