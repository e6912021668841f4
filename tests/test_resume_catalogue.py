"""Every stage and every resumable iterator of the library through the shipped checker,
:func:`tokenmill.testing.assert_resumes`: resumed at the start, mid-epoch, on each side of epoch ends, across
epochs and at the end, with states that are plain JSON of one structure.

The catalogue is complete by construction: a test enumerates ``Pipeline``'s public methods and every
``ResumableIterator`` class of the library, and fails when one is not exercised here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tokenmill
from tokenmill.pipeline import Pipeline
from tokenmill.state import ResumableIterator
from tokenmill.testing import assert_resumes
from tokenmill.tokenizer import load_tokenizer

# --- data --------------------------------------------------------------------------------------------------------


def token_docs(n: int = 30, mask: bool = False) -> list[dict]:
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        length = int(rng.integers(0, 40)) if i % 7 else 0
        doc = {"id": i, "input_ids": np.arange(1000 * i, 1000 * i + length, dtype=np.int32)}
        if mask:
            doc["loss_mask"] = np.arange(length) % 3 != 0
        out.append(doc)
    return out


def tokens(repeat: bool = False) -> Pipeline:
    """Token documents, a new order every epoch when repeated (30 per epoch)."""
    return Pipeline.from_sequence(token_docs(30, mask=True), repeat=repeat, shuffle=repeat, shuffle_seed=5)


def texts(documents: list[str], n: int = 40) -> Pipeline:
    return Pipeline.from_sequence([{"text": d, "i": i} for i, d in enumerate(documents[:n])])


def _add_len(x: dict) -> dict:
    return {**x, "n": len(x["input_ids"])}


def _even(x: dict) -> bool:
    return int(np.sum(x["input_ids"])) % 2 == 0


def _long_reversed(x: dict) -> dict | None:
    return None if len(x["input_ids"]) < 5 else {**x, "input_ids": x["input_ids"][::-1].copy()}


class Ctx:
    """What the entries build on: real files, a real tokenizer, a real prepared cache, a saved HF dataset."""

    def __init__(self, tmp: Any, shards: list, documents: list[str], tokenizer_path: Any) -> None:
        self.tmp, self.shards, self.documents, self.tokenizer_path = tmp, shards, documents, tokenizer_path
        self.tok = load_tokenizer(str(tokenizer_path))
        self._cache: str | None = None

    @property
    def cache(self) -> str:
        if self._cache is None:
            from tokenmill.prepare import PrepareConfig, prepare

            out = self.tmp / "cache"
            files = [str(p) for p in self.shards[:2]]
            prepare(
                PrepareConfig(sources=files, output=str(out), tokenizer=str(self.tokenizer_path), workers=1)
            )
            self._cache = str(out)
        return self._cache


# name -> (build description from ctx, assert_resumes keyword arguments)
Entry = tuple[Callable[[Ctx], Any], dict[str, Any]]
EPOCHS = {"max_items": 75, "epoch_length": 30}


def _hf(ctx: Ctx) -> Pipeline:
    datasets = pytest.importorskip("datasets")
    path = ctx.tmp / "hf"
    if not path.exists():
        datasets.Dataset.from_dict({"text": ctx.documents[:50], "i": list(range(50))}).save_to_disk(str(path))
    return Pipeline.from_hf(str(path), repeat=True)


def _bad_records() -> list[dict]:
    return [{"text": "x" * (i % 5 + 1)} if i % 4 else {"other": i} for i in range(40)]


def _bad_files(ctx: Ctx) -> Pipeline:
    files = []
    for f in range(3):
        path = ctx.tmp / f"bad-{f}.jsonl"
        lines = ['{"text": "broken' if i % 5 == 2 else f'{{"text": "{f}-{i}"}}' for i in range(20)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(str(path))
    return Pipeline.from_files(files, repeat=True, n_active_shards=2, on_error="skip")


class _PrefetchedLoader:
    """The loader's batches read ahead as tensors: tokenmill.torch.PrefetchIterator over a resumed BatchIterator."""

    def __init__(self, cache: str, batch: int) -> None:
        from tokenmill.loader import TokenDataset

        self.dataset, self.batch = TokenDataset(cache, seq_len=128, seed=3), batch

    def iter(self, state=None):
        from tokenmill.loader import Batches
        from tokenmill.torch import PrefetchIterator

        batches = Batches(self.dataset, self.batch, rank=0, world_size=1).iter(state)
        return PrefetchIterator(batches, depth=3, workers=2)


