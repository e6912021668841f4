"""``model(**batch)`` on a Hugging Face causal LM computes the right next-token loss on every kind of loader batch.

A tiny Llama with random weights (built from a config here, nothing downloaded) is run on batches of every mode
(windows with and without loss masks, packed, padded, padded trimmed to the longest), a mixture and the torch views
(``TorchIterableDataset``, ``TorchMapDataset`` + ``collate``, ``PrefetchIterator``). Its loss is compared with the
cross-entropy of the same logits against targets computed here from the split's token stream and the layout's
plan, never from the loader's labels.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from loader.helpers import expected_targets, split_stream  # noqa: E402
from tokenmill.labels import IGNORE_INDEX, next_token_targets  # noqa: E402
from tokenmill.loader import BatchIterator, Mixture, TokenDataset  # noqa: E402
from tokenmill.torch import (  # noqa: E402
    PrefetchIterator,
    TorchIterableDataset,
    TorchMapDataset,
    collate,
    to_tensors,
)

SEQ = 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4 * SEQ,
    )
    return transformers.LlamaForCausalLM(config).eval()


def hand_targets(ds: TokenDataset, ids: np.ndarray) -> np.ndarray:
    """The target of every input position of samples ``ids`` (cache order), from the stream and the layout plan."""
    flat, mask, _ = split_stream(ds.cache, ds.split)
    out = np.full((ids.size, ds.seq_len), IGNORE_INDEX, dtype=np.int64)
    for row, i in enumerate(ids.tolist()):
        if ds.mode == "windows":
            lo = i * ds.seq_len
            out[row] = expected_targets(flat[lo : lo + ds.seq_len + 1], mask[lo : lo + ds.seq_len + 1])[:-1]
            continue
        layout, at = ds.layout, 0
        for s in range(int(layout.offsets[i]), int(layout.offsets[i + 1])):
            lo = int(layout.doc_starts[layout.seg_doc[s]] + layout.seg_start[s])
            n = int(layout.seg_length[s])
            out[row, at : at + n] = expected_targets(flat[lo : lo + n], mask[lo : lo + n])
            at += n
    return out


def hf_loss_and_hand_loss(model, batch: dict, targets: np.ndarray) -> tuple[float, float]:
    """``model(**batch).loss`` and the mean cross-entropy of the same logits against ``targets``."""
    tensors = batch if isinstance(batch["input_ids"], torch.Tensor) else to_tensors(batch)
    with torch.no_grad():
        out = model(**tensors)
    width = tensors["input_ids"].shape[1]  # padded batches may be trimmed to their longest sample
    want = torch.from_numpy(targets[:, :width])
    hand = torch.nn.functional.cross_entropy(
        out.logits.float().reshape(-1, out.logits.size(-1)), want.reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert int((want != IGNORE_INDEX).sum()) > 0
    return float(out.loss), float(hand)


CASES = [
    ("text_cache", {"mode": "windows"}),
    ("sft_cache", {"mode": "windows"}),  # loss-masked prompts
    ("sft_cache", {"mode": "windows", "read": "lance"}),
    ("text_cache", {"mode": "packed"}),
    ("sft_cache", {"mode": "packed"}),
    ("sft_cache", {"mode": "padded"}),
    ("sft_cache", {"mode": "padded", "pad_to": "longest"}),
]


@pytest.mark.parametrize(("cache", "options"), CASES)
def test_every_mode_gives_the_hand_computed_loss(request, model, cache, options):
    ds = TokenDataset(request.getfixturevalue(cache), seq_len=SEQ, seed=3, **options)
    it = BatchIterator(ds, 8, rank=0, world_size=1)
    plan = it.next_plan()
    batch = it.fetch(plan)
    targets = hand_targets(ds, plan.ids)
    got, want = hf_loss_and_hand_loss(model, batch, targets)
    assert got == pytest.approx(want, rel=1e-5)
    width = batch["input_ids"].shape[1]
    assert np.array_equal(next_token_targets(batch), targets[:, :width])
    if options["mode"] == "windows":
        # labels alone (no shift_labels) give Hugging Face's own shift: every target but the last input's
        alone = {k: v for k, v in batch.items() if k != "shift_labels"}
        got_alone, _ = hf_loss_and_hand_loss(model, alone, targets)
        trimmed = targets.copy()
        trimmed[:, -1] = IGNORE_INDEX
        _, want_alone = hf_loss_and_hand_loss(model, batch, trimmed)
        assert got_alone == pytest.approx(want_alone, rel=1e-5)


def test_a_mixture_gives_the_hand_computed_loss(model, text_cache, sft_cache):
    parts = [TokenDataset(c, seq_len=SEQ) for c in (text_cache, sft_cache)]
    mix = Mixture([(parts[0], 0.5), (parts[1], 0.5)], seed=2)
    it = BatchIterator(mix, 8, rank=0, world_size=1)
    plan = it.next_plan()
    batch = it.fetch(plan)
    targets = np.concatenate([hand_targets(parts[k], np.array([j])) for k, j in plan.ids.tolist()])
    assert set(batch["source_index"].tolist()) == {0, 1}
    got, want = hf_loss_and_hand_loss(model, batch, targets)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("mode", ["windows", "packed"])
def test_the_torch_views_give_the_hand_computed_loss(model, sft_cache, mode):
    ds = TokenDataset(sft_cache, seq_len=SEQ, mode=mode, seed=5)
    ids = BatchIterator(ds, 8, rank=0, world_size=1).next_plan().ids
    targets = hand_targets(ds, ids)
    iterable = next(iter(TorchIterableDataset(ds, 8, rank=0, world_size=1)))
    with PrefetchIterator(BatchIterator(ds, 8, rank=0, world_size=1), depth=2, workers=1) as prefetch:
        prefetched = next(prefetch)
    mapped = collate([TorchMapDataset(ds)[i] for i in range(8)])
    for batch in (iterable, prefetched, mapped):
        got, want = hf_loss_and_hand_loss(model, batch, targets)
        assert got == pytest.approx(want, rel=1e-5)
