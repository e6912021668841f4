"""``CheckpointableDataset``: epochraft's class, built on :class:`tokenmill.Pipeline`.

Every method returns a new dataset around a new pipeline, so the pipeline's resume contract, its file reader,
sharding and parallel stages are what runs. What is epochraft's own lives here and in ``stages.py``: token
columns handed out as 1-D ``torch.long`` tensors, ``tokenize`` calling the tokenizer as transformers does,
``ensure_bos_eos`` deciding from the tokenizer's behaviour, greedy ``pack_chunk``, a fixed interleave order and
an in-memory ``cache()``. ``dataset.pipeline`` is the underlying pipeline, for tokenmill's own transforms.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tokenmill.epochraft.boundaries import boundary_tokens
from tokenmill.epochraft.errors import EpochraftValueError
from tokenmill.epochraft.stages import (
    CallTokenizer,
    CallTokenizerNode,
    DatasetNode,
    MemoryCacheNode,
    OrderedInterleaveNode,
    PackChunkNode,
    is_transformers_tokenizer,
)
from tokenmill.epochraft.tensors import AddBosEos, Pad, ToArrays, ToTensors
from tokenmill.pipeline import Pipeline, PipelineIterator

if TYPE_CHECKING:
    from types import TracebackType

Sample = dict[str, Any]
StateDict = dict[str, Any]
TokenArray = list[int] | np.ndarray | torch.Tensor
FilterMapFn = Callable[[Sample], Sample | None]
CollateFn = Callable[[list[Sample]], Sample]
ParallelExecutorType = Literal["process", "thread"]
FileFormat = Literal["auto", "jsonl", "cbor"]


class CheckpointableIterator(abc.ABC):
    """An iterator with ``state_dict()`` and ``close()``; also a context manager."""

    def __iter__(self) -> CheckpointableIterator:
        return self

    @abc.abstractmethod
    def __next__(self) -> Sample: ...

    @abc.abstractmethod
    def state_dict(self) -> StateDict: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> CheckpointableIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


class PipelineCheckpointableIterator(CheckpointableIterator):
    """A running pipeline seen as epochraft's iterator (its state is the pipeline's plain-JSON state)."""

    def __init__(self, it: PipelineIterator) -> None:
        self.it = it

    def __next__(self) -> Sample:
        return next(self.it)

    def state_dict(self) -> StateDict:
        return self.it.state_dict()

    def close(self) -> None:
        self.it.close()


class CheckpointableDataset(torch.utils.data.IterableDataset, abc.ABC):
    """A resumable stream of samples. Subclasses may implement ``iter(state_dict)`` themselves, as in epochraft."""

    def __init__(self, pipeline: Pipeline | None = None, tokenizer: Any = None) -> None:
        self._pipeline = pipeline
        self._tokenizer = tokenizer  # the one given to tokenize, the default of ensure_bos_eos

    # --- running ---------------------------------------------------------------------------------------------
    @property
    def pipeline(self) -> Pipeline:
        """The tokenmill pipeline this dataset runs (a subclass's own ``iter`` wrapped as its source)."""
        own = getattr(self, "_pipeline", None)
        return own if own is not None else Pipeline(DatasetNode(self))

    def iter(self, state_dict: StateDict | None = None) -> CheckpointableIterator:
        """An iterator from the start, or resumed from ``state_dict`` (an earlier iterator's ``state_dict()``)."""
        if getattr(self, "_pipeline", None) is None:
            raise NotImplementedError("a CheckpointableDataset subclass must implement iter(state_dict)")
        return PipelineCheckpointableIterator(self._worker_pipeline().iter(state_dict=state_dict))

    def __iter__(self) -> CheckpointableIterator:
        return self.iter(state_dict=None)

    def _worker_pipeline(self) -> Pipeline:
        """In a DataLoader worker, this worker's share (epochraft would hand every worker the whole stream)."""
        info = torch.utils.data.get_worker_info()
        if info is None or info.num_workers <= 1:
            return self.pipeline
        return self.pipeline.shard(info.id, info.num_workers)

    def _then(self, pipeline: Pipeline) -> CheckpointableDataset:
        return CheckpointableDataset(pipeline, getattr(self, "_tokenizer", None))

    def __repr__(self) -> str:
        return f"CheckpointableDataset({self.pipeline.signature})"

    # --- sources ---------------------------------------------------------------------------------------------
    @staticmethod
    def from_sequence(
        sequence: Sequence[Sample], repeat: bool = False, shuffle: bool = False, shuffle_seed: int = 42
    ) -> CheckpointableDataset:
        return CheckpointableDataset(
            Pipeline.from_sequence(sequence, repeat=repeat, shuffle=shuffle, shuffle_seed=shuffle_seed)
        )

    @staticmethod
    def from_iterable(iterable: Iterable[Sample], repeat: bool = False) -> CheckpointableDataset:
        """Items of a re-iterable that yields the same items each time (resume iterates it again and skips)."""
        return CheckpointableDataset(Pipeline.from_iterable(iterable, repeat=repeat))

    @staticmethod
    def from_mosaicml(mosaicml_dataset: Any, repeat: bool = False) -> CheckpointableDataset:
        """Items of a MosaicML ``StreamingDataset``, iterated as it iterates itself (each pass is its next epoch,
        shuffled by it when asked). Resume iterates it again and skips what was received, as ``from_iterable``."""
        return CheckpointableDataset(Pipeline.from_iterable(mosaicml_dataset, repeat=repeat))

    @staticmethod
    def from_files(
        urls: str | Sequence[str],
        repeat: bool = False,
        shuffle_shards: bool = False,
        format: FileFormat = "auto",
        n_active_shards: int = 10,
        n_standby_shards: int = 2,
        timeout: float = 60.0,
        n_prefetch_samples: int = 10,
        seed: int = 42,
        **options: Any,
    ) -> CheckpointableDataset:
        """Records of JSONL or CBOR files (also Parquet, CSV, text; local paths or URLs, brace patterns), read
        round-robin from ``n_active_shards`` files and resumed by seek. ``options`` go to
        :meth:`tokenmill.Pipeline.from_files` (``storage_options``, ``retries``, ``on_error``, ...)."""
        if isinstance(urls, str):
            urls = [urls]
        if repeat and not urls:
            raise EpochraftValueError("from_files: no files given, and repeat=True would wait forever")
        return CheckpointableDataset(
            Pipeline.from_files(
                list(urls),
                repeat=repeat,
                shuffle_shards=shuffle_shards,
                format=format,
                n_active_shards=n_active_shards,
                n_standby_shards=n_standby_shards,
                timeout=timeout,
                n_prefetch_samples=n_prefetch_samples,
                seed=seed,
                **options,
            )
        )

    # --- item transforms -------------------------------------------------------------------------------------
    def map(self, fn: Callable[[Sample], Sample]) -> CheckpointableDataset:
        return self._then(self.pipeline.map(fn))

    def filter(self, fn: Callable[[Sample], bool]) -> CheckpointableDataset:
        return self._then(self.pipeline.filter(fn))

    def filter_map(self, fn: FilterMapFn) -> CheckpointableDataset:
        return self._then(self.pipeline.filter_map(fn))

    def parallel_map(
        self,
        fn: Callable[[Sample], Sample],
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: ParallelExecutorType = "process",
    ) -> CheckpointableDataset:
        return self._then(
            self.pipeline.parallel_map(fn, max_workers, prefetch_factor, ordered, executor_type)
        )

    def parallel_filter(
        self,
        fn: Callable[[Sample], bool],
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: ParallelExecutorType = "process",
    ) -> CheckpointableDataset:
        return self._then(
            self.pipeline.parallel_filter(fn, max_workers, prefetch_factor, ordered, executor_type)
        )

    def parallel_filter_map(
        self,
        fn: FilterMapFn,
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: ParallelExecutorType = "process",
    ) -> CheckpointableDataset:
        return self._then(
            self.pipeline.parallel_filter_map(fn, max_workers, prefetch_factor, ordered, executor_type)
        )

    def enumerate(self, count_column: str = "step") -> CheckpointableDataset:
        return self._then(self.pipeline.enumerate(count_column))

    def take(self, max_count: int) -> CheckpointableDataset:
        return self._then(self.pipeline.take(max_count))

    def stride(self, interval: int, offset: int) -> CheckpointableDataset:
        return self._then(self.pipeline.stride(interval, offset))

    def shuffle(self, buffer_size: int, seed: int = 42) -> CheckpointableDataset:
        """tokenmill's stratified block shuffle over ``buffer_size`` items (its state is a position, not the
        buffer; the order differs from epochraft's random-slot buffer for the same seed)."""
        if buffer_size < 1:
            raise EpochraftValueError(f"Invalid buffer_size (got {buffer_size}, expected >= 1)")
        return self._then(self.pipeline.shuffle(buffer_size, seed))

    def batch(
        self,
        batch_size: int,
        collate_fn: CollateFn = torch.utils.data.default_collate,
        drop_last: bool = False,
    ) -> CheckpointableDataset:
        """Lists of ``batch_size`` samples through ``collate_fn`` (torch's ``default_collate`` stacks tensors)."""
        return self._then(self.pipeline.batch(batch_size, collate_fn=collate_fn, drop_last=drop_last))

    # --- tokens ----------------------------------------------------------------------------------------------
    def tokenize(
        self,
        tokenizer: Any,
        tokenizer_kwargs: dict[str, Any] | None = None,
        target_column: str = "text",
        parallel: bool = True,
        max_workers: int | None = 1,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: ParallelExecutorType = "thread",
    ) -> CheckpointableDataset:
        """Merge ``tokenizer(sample[target_column], **tokenizer_kwargs)`` into each sample (``input_ids``,
        ``attention_mask``, ... as the tokenizer returns them, special tokens included).

        ``tokenizer`` is a transformers tokenizer, a tokenmill tokenizer or anything ``load_tokenizer`` takes (a
        path, a name); a tokenmill tokenizer adds no special tokens and gives lists, as a transformers tokenizer
        without special tokens would. Batches of records are encoded in one call in a background thread
        (``parallel=False``: in the consumer's thread); ``max_workers``, ``prefetch_factor``, ``ordered`` and
        ``executor_type`` are accepted for epochraft's signature (a batch call releases the GIL instead).
        """
        del max_workers, prefetch_factor, ordered, executor_type
        if not is_transformers_tokenizer(tokenizer):
            from tokenmill.pipeline.tokenize import resolve_tokenizer

            tokenizer = resolve_tokenizer(tokenizer)
        if parallel:
            os.environ.setdefault(
                "TOKENIZERS_PARALLELISM", "false"
            )  # as epochraft: no fork warnings in workers
        node = CallTokenizerNode(
            self.pipeline.node,
            CallTokenizer(tokenizer, dict(tokenizer_kwargs or {})),
            target_column,
            prefetch=2 if parallel else 0,
        )
        return CheckpointableDataset(Pipeline(node), tokenizer)

    def add_bos_eos(
        self, bos_token_id: int | None, eos_token_id: int | None, target_column: str = "input_ids"
    ) -> CheckpointableDataset:
        """The given ids before and after every sample's ``target_column`` (None: nothing), as a long tensor."""
        return self._then(self.pipeline.map(AddBosEos(bos_token_id, eos_token_id, target_column)))

    def ensure_bos_eos(
        self, tokenizer: Any = None, target_column: str = "input_ids"
    ) -> CheckpointableDataset:
        """Add what the tokenizer does not add itself: EOS at the end, BOS at the start where the tokenizer has
        one that differs from EOS. With no argument, the tokenizer given to ``tokenize``."""
        tok = tokenizer if tokenizer is not None else getattr(self, "_tokenizer", None)
        if tok is None:
            raise EpochraftValueError("ensure_bos_eos needs a tokenizer: ensure_bos_eos(tokenizer)")
        bos, eos = boundary_tokens(tok)
        return self.add_bos_eos(bos, eos, target_column)

    def pad(self, pad_values: Mapping[str, int], chunk_length: int) -> CheckpointableDataset:
        """Each column of ``pad_values`` padded with its value to ``chunk_length`` (longer: ValueError)."""
        return self._then(self.pipeline.map(Pad(dict(pad_values), chunk_length)))

    def chunk(
        self, chunk_length: int, target_columns: Sequence[str] = ("input_ids",), drop_remainder: bool = True
    ) -> CheckpointableDataset:
        """Each sample cut into ``chunk_length`` pieces of ``target_columns`` (the shorter tail kept unless
        ``drop_remainder``); pieces hold only ``target_columns``."""
        cols = tuple(target_columns)
        pipe = self.pipeline.map(ToArrays(cols)).chunk(chunk_length, cols, drop_remainder)
        return self._then(pipe.map(ToTensors(cols)))

    def concat_chunk(
        self, chunk_length: int, target_columns: Sequence[str] = ("input_ids",)
    ) -> CheckpointableDataset:
        """Samples joined into one stream of ``target_columns``, cut into ``chunk_length`` pieces."""
        cols = tuple(target_columns)
        pipe = self.pipeline.map(ToArrays(cols)).concat_chunk(chunk_length, cols)
        return self._then(pipe.map(ToTensors(cols)))

    def pack_chunk(
        self, chunk_length: int, target_columns: Sequence[str], discard_long_samples: bool = False
    ) -> CheckpointableDataset:
        """Whole samples appended in order while they fit in ``chunk_length`` (greedy); a longer sample goes out
        alone, cut to ``chunk_length``, or is dropped with ``discard_long_samples``. Pad with ``pad`` after."""
        cols = tuple(target_columns)
        node = PackChunkNode(self.pipeline.map(ToArrays(cols)).node, chunk_length, cols, discard_long_samples)
        return self._then(Pipeline(node).map(ToTensors(cols)))

    def cache(self, path: str | os.PathLike[str] | None = None, **options: Any) -> CheckpointableDataset:
        """Without ``path`` (epochraft's): samples kept in memory as the first pass reads them. With ``path``
        (tokenmill's): documents written once to a token cache on disk, read from there by any process."""
        if path is None:
            return self._then(Pipeline(MemoryCacheNode(self.pipeline.node)))
        return self._then(self.pipeline.cache(str(path), **options))

    def __add__(self, other: CheckpointableDataset) -> CheckpointableDataset:  # type: ignore[override]
        return concat_datasets([self, other])


def interleave_datasets(
    sources: Sequence[CheckpointableDataset], weights: Sequence[float] | None = None, chunk_size: int = 1024
) -> CheckpointableDataset:
    """Samples of ``sources`` in a fixed order by ``weights`` (equal by default), repeating every ``chunk_size``
    steps; ends when the source whose turn it is runs out. tokenmill's ``Pipeline.interleave`` draws at random
    and has other stop policies."""
    w = tuple(float(x) for x in weights) if weights is not None else (1.0,) * len(sources)
    node = OrderedInterleaveNode(tuple(s.pipeline.node for s in sources), w, chunk_size)
    return CheckpointableDataset(Pipeline(node))


def concat_datasets(sources: Sequence[CheckpointableDataset]) -> CheckpointableDataset:
    """The datasets one after the other."""
    if not sources:
        raise EpochraftValueError("concat_datasets needs at least one dataset")
    return CheckpointableDataset(Pipeline.concat([s.pipeline for s in sources]))