def _loader_epochs(ctx: Ctx, batch: int = 16) -> dict[str, Any]:
    from tokenmill.loader import TokenDataset

    per_epoch = len(TokenDataset(ctx.cache, seq_len=128)) // batch
    assert per_epoch >= 3, "the fixture cache is too small to cross epochs"
    return {"epoch_length": per_epoch, "max_items": 2 * per_epoch + 3}


def _prefetched_loader(ctx: Ctx) -> Any:
    pytest.importorskip("torch")
    return _PrefetchedLoader(ctx.cache, 16), _loader_epochs(ctx)


def _loader_batches(ctx: Ctx, mode: str, mixed: bool = False) -> Any:
    from tokenmill.loader import Batches, Mixture, TokenDataset

    dataset = TokenDataset(ctx.cache, seq_len=128, mode=mode, seed=4)
    source = (
        Mixture([(dataset, 0.7), (TokenDataset(ctx.cache, seq_len=128, mode=mode), 0.3)])
        if mixed
        else dataset
    )
    per_epoch = source.epoch_length(0) // 16
    return Batches(source, 16, rank=0, world_size=1), {
        "epoch_length": per_epoch,
        "max_items": 2 * per_epoch + 3,
    }


def _torch_view(ctx: Ctx) -> Any:
    pytest.importorskip("torch")
    from tokenmill.loader import TokenDataset
    from tokenmill.torch import TorchIterableDataset

    view = TorchIterableDataset(TokenDataset(ctx.cache, seq_len=128, seed=6), 16, rank=0, world_size=1)
    return view, _loader_epochs(ctx)


def _trainer_data(ctx: Ctx) -> Any:
    pytest.importorskip("torch")
    from tokenmill.train.config import TrainConfig
    from tokenmill.train.data import make_stream

    config = TrainConfig(data=ctx.cache, seq_len=128, global_batch_size=16, shuffle=True, prefetch=2)
    return make_stream(config, None, 0, 1).batches, _loader_epochs(ctx)


def _hf_chunks(ctx: Ctx, pipeline: bool) -> Any:
    pytest.importorskip("transformers")
    from tokenmill.loader import TokenDataset
    from tokenmill.train.hf import _chunks

    if pipeline:
        return _chunks(tokens(repeat=True).concat_chunk(8), 4), {"max_items": 60}
    return _chunks(TokenDataset(ctx.cache, seq_len=128, seed=2), 16), _loader_epochs(ctx)


def _epochraft(kind: str) -> Any:
    """tokenmill.epochraft's own stages, through the pipeline each dataset runs (``dataset.pipeline``)."""
    pytest.importorskip("torch")
    from tokenmill.epochraft import CheckpointableDataset, interleave_datasets

    samples = [{"input_ids": list(range(i, i + 1 + i % 9))} for i in range(30)]
    source = CheckpointableDataset.from_sequence(samples, repeat=kind != "cache")
    if kind == "pack_chunk":
        return source.pack_chunk(12, ["input_ids"]).pipeline
    if kind == "interleave_datasets":
        other = CheckpointableDataset.from_sequence(samples[:7], repeat=True)
        return interleave_datasets([source, other], weights=[2, 1], chunk_size=5).pipeline
    if kind == "cache":
        return source.cache().pipeline.repeat(3)

    class Countdown(CheckpointableDataset):  # a user's subclass with its own iter(state_dict)
        def iter(self, state_dict=None):
            return CheckpointableDataset.from_sequence(samples).iter(state_dict=state_dict)

    return Countdown().pipeline


def _to_torch(ctx: Ctx) -> Any:
    pytest.importorskip("torch")
    return tokens(repeat=True).concat_chunk(16).batch(2).to_torch()


