"""``Pipeline.from_files``: records of many shards (local or in a bucket), read round-robin, resumable by seek.

``n_active_shards`` shards are read round-robin, one record each in turn; ``n_standby_shards`` more are opened
ahead (the next epoch's shards only become active once every shard of the current epoch is done, so a
file is never read twice at once). Every open shard reads in its own background thread, a few records ahead (``n_prefetch_samples``), so
network latency and JSON parsing overlap the rest of the pipeline. Shards follow a per-epoch order (shuffled
from (seed, epoch) with ``shuffle_shards``); ``repeat`` starts the next epoch as the shards of this one finish.

The state is, per active shard, its index and the sources layer's *position* of the last record the consumer
received ("right after this record": a byte offset, plus the compressed member for ``.gz``/``.zst`` files), and
the next shard to open. A resume seeks to those positions: it never re-reads the lines before them, so it costs
the same at any position. Standby shards and records read ahead are not in the state; they are read again.

Transient I/O errors (a dropped connection, a timeout) are retried by the sources layer with exponential backoff,
re-opening the file at the last record read, so nothing is lost or duplicated; a bad record raises (or, with
``on_error="skip"``, is counted in the state under its reason and skipped).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tokenmill.errors import ConfigError, StateError
from tokenmill.pipeline.base import Node, Skipped, Stage, StateDict, read_skipped, require, skipped_counts
from tokenmill.state import Prefetch


def shard_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0xF1]).permutation(n)


@dataclasses.dataclass(frozen=True, eq=False)
class FilesNode(Node):
    urls: tuple[str, ...]
    repeat: bool = False
    shuffle_shards: bool = False
    format: str | None = None
    n_active_shards: int = 10
    n_standby_shards: int = 2
    n_prefetch_samples: int = 10
    seed: int = 42
    text_key: str = "text"
    text_split: str = "document"
    storage_options: dict[str, Any] | None = None
    retries: int = 5
    backoff: float = 0.5
    on_error: str = "raise"
    rank: int = 0
    world_size: int = 1
    name = "from_files"

    def __post_init__(self) -> None:
        if self.n_active_shards < 1 or self.n_standby_shards < 0 or self.n_prefetch_samples < 1:
            raise ConfigError("n_active_shards and n_prefetch_samples must be >= 1, n_standby_shards >= 0")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def describe(self) -> str:
        return f"from_files({len(self.urls)} files, shard={self.rank}/{self.world_size})"

    def shard_source(self, rank: int, world_size: int) -> Node | None:
        rank, world_size = self.rank + self.world_size * rank, self.world_size * world_size
        if len(self.urls) < world_size:
            return None  # fewer files than ranks: the caller strides over records instead
        return dataclasses.replace(self, rank=rank, world_size=world_size)

    def shards(self, epoch: int) -> list[str]:
        """This rank's files of one epoch, in reading order."""
        order = shard_order(len(self.urls), self.shuffle_shards, self.seed, epoch)
        return [self.urls[i] for i in order[self.rank :: self.world_size]]

    def build(self, state: StateDict | None) -> Stage:
        return FilesStage(self, state)


class ShardReader:
    """One file read ahead in a background thread (the one prefetch), each record with its position."""

    def __init__(self, node: FilesNode, epoch: int, index: int, url: str, position: dict | None) -> None:
        self.node, self.epoch, self.index, self.url = node, epoch, index, url
        self._prefetch: Prefetch[Any, Any] = Prefetch(
            self._records(position), position, depth=node.n_prefetch_samples, name=f"tokenmill-shard-{index}"
        )

    @property
    def position(self) -> dict | None:
        """The sources layer's position right after the last record handed out (None: the file's start)."""
        return self._prefetch.state

    def _records(self, position: dict | None) -> Iterator[tuple[Any, dict | None]]:
        from tokenmill.sources import read_records

        node = self.node
        rejected: list[Any] = []  # filled by read_records while it reads on to the next good record
        records = read_records(
            self.url,
            node.format,
            text_split=node.text_split,
            text_key=node.text_key,
            storage_options=node.storage_options,
            start=position,
            on_error=rejected.append if node.on_error == "skip" else None,
            retries=node.retries,
            backoff=node.backoff,
        )
        try:
            for rec in records:
                for err in rejected:
                    position = getattr(err, "position", None) or position
                    yield Skipped(err.reason), position
                rejected.clear()
                position = rec.position
                yield rec.record, position
            for err in rejected:
                yield Skipped(err.reason), getattr(err, "position", None) or position
        finally:
            records.close()  # closes the file even when stopped mid-way

    def next(self) -> Any:
        """The next record or :class:`Skipped` marker; ``StopIteration`` at the end of the file."""
        return self._prefetch.next()

    def state(self) -> StateDict:
        return {"shard": [self.epoch, self.index], "url": self.url, "position": self.position}

    def close(self) -> None:
        self._prefetch.close()


