"""The PyTorch views: DataLoader workers split the shards, and torchdata's StatefulDataLoader checkpoints and
resumes every worker's pipeline exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tokenmill.pipeline import Pipeline  # noqa: E402
from tokenmill.tokenizer import load_tokenizer  # noqa: E402


def chain(shards, tokenizer_path):
    tok = load_tokenizer(str(tokenizer_path))
    return (
        Pipeline.from_files([str(p) for p in shards], n_active_shards=2)
        .tokenize(tok)
        .ensure_bos_eos()
        .concat_chunk(32)
        .shuffle(16)
        .batch(4)
    )


def keys(batches) -> list[bytes]:
    return [row.numpy().tobytes() for b in batches for row in b["input_ids"]]


def test_workers_split_the_shards_without_overlap(jsonl_shards, tokenizer_path):
    pipe = Pipeline.from_files([str(p) for p in jsonl_shards], n_active_shards=1)
    loader = torch.utils.data.DataLoader(pipe.map(_ids).to_torch(), batch_size=None, num_workers=2)
    seen = [int(x) for x in loader]
    expected = [r for p in jsonl_shards for r in range(len(p.read_text().splitlines()))]
    assert sorted(seen) == sorted(expected)  # every record once across both workers


def _ids(record):
    return record["id"]


def test_tensors_out_of_the_view(jsonl_shards, tokenizer_path):
    (first,) = [b for _, b in zip(range(1), chain(jsonl_shards, tokenizer_path).to_torch())]
    assert isinstance(first["input_ids"], torch.Tensor) and first["input_ids"].shape == (4, 32)
    assert first["labels"].dtype == torch.int64


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(workers, jsonl_shards, tokenizer_path):
    tdl = pytest.importorskip("torchdata.stateful_dataloader")
    dataset = chain(jsonl_shards, tokenizer_path).to_torch()

    def loader():
        return tdl.StatefulDataLoader(dataset, batch_size=None, num_workers=workers)

    full = keys(loader())
    assert len(full) > 100
    dl = loader()
    it = iter(dl)
    head = [next(it) for _ in range(7)]
    state = json.loads(json.dumps(dl.state_dict(), default=_no_tensors))
    assert "tokenmill.pipeline/1" in json.dumps(state)  # the workers' pipeline states, not a replay count
    del it, dl
    resumed = loader()
    resumed.load_state_dict(state)
    rest = keys(resumed)
    assert keys(head) + rest == full


def _no_tensors(obj):
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def test_prefetch_iterator_state_is_what_was_received(jsonl_shards, tokenizer_path):
    pipe = chain(jsonl_shards, tokenizer_path).prefetch(4)
    full = [b["input_ids"].tobytes() for b in pipe.iter()]
    it = pipe.iter()
    head = [next(it)["input_ids"].tobytes() for _ in range(5)]
    state = it.state_dict()
    it.close()
    rest = [b["input_ids"].tobytes() for b in pipe.iter(state_dict=state)]
    assert head + rest == full
    assert np.frombuffer(full[0], dtype=np.int64).size == 4 * 32