CATALOGUE: dict[str, Entry] = {
    # sources
    "from_sequence": (lambda c: tokens(repeat=True), EPOCHS),
    "from_iterable": (lambda c: Pipeline.from_iterable(token_docs(30), repeat=True), EPOCHS),
    "from_files": (
        lambda c: Pipeline.from_files(
            [str(p) for p in c.shards], repeat=True, shuffle_shards=True, n_active_shards=2
        ),
        {"max_items": 260, "epoch_length": 200},
    ),
    "from_files(on_error=skip)": (_bad_files, {"max_items": 120, "epoch_length": 48}),
    "from_cache": (lambda c: Pipeline.from_cache(c.cache, repeat=True, shuffle=True), {"max_items": 260}),
    "from_hf": (_hf, {"max_items": 120, "epoch_length": 50}),
    "interleave": (
        lambda c: Pipeline.interleave([tokens(), Pipeline.from_sequence(token_docs(9))], [2, 1], stop="all"),
        {},
    ),
    "concat": (lambda c: Pipeline.concat([tokens(), Pipeline.from_sequence(token_docs(9))]), {}),
    # item transforms
    "map": (lambda c: tokens(repeat=True).map(_add_len), EPOCHS),
    "filter": (lambda c: tokens(repeat=True).filter(_even), EPOCHS),
    "filter_map": (lambda c: tokens().filter_map(_long_reversed), {}),
    "parallel_map": (
        lambda c: tokens(repeat=True).parallel_map(
            _add_len, max_workers=2, prefetch_factor=2, executor_type="thread"
        ),
        EPOCHS,
    ),
    "parallel_filter": (
        lambda c: tokens().parallel_filter(_even, max_workers=2, prefetch_factor=3, executor_type="thread"),
        {},
    ),
    "parallel_filter_map": (
        lambda c: tokens(repeat=True).parallel_filter_map(
            _long_reversed, max_workers=2, prefetch_factor=2, ordered=False, executor_type="thread"
        ),
        EPOCHS,
    ),
    # tokens
    "tokenize": (lambda c: texts(c.documents).tokenize(c.tok), {}),
    "format": (lambda c: texts(c.documents).format(tokenizer=c.tok), {}),
    "format(on_error=skip)": (
        lambda c: Pipeline.from_sequence(_bad_records()).format(
            format="text", tokenizer=c.tok, on_error="skip"
        ),
        {},
    ),
    "add_bos_eos": (lambda c: tokens().add_bos_eos(1, 2), {}),
    "ensure_bos_eos": (lambda c: texts(c.documents).tokenize(c.tok).ensure_bos_eos(), {}),
    "chunk": (lambda c: tokens(repeat=True).chunk(7, drop_remainder=False), {"max_items": 150}),
    "concat_chunk": (lambda c: tokens(repeat=True).concat_chunk(16), {"max_items": 120}),
    "pack": (lambda c: tokens(repeat=True).pack(48, buffer_size=7, pad_id=0), {"max_items": 80}),
    "pad": (lambda c: tokens(repeat=True).pad({"input_ids": 0}, 40), EPOCHS),
    # order and grouping
    "shuffle": (lambda c: tokens(repeat=True).shuffle(8, seed=3), EPOCHS),
    "batch": (lambda c: tokens(repeat=True).concat_chunk(8).batch(3), {"max_items": 60}),
    "take": (lambda c: tokens(repeat=True).take(50), {}),
    "skip": (lambda c: tokens().skip(4), {}),
    "stride": (lambda c: tokens(repeat=True).stride(3, 1), {"max_items": 40, "epoch_length": 10}),
    "enumerate": (lambda c: tokens().enumerate(), {}),
    "repeat": (lambda c: tokens().repeat(3), {"epoch_length": 30}),
    "prefetch": (lambda c: tokens(repeat=True).map(_add_len).prefetch(3), EPOCHS),
    "shard": (lambda c: tokens(repeat=True).shard(1, 3), {"max_items": 40, "epoch_length": 10}),
    "cache": (lambda c: texts(c.documents).tokenize(c.tok).cache(str(c.tmp / "piped")).repeat(2), {}),
    "to_torch": (_to_torch, {"max_items": 40}),
    # the loader's batches in every mode and over a mixture; the torch view of them
    "loader.Batches(windows)": (lambda c: _loader_batches(c, "windows"), {}),
    "loader.Batches(packed)": (lambda c: _loader_batches(c, "packed"), {}),
    "loader.Batches(padded)": (lambda c: _loader_batches(c, "padded"), {}),
    "loader.Batches(mixture)": (lambda c: _loader_batches(c, "windows", mixed=True), {}),
    "torch.TorchIterableDataset": (_torch_view, {}),
    # the loader's batches through the torch prefetch, the trainer's data and the HF Trainer adapter's chunks
    "torch.PrefetchIterator": (_prefetched_loader, {}),
    "train.data.make_stream": (_trainer_data, {}),
    "train.hf(loader)": (lambda c: _hf_chunks(c, pipeline=False), {}),
    "train.hf(pipeline)": (lambda c: _hf_chunks(c, pipeline=True), {}),
    # tokenmill.epochraft's stages
    "epochraft.pack_chunk": (lambda c: _epochraft("pack_chunk"), {"max_items": 80}),
    "epochraft.interleave_datasets": (lambda c: _epochraft("interleave_datasets"), {"max_items": 80}),
    # its state names the parent's position only while memory does not hold the items yet, so a resumed run
    # (memory filled by the first) reports other, equally valid, states
    "epochraft.cache()": (
        lambda c: _epochraft("cache"),
        {"epoch_length": 30, "max_items": 90, "compare_states": False},
    ),
    "epochraft.subclass": (lambda c: _epochraft("subclass"), {}),
}