class FilesStage(Stage):
    def __init__(self, node: FilesNode, state: StateDict | None) -> None:
        self.node = node
        self._epochs: dict[int, list[str]] = {}
        self.skipped: dict[str, int] = {}
        self.active: deque[ShardReader] = deque()
        self.standby: deque[ShardReader] = deque()
        self.next_shard = (0, 0)  # the next shard to open (epoch, index in epoch)
        if not node.urls:
            return
        if state is not None:
            self.next_shard = tuple(int(x) for x in require(state, "next", node.name))  # type: ignore[assignment]
            self.skipped = read_skipped(state)
            for entry in require(state, "active", node.name):
                epoch, index = (int(x) for x in entry["shard"])
                url = self._url(epoch, index)
                if url != entry.get("url"):
                    raise StateError(
                        f"from_files state names {entry.get('url')!r} as shard {index} of epoch {epoch}, but the "
                        f"file list has {url!r} there: the state was saved with other files or options"
                    )
                self.active.append(ShardReader(node, epoch, index, url, entry.get("position")))
        self._refill()

    def _url(self, epoch: int, index: int) -> str | None:
        if epoch not in self._epochs:
            self._epochs = {epoch: self.node.shards(epoch)} | {
                e: v for e, v in self._epochs.items() if e >= epoch - 1
            }
        shards = self._epochs[epoch]
        return shards[index] if index < len(shards) else None

    def _open_next(self) -> ShardReader | None:
        epoch, index = self.next_shard
        for _ in range(2):
            url = self._url(epoch, index)
            if url is not None:
                break
            if not self.node.repeat or index == 0:
                return None  # no more epochs, or this rank has no files at all
            epoch, index = epoch + 1, 0
        else:  # pragma: no cover
            return None
        self.next_shard = (epoch, index + 1)
        return ShardReader(self.node, epoch, index, url, None)

    def _refill(self) -> None:
        node = self.node
        while len(self.active) + len(self.standby) < node.n_active_shards + node.n_standby_shards:
            reader = self._open_next()
            if reader is None:
                break
            self.standby.append(reader)
        while len(self.active) < node.n_active_shards and self.standby:
            if self.active and self.standby[0].epoch != self.active[0].epoch:
                break  # never read two epochs at once: the same file would feed duplicates into one buffer
            self.active.append(self.standby.popleft())
            nxt = self._open_next()
            if nxt is not None:
                self.standby.append(nxt)

    def next(self) -> Any:
        while self.active:
            shard = self.active.popleft()
            try:
                while isinstance(item := shard.next(), Skipped):
                    self.skipped[item.reason] = self.skipped.get(item.reason, 0) + 1
            except StopIteration:
                shard.close()  # end of this shard
                self._refill()
                continue
            except BaseException:
                self.active.appendleft(shard)
                raise
            self.active.append(shard)
            return item
        raise StopIteration

    def get_state(self) -> StateDict:
        # the next shard the *consumer* will see opened: standby shards are re-opened after a resume
        nxt = (self.standby[0].epoch, self.standby[0].index) if self.standby else self.next_shard
        active = [s.state() for s in self.active]
        return {"next": list(nxt), "active": active, "skipped": skipped_counts(self.skipped)}

    def release(self) -> None:
        for shard in list(self.active) + list(self.standby):
            shard.close()
        self.active.clear()
        self.standby.clear()


def expand(urls: str | Sequence[str], storage_options: dict[str, Any] | None) -> tuple[str, ...]:
    from tokenmill.sources import expand_urls

    patterns = [urls] if isinstance(urls, str) else [str(u) for u in urls]
    if not patterns:
        # an empty list would end at once (or, with repeat=True, spin for ever) with nothing to read
        raise ConfigError("from_files: no files given; pass at least one path, URL or glob")
    return tuple(expand_urls(patterns, storage_options=storage_options))
