"""``Pipeline.from_hf``: the rows of a Hugging Face dataset (a ``save_to_disk`` folder, a builder with local data
files, or a hub name where a hub is reachable), through :func:`tokenmill.sources.read_hf`.

The state is the row position of the last row received; a map-style dataset resumes in O(1) by Arrow random
access, a streaming one (``streaming=True``) skips rows again on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenmill.pipeline.base import Node, Stage, StateDict, require


@dataclasses.dataclass(frozen=True, eq=False)
class HFNode(Node):
    name_or_path: str
    split: str = "train"
    config: str | None = None
    data_files: Any = None
    streaming: bool = False
    repeat: bool = False
    revision: str | None = None
    load_kwargs: tuple[
        tuple[str, Any], ...
    ] = ()  # further load_dataset arguments (languages=["Python"], ...)
    name = "from_hf"

    def build(self, state: StateDict | None) -> Stage:
        epoch = 0 if state is None else int(require(state, "epoch", self.name))
        position = None if state is None else require(state, "position", self.name)
        return HFStage(self, epoch, position)


class HFStage(Stage):
    def __init__(self, node: HFNode, epoch: int, position: dict | None) -> None:
        self.node, self.epoch, self.position = node, epoch, position
        self._rows = self._open()
        self._got_any = position is not None

    def _open(self) -> Any:
        from tokenmill.sources import HFSource

        n = self.node
        source = HFSource(
            n.name_or_path,
            n.config,
            n.split,
            n.revision,
            n.data_files,
            n.streaming,
            kwargs=dict(n.load_kwargs),
        )
        return source.read(start=self.position)

    def next(self) -> Any:
        while True:
            try:
                rec = next(self._rows)
            except StopIteration:
                if not self.node.repeat or not self._got_any:
                    raise
                self.epoch, self.position, self._got_any = self.epoch + 1, None, False
                self._rows = self._open()
                continue
            self.position, self._got_any = rec.position, True
            return rec.record

    def get_state(self) -> StateDict:
        return {"epoch": self.epoch, "position": self.position}

    def release(self) -> None:
        close = getattr(getattr(self, "_rows", None), "close", None)
        if close is not None:
            close()
