"""What ``labels`` means in every batch tokenmill yields, and the one value that marks an untrained position.

One convention, Hugging Face's, everywhere (loader in every mode, mixtures, pipeline, torch views, adapters,
``tokenmill batches``): ``labels`` is aligned with ``input_ids``; position ``t`` is trained to predict
``labels[t + 1]``; ``IGNORE_INDEX`` (-100, the value ``torch.nn.functional.cross_entropy`` and transformers' losses
skip) marks loss-masked tokens, padding and the first token of every packed document (no document is trained to
predict the next one). So ``model(**batch)`` on a transformers causal LM computes the right next-token loss.

Anything already shifted has another name: ``shift_labels[t]`` is the target of input ``t``. The loader's windows
mode reads ``seq_len + 1`` tokens per sample, and the last input's target does not fit in aligned labels, so its
batches carry ``shift_labels`` too; transformers' causal-LM loss (``ForCausalLMLoss``, since transformers 4.50,
huggingface/transformers#36607) uses ``shift_labels`` instead of shifting ``labels`` when it is given, so no
prediction is lost. A few model heads dropped it before huggingface/transformers#48493 (Gemma3, Llama4, Bloom, some
VLMs); ``tests/loader/test_hf_loss.py`` checks Llama, ``tests/test_train_hf.py`` GPT-2.
:func:`next_token_targets` gives the targets of a batch either way, for a loss written by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE_INDEX = -100


def aligned_labels(shift_labels: np.ndarray) -> np.ndarray:
    """Aligned labels from pre-shifted targets: ``aligned[..., t] = shift_labels[..., t - 1]``, -100 at ``t = 0``.

    The same targets, except the last input's (aligned labels have no position left for it).
    """
    out = np.full_like(shift_labels, IGNORE_INDEX)
    out[..., 1:] = shift_labels[..., :-1]
    return out


def next_token_targets(batch: dict[str, Any]) -> Any:
    """The target of every input position (``[..., seq_len]``, -100 where nothing is trained): the batch's
    ``shift_labels`` when it has them, else its aligned ``labels`` shifted left by one (the last position gets -100).

    Works on numpy arrays and torch tensors alike (only slicing and one concatenation).
    """
    if batch.get("shift_labels") is not None:
        return batch["shift_labels"]
    labels = batch["labels"]
    if isinstance(labels, np.ndarray):
        pad = np.full(labels.shape[:-1] + (1,), IGNORE_INDEX, dtype=labels.dtype)
        return np.concatenate([labels[..., 1:], pad], axis=-1)
    import torch

    pad = torch.full(labels.shape[:-1] + (1,), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
    return torch.cat([labels[..., 1:], pad], dim=-1)
