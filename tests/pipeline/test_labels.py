"""``labels`` of pipeline batches mean what Hugging Face means (aligned with ``input_ids``, -100 where not trained),
as in the loader: ``model(**batch)`` on a causal LM gives the loss of the right next-token targets.

Token values encode their document and position (``64 * doc + j + 1``; 0 is padding), so the targets are computed
here from the token values alone, never from the pipeline's ``loss_mask`` or ``labels``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenmill.labels import IGNORE_INDEX  # noqa: E402
from tokenmill.pipeline import Pipeline  # noqa: E402

L = 48


def trained(j: np.ndarray) -> np.ndarray:
    return j % 3 != 1


def documents(n: int = 40) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        j = np.arange(int(rng.integers(2, 40)))
        out.append({"input_ids": (64 * i + j + 1).astype(np.int32), "loss_mask": trained(j)})
    return out


def hand_targets(ids: np.ndarray, across_documents: bool) -> np.ndarray:
    """Target of each input position: the next token when it is a trained token of the same document (or of
    any document, for a concatenated stream); the last position has no next token in the row."""
    doc, j = (ids - 1) // 64, (ids - 1) % 64
    nxt_doc, nxt_j = doc[:, 1:], j[:, 1:]
    ok = (ids[:, 1:] != 0) & trained(nxt_j)
    if not across_documents:
        ok &= (nxt_doc == doc[:, :-1]) & (nxt_j == j[:, :-1] + 1)
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    out[:, :-1] = np.where(ok, ids[:, 1:], IGNORE_INDEX)
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64 * 41, n_layer=1, n_head=2, n_embd=16, n_positions=L)
    return transformers.GPT2LMHeadModel(config).eval()


CASES = {
    "concat_chunk": (lambda p: p.concat_chunk(L), True),
    "pack": (lambda p: p.pack(L, buffer_size=16, pad_id=0), False),
    "pad": (lambda p: p.pad({"input_ids": 0}, L), False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_loss_on_pipeline_batches_is_the_next_token_loss(case, model):
    shape, across = CASES[case]
    pipe = shape(Pipeline.from_sequence(documents())).batch(4, return_tensors="pt")
    for batch in pipe.iter():
        want = torch.from_numpy(hand_targets(batch["input_ids"].numpy(), across))
        with torch.no_grad():
            out = model(**batch)
        logits = out.logits.float().reshape(-1, out.logits.size(-1))
        hand = torch.nn.functional.cross_entropy(logits, want.reshape(-1), ignore_index=IGNORE_INDEX)
        assert int((want != IGNORE_INDEX).sum()) > 0
        assert float(out.loss) == pytest.approx(float(hand), rel=1e-5)


def test_the_hf_trainer_collator_gives_the_same_labels_for_a_pipeline():
    pytest.importorskip("accelerate")
    from tokenmill.train.hf import HFTrainerData

    pipe = Pipeline.from_sequence(documents()).pack(L, buffer_size=16, pad_id=0)
    data = HFTrainerData(pipe)
    data.dataset.restart(None, 4)
    samples = [s for _, s in zip(range(4), data.dataset)]
    batch = data.collator(samples)
    assert "shift_labels" not in batch
    want = hand_targets(batch["input_ids"].numpy(), across_documents=False)
    # labels aligned with input_ids (the model shifts them; position 0 is never a target)
    assert np.array_equal(batch["labels"].numpy()[:, 1:], want[:, :-1])
