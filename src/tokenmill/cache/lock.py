"""The writer's lock: one prepare at a time writes a cache.

Two prepares into one folder would each commit every unit (the ledger is per writer), doubling the data. The lock
is ``CACHE/writer.lock``, a small JSON naming the holder (host, process id and its start time, when it started,
its last heartbeat). A second writer is refused with that name. A lock left by a killed run is taken over: on the
same host when its process is gone (or the id now belongs to another process), elsewhere when its heartbeat is
older than ``STALE_AFTER_S``. The holder refreshes the heartbeat as it commits.

A local lock is created with ``O_EXCL`` (atomic). Object stores have no such create through fsspec: there the
lock is written, read back after a moment and kept only if it is still ours, which catches every race but two
writers starting within the same fraction of a second.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
import uuid
from typing import Any

from tokenmill.cache import store
from tokenmill.errors import CacheError

LOCK_NAME = "writer.lock"
STALE_AFTER_S = 300.0  # a holder on another host that has not committed for this long is taken for dead
HEARTBEAT_EVERY_S = 30.0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """The start time of a process (Linux), so a reused process id is not taken for the holder."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a different start time: the id now belongs to another process
    return started is None or _process_start(pid) in (None, started)


class CacheLock:
    """Held while a prepare writes ``cache``; use as a context manager."""

    def __init__(self, cache: str, storage_options: dict[str, str] | None = None) -> None:
        self.cache = cache
        self.storage_options = storage_options
        self.uri = store.join(cache, LOCK_NAME)
        self.token = uuid.uuid4().hex
        self.held = False
        self._last_beat = 0.0
        self._made_folder = False  # this lock created the cache folder: a run that wrote nothing removes it

    def _record(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "token": self.token,
            "host": socket.gethostname(),
            "pid": pid,
            "pid_start": _process_start(pid),
            "started": _now(),
            "heartbeat": time.time(),
        }

    def holder(self) -> dict[str, Any] | None:
        """The current lock record, or None when there is none (an unreadable one counts as stale)."""
        try:
            return json.loads(store.read_bytes(self.uri, self.storage_options))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, record: dict[str, Any]) -> bool:
        if not record or "pid" not in record:
            return True
        if record.get("host") == socket.gethostname():
            return not _alive(int(record["pid"]), record.get("pid_start"))
        return time.time() - float(record.get("heartbeat", 0)) > STALE_AFTER_S

    def acquire(self) -> None:
        for _ in range(3):
            if self._try_create():
                self.held = True
                self._last_beat = time.monotonic()
                return
            record = self.holder()
            if record is None:
                continue  # released meanwhile
            if not self._stale(record):
                raise CacheError(
                    f"{self.cache} is being written by another prepare (process {record.get('pid')} on "
                    f"{record.get('host')}, since {record.get('started')}); wait for it to finish, or, if that "
                    f"run is gone, delete {self.uri}"
                )
            self._take_over()
        raise CacheError(
            f"{self.cache}: could not take the writer lock {self.uri}; another prepare keeps taking it"
        )

    def _try_create(self) -> bool:
        data = json.dumps(self._record()).encode()
        if store.is_local(self.uri):
            path = store.local_path(self.uri)
            folder = os.path.dirname(path) or "."
            if not os.path.isdir(folder):
                os.makedirs(folder)
                self._made_folder = True
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if store.exists(self.uri, self.storage_options):
            return False
        store.write_bytes(self.uri, data, self.storage_options)
        time.sleep(0.5)  # a writer that raced us has written by now: the last PUT wins, and only it proceeds
        return (self.holder() or {}).get("token") == self.token

    def _take_over(self) -> None:
        """Remove a stale lock; locally by an atomic rename, so two takers cannot both remove a fresh lock."""
        if store.is_local(self.uri):
            path = store.local_path(self.uri)
            try:
                os.rename(path, f"{path}.stale-{self.token}")
                os.remove(f"{path}.stale-{self.token}")
            except FileNotFoundError:
                pass
            return
        store.remove(self.uri, self.storage_options)

    def heartbeat(self) -> None:
        """Refresh the heartbeat (at most every ``HEARTBEAT_EVERY_S``), so another host sees the holder alive."""
        if not self.held or time.monotonic() - self._last_beat < HEARTBEAT_EVERY_S:
            return
        record = self.holder() or {}
        if record.get("token") != self.token:
            raise CacheError(f"{self.cache}: another prepare took the writer lock {self.uri}; this run stops")
        record["heartbeat"] = time.time()
        store.write_bytes(self.uri, json.dumps(record).encode(), self.storage_options)
        self._last_beat = time.monotonic()

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if (self.holder() or {}).get("token") == self.token:
            store.remove(self.uri, self.storage_options)
        if self._made_folder:
            try:
                os.rmdir(store.local_path(self.cache))  # only if empty: nothing was written
            except OSError:
                pass

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
