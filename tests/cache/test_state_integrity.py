"""Issue 13, items 5 and 8: a loader state resumes only on the data it was saved on, and every edited field of a
state is a clear StateError, never a traceback or a resume at an impossible position."""

from __future__ import annotations

import pytest

from conftest import build
from tokenmill.errors import StateError
from tokenmill.loader import BatchIterator, TokenDataset


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jsonl_shards, tokenizer_path):
    return build(jsonl_shards, tmp_path_factory.mktemp("state") / "c", tokenizer_path)


def _state(cache, **edits):
    it = BatchIterator(TokenDataset(str(cache), seq_len=16, seed=1), global_batch_size=4)
    next(it)
    next(it)
    state = it.state_dict()
    state.update(edits)
    return state


def _resume(cache, state):
    it = BatchIterator(TokenDataset(str(cache), seq_len=16, seed=1), global_batch_size=4)
    with pytest.warns(DeprecationWarning):
        it.load_state_dict(state)
    return it


def test_a_state_is_refused_on_the_same_files_prepared_in_another_order(
    tmp_path, jsonl_shards, tokenizer_path
):
    """Item 5: same options and tokenizer, same version number, other data order: refused."""
    a = build(jsonl_shards, tmp_path / "a", tokenizer_path)
    b = build(list(reversed(jsonl_shards)), tmp_path / "b", tokenizer_path)
    state = _state(a)
    _resume(a, state)  # its own cache resumes
    with pytest.raises(StateError, match="holds other data than when the loader state was saved"):
        _resume(b, state)


@pytest.mark.parametrize(
    "edits",
    [
        {"epoch": -1},
        {"epoch": 10**12},
        {"samples_in_epoch": 10**9},
        {"step": 10**9},
        {"epoch": "0"},
        {"step": None},
        {"samples_consumed": -3},
        {"global_batch_size": 0},
        {"drop_last": "no"},
        {"seed": 1.5},
        {"fingerprint": []},
        {"cache_versions": ["x"]},
        {"epoch_samples": -1},
        {"data": "abc"},
    ],
    ids=repr,
)
def test_every_edited_state_field_is_a_clear_state_error(cache, edits):
    """Item 8."""
    with pytest.raises(StateError):
        _resume(cache, _state(cache, **edits))


def test_a_state_missing_a_field_is_a_clear_state_error(cache):
    state = _state(cache)
    for key in list(state):
        if key in ("format", "data"):
            continue
        broken = {k: v for k, v in state.items() if k != key}
        with pytest.raises(StateError, match=repr(key)):
            _resume(cache, broken)
