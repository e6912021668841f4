"""Checkpoints that are complete or absent, never half-written.

A checkpoint is a folder ``RUN/checkpoints/step-00000100/``::

    model.pt            the model's state dict (the unwrapped module: no DDP or compile prefixes)
    optimizer.pt        the optimizer's state dict
    scheduler.pt        the learning-rate scheduler's state dict
    rng-rank{r}.pt      python / numpy / torch (and CUDA) generator states of rank r
    data-rank{r}.json   the data iterator's state_dict() on rank r (JSON, never pickle)
    config.json         the model's Hugging Face config (the export rebuilds the model from it)
    trainer.json        step, tokens, world size, the train config; written last

Everything is written into ``.tmp-step-00000100/``, each file fsynced, then the folder is renamed to its final
name and the parent folder fsynced. A rename is atomic on POSIX file systems, so a crash at any moment leaves
either the previous checkpoints only, or those and a complete new one; a leftover ``.tmp-*`` folder is never
mistaken for a checkpoint and is removed by the next save. Tensors are saved with ``torch.save`` and read back
with ``weights_only=True``, so loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenmill.errors import StateError

CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")
TRAINER_FILE = "trainer.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def checkpoints_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / TRAINER_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(resume: str | Path | bool | None, run_dir: str | Path) -> Path | None:
    """``--resume`` -> a checkpoint folder: True/"latest" means the run's newest; a run folder means its newest."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "latest":
        found = latest_checkpoint(run_dir)
        if found is None:
            raise StateError(f"--resume: {run_dir} has no complete checkpoint under {CHECKPOINTS_DIR}/")
        return found
    path = Path(resume)
    if (path / TRAINER_FILE).is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found
    raise StateError(
        f"--resume {resume}: not a complete checkpoint (no {TRAINER_FILE}) nor a run folder with checkpoints"
    )


# ------------------------------------------------------------------------------------------------ writing


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def write_torch(path: Path, obj: Any) -> None:
    torch.save(obj, path)
    _fsync_path(path)


def begin(run_dir: str | Path, step: int) -> Path:
    """A fresh temporary folder for the checkpoint of ``step`` (rank 0 calls this; other ranks use ``temp_dir``)."""
    root = checkpoints_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # a crash mid-save leaves one; it never counts as a checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    tmp = temp_dir(run_dir, step)
    tmp.mkdir()
    return tmp


def temp_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoints_root(run_dir) / f".tmp-{checkpoint_name(step)}"


def commit(tmp: Path, keep_last: int) -> Path:
    """Make the temporary folder the checkpoint (one atomic rename), then drop all but the newest ``keep_last``."""
    for p in tmp.iterdir():
        _fsync_path(p)
    _fsync_path(tmp)
    final = tmp.parent / tmp.name.removeprefix(".tmp-")
    if final.exists():  # the same step saved again (a resumed run that re-reached it): replace atomically
        old = tmp.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_path(final.parent)
    for old in list_checkpoints(final.parent.parent)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------------------------ RNG


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ reading


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    if not path.is_file():
        raise StateError(f"checkpoint {path.parent} has no {path.name}")
    return torch.load(path, map_location=map_location, weights_only=True)


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINER_FILE
    if not path.is_file():
        raise StateError(f"{checkpoint} is not a complete checkpoint (no {TRAINER_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def rank_file(checkpoint: Path, stem: str, suffix: str, rank: int) -> Path:
    """The rank's own file, or rank 0's when the checkpoint was written by fewer ranks (a smaller world)."""
    own = Path(checkpoint) / f"{stem}-rank{rank}{suffix}"
    return own if own.is_file() else Path(checkpoint) / f"{stem}-rank0{suffix}"


def read_data_state(checkpoint: Path, rank: int = 0) -> dict[str, Any] | None:
    path = rank_file(checkpoint, "data", ".json", rank)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
