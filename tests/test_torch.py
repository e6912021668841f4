"""torch views: tensors, prefetching with exact state, and DataLoader with spawned workers (Lance is not fork-safe)."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest
import torch

from conftest import build
from tokenmill.loader import Batches, BatchIterator, TokenDataset
from tokenmill.torch import (
    PrefetchIterator,
    TorchIterableDataset,
    TorchMapDataset,
    collate,
    make_dataloader,
    to_tensors,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path):
    return build(jsonl_shards, tmp_path_factory.mktemp("torch") / "cache", tokenizer_path)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a if k != "max_seqlen"
    )


def test_to_tensors_and_collate(cache):
    ds = TokenDataset(cache, seq_len=64, mode="packed")
    batch = ds.get_batch(np.arange(4))
    tensors = to_tensors(batch)
    assert tensors["input_ids"].dtype == torch.int64 and tensors["cu_seqlens"].dtype == torch.int32
    assert isinstance(tensors["max_seqlen"], int)
    collated = collate([ds[i] for i in range(4)])
    assert _same(collated, tensors) and collated["max_seqlen"] == tensors["max_seqlen"]


@pytest.mark.parametrize("workers", [1, 2])
def test_prefetch_yields_the_stream_and_saves_what_was_received(cache, workers):
    ds = TokenDataset(cache, seq_len=64, seed=3)
    plain = BatchIterator(ds, 8, rank=0, world_size=1, steps=30)
    want = [to_tensors(b) for b in plain]
    with PrefetchIterator(
        BatchIterator(ds, 8, rank=0, world_size=1, steps=30), depth=5, workers=workers
    ) as pf:
        got = [next(pf) for _ in range(11)]
        state = pf.state_dict()  # 11 received, up to 5 more read ahead
        assert state["step"] == 11
        rest = list(pf)
    assert all(_same(a, b) for a, b in zip(got + rest, want, strict=True))
    batches = Batches(ds, 8, rank=0, world_size=1, steps=30).iter(state)
    with PrefetchIterator(batches) as resumed:  # resumed: wrap the loader opened at the saved state
        assert _same(next(resumed), want[11])
        assert resumed.state_dict()["step"] == 12


def test_iterable_dataset_with_two_spawned_workers_matches_one_process(cache):
    ds = TokenDataset(cache, seq_len=64, seed=5)
    want = [to_tensors(b) for b in BatchIterator(ds, 4, rank=0, world_size=1, steps=9)]
    view = TorchIterableDataset(ds, 4, rank=0, world_size=1, steps=9)
    loader = make_dataloader(view, num_workers=2)
    assert loader.multiprocessing_context.get_start_method() == "spawn"
    got = list(loader)
    assert len(got) == 9 and all(_same(a, b) for a, b in zip(got, want, strict=True))
    # outside a DataLoader the view is a description: iter(state) resumes where state_dict() left off
    it = view.iter()
    for _ in range(6):
        next(it)
    assert all(_same(a, b) for a, b in zip(list(view.iter(it.state_dict())), want[6:], strict=True))


def test_stateful_dataloader_checkpoints_every_worker(cache):
    """torchdata's StatefulDataLoader saves each worker's position; a new loader resumes all of them exactly."""
    pytest.importorskip("torchdata.stateful_dataloader")
    ds = TokenDataset(cache, seq_len=64, seed=5)
    want = [to_tensors(b) for b in BatchIterator(ds, 4, rank=0, world_size=1, steps=9)]

    def loader():
        view = TorchIterableDataset(ds, 4, rank=0, world_size=1, steps=9)
        return make_dataloader(view, num_workers=2, stateful=True)

    first = loader()
    it = iter(first)
    got = [next(it) for _ in range(5)]  # worker 0 has given 3 batches, worker 1 two
    saved = first.state_dict()
    del it
    second = loader()
    second.load_state_dict(saved)
    rest = list(second)
    assert all(_same(a, b) for a, b in zip(got + rest, want, strict=True)) and len(got + rest) == 9


def test_map_dataset_with_two_spawned_workers(cache):
    ds = TokenDataset(cache, seq_len=48, mode="packed", seed=1)
    ds.set_epoch(2)
    loader = make_dataloader(TorchMapDataset(ds), num_workers=2, batch_size=5)
    first = next(iter(loader))
    assert _same(first, to_tensors(ds.get_batch(np.arange(5))))


def test_forked_worker_refuses_lance_reads_instead_of_hanging(cache):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    ds = TokenDataset(cache, seq_len=64, read="lance")
    loader = torch.utils.data.DataLoader(
        TorchMapDataset(ds),
        batch_size=2,
        num_workers=1,
        collate_fn=collate,
        multiprocessing_context="fork",
        timeout=60,  # a hang would fail the test instead of blocking it
    )
    with pytest.raises(Exception, match="not fork-safe"):
        next(iter(loader))


def _agree(rank: int, init_file: str, results: str) -> None:
    import torch.distributed as dist

    from tokenmill.loader.world import agreed_versions as _agreed_versions
    from tokenmill.loader.world import resolve_world

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        seen = _agreed_versions([7, 3] if rank == 0 else [9, 4])  # rank 1 looked later and saw newer commits
        with open(f"{results}.{rank}", "w") as f:
            f.write(json.dumps({"versions": seen, "world": resolve_world()}))
    finally:
        dist.destroy_process_group()


def test_following_ranks_agree_on_rank_zeros_versions(tmp_path):
    torch.multiprocessing.spawn(_agree, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    for rank in range(2):
        got = json.loads((tmp_path / f"out.{rank}").read_text())
        assert got == {"versions": [7, 3], "world": [rank, 2]}