def _build(name: str, ctx: Ctx) -> tuple[Any, dict[str, Any]]:
    build, options = CATALOGUE[name]
    made = build(ctx)
    if isinstance(made, tuple):  # the entry computed more options from its data
        return made[0], {**options, **made[1]}
    return made, options


# Pipeline members that are not stages
NOT_STAGES = {"iter", "signature", "tokenizer", "node"}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, jsonl_shards, documents, tokenizer_path) -> Ctx:
    return Ctx(tmp_path_factory.mktemp("catalogue"), jsonl_shards, documents, tokenizer_path)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_resumes(name, ctx):
    description, options = _build(name, ctx)
    items = assert_resumes(description, **options)
    assert items, f"{name}: the catalogue entry yields nothing, so it tests nothing"


def test_every_pipeline_method_is_in_the_catalogue():
    methods = {n for n, _ in inspect.getmembers(Pipeline) if not n.startswith("_")} - NOT_STAGES
    assert not methods - set(CATALOGUE), (
        f"add these Pipeline methods to CATALOGUE: {sorted(methods - set(CATALOGUE))}"
    )


def _iterators_in(it: Any) -> set[type]:
    """The ResumableIterator classes of an iterator tree (parents, sources, nested stages)."""
    seen: set[int] = set()
    found: set[type] = set()
    todo: deque[Any] = deque([it])
    while todo:
        obj = todo.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, ResumableIterator):
            found.add(type(obj))
            todo.extend(vars(obj).values())
        elif isinstance(obj, (list, tuple, deque)):
            todo.extend(obj)
    return found


def _library_iterators() -> set[type]:
    for info in pkgutil.walk_packages(tokenmill.__path__, "tokenmill."):
        if info.name.startswith("tokenmill.cli"):
            continue  # the command line holds no iterator of its own
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency that is not installed
            continue
    out: set[type] = set()
    todo = [ResumableIterator]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("tokenmill.") and sub.__module__ != "tokenmill.state":
                out.add(sub)
    return out


def test_every_library_iterator_is_in_the_catalogue(ctx):
    covered: set[type] = set()
    for name in CATALOGUE:
        description, _ = _build(name, ctx)
        it = description.iter()
        try:
            next(it, None)  # some stages open their parents lazily
            covered |= _iterators_in(it)
        finally:
            it.close()
    abstract = {c for c in _library_iterators() if c.__subclasses__() and not _instantiated(c, covered)}
    missing = _library_iterators() - covered - abstract
    names = sorted(f"{c.__module__}.{c.__qualname__}" for c in missing)
    assert not missing, f"add a CATALOGUE entry that runs these iterators: {names}"


def _instantiated(cls: type, covered: set[type]) -> bool:
    return cls in covered
