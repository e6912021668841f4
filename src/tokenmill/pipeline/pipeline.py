"""The user-facing :class:`Pipeline`: constructors and chainable transforms, with epochraft's surface.

    pipe = (
        Pipeline.from_files("s3://bucket/cc-{00..99}.jsonl.gz", repeat=True, shuffle_shards=True)
        .tokenize(tokenizer).ensure_bos_eos().concat_chunk(1024).shuffle(1000).batch(8)
    )
    it = pipe.iter()
    batch = next(it)
    state = it.state_dict()          # small, plain JSON
    it = pipe.iter(state)            # resumes at the same next batch; `state` is not modified

A pipeline is an immutable description: every transform returns a new one, and nothing is opened until
``iter()``. Each transform lives in its own module; this one only wires them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tokenmill.errors import ConfigError, StateError
from tokenmill.pipeline.base import Node, Stage, StateDict
from tokenmill.state import ResumableIterator

STATE_FORMAT = "tokenmill.pipeline/1"


class PipelineIterator(ResumableIterator[Any]):
    """A running pipeline: an iterator with ``state_dict()`` and ``close()`` (also a context manager)."""

    def __init__(self, pipeline: Pipeline, stage: Stage) -> None:
        self.pipeline = pipeline
        self.stage = stage

    def next(self) -> Any:
        return next(self.stage)

    def get_state(self) -> StateDict:
        """What the consumer has received so far, as plain JSON-able data (no samples, no pickle)."""
        return {"format": STATE_FORMAT, "chain": self.pipeline.signature, "state": self.stage.state_dict()}

    def parents(self) -> tuple[Stage, ...]:
        return (self.stage,)


class Pipeline:
    """A chain of stages; see the module docstring and docs/pipeline.md."""

    def __init__(self, node: Node) -> None:
        self.node = node

    # --- running -----------------------------------------------------------------------------------------
    @property
    def signature(self) -> str:
        return self.node.signature()

    @property
    def tokenizer(self) -> Any:
        """The tokenizer given to ``tokenize``/``format`` upstream (used by ``ensure_bos_eos`` and ``pad``)."""
        return self.node.tokenizer

    def iter(
        self, state: StateDict | None = None, *, state_dict: StateDict | None = None
    ) -> PipelineIterator:
        """Open the pipeline, resumed from ``state`` (an ``it.state_dict()``) when given.

        ``state_dict=`` is epochraft's name for the same argument, kept so epochraft code runs unchanged.
        """
        if state_dict is not None:
            if state is not None:
                raise ConfigError("pass the state once: iter(state) (state_dict= is its epochraft name)")
            state, state_dict = state_dict, None
        inner = None
        if state is not None:
            if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
                raise StateError(
                    "not a tokenmill pipeline state (expected the dict returned by iterator.state_dict())"
                )
            if state.get("chain") != self.signature:
                raise StateError(
                    "the state was saved by another pipeline:\n"
                    f"  saved:    {state.get('chain')}\n  this one: {self.signature}"
                )
            inner = json.loads(json.dumps(state["state"]))  # a private copy: the caller's state is untouched
        return PipelineIterator(self, self.node.build(inner))

    def __iter__(self) -> PipelineIterator:
        return self.iter()

    def __repr__(self) -> str:
        return f"Pipeline({self.signature})"

    def _then(self, node: Node) -> Pipeline:
        return Pipeline(node)

    # --- sources -----------------------------------------------------------------------------------------
    @staticmethod
    def from_files(
        urls: str | Sequence[str],
        repeat: bool = False,
        shuffle_shards: bool = False,
        format: str = "auto",
        n_active_shards: int = 10,
        n_standby_shards: int = 2,
        timeout: float = 60.0,
        n_prefetch_samples: int = 10,
        seed: int = 42,
        *,
        text_key: str = "text",
        text_split: str = "document",
        storage_options: dict[str, Any] | None = None,
        retries: int = 5,
        backoff: float = 0.5,
        on_error: str = "raise",
    ) -> Pipeline:
        """Records of files (local paths or URLs, brace patterns and globs), read round-robin and resumed by seek.

        ``format`` is ``auto`` (by extension) or one of ``jsonl | parquet | csv | cbor | text``. ``retries`` and
        ``backoff`` govern transient I/O errors (``timeout`` is accepted for epochraft compatibility; network
        timeouts are the filesystem's, set through ``storage_options``).
        """
        from tokenmill.pipeline.files import FilesNode, expand

        del timeout
        return Pipeline(
            FilesNode(
                expand(urls, storage_options),
                repeat=repeat,
                shuffle_shards=shuffle_shards,
                format=None if format == "auto" else format,
                n_active_shards=n_active_shards,
                n_standby_shards=n_standby_shards,
                n_prefetch_samples=n_prefetch_samples,
                seed=seed,
                text_key=text_key,
                text_split=text_split,
                storage_options=storage_options,
                retries=retries,
                backoff=backoff,
                on_error=on_error,
            )
        )

    @staticmethod
    def from_sequence(
        sequence: Sequence[Any], repeat: bool = False, shuffle: bool = False, shuffle_seed: int = 42
    ) -> Pipeline:
        """Items of an in-memory sequence, optionally in a new random order every epoch."""
        from tokenmill.pipeline.sequence import SequenceNode

        return Pipeline(SequenceNode(sequence, repeat=repeat, shuffle=shuffle, seed=shuffle_seed))

    @staticmethod
    def from_iterable(iterable: Iterable[Any], repeat: bool = False) -> Pipeline:
        """Items of a re-iterable that yields the same items every time. Its resume is O(position): it iterates
        again and skips what was consumed (the one source that cannot seek)."""
        from tokenmill.pipeline.iterable import IterableNode

        return Pipeline(IterableNode(iterable, repeat=repeat))

    @staticmethod
    def from_cache(
        path: str,
        split: str = "train",
        repeat: bool = False,
        shuffle: bool = False,
        seed: int = 42,
        storage_options: dict[str, Any] | None = None,
    ) -> Pipeline:
        """Documents (``input_ids``, ``loss_mask``) of a prepared token cache, resumed by position at once."""
        from tokenmill.pipeline.cache_source import CacheNode

        return Pipeline(
            CacheNode(
                str(path),
                split=split,
                repeat=repeat,
                shuffle=shuffle,
                seed=seed,
                storage_options=storage_options,
            )
        )

    @staticmethod
    def from_hf(
        name_or_path: str,
        split: str = "train",
        *,
        config: str | None = None,
        data_files: Any = None,
        streaming: bool = False,
        repeat: bool = False,
        revision: str | None = None,
        **load_kwargs: Any,
    ) -> Pipeline:
        """Rows of a Hugging Face dataset (``save_to_disk`` folder, builder with data files, or hub name).

        ``load_kwargs`` go to ``datasets.load_dataset`` as they are (``languages=["Python"]``, ``data_dir=...``).
        """
        from tokenmill.pipeline.hf_source import HFNode

        return Pipeline(
            HFNode(
                str(name_or_path),
                split=split,
                config=config,
                data_files=data_files,
                streaming=streaming,
                repeat=repeat,
                revision=revision,
                load_kwargs=tuple(sorted(load_kwargs.items())),
            )
        )

    @staticmethod
    def interleave(
        datasets: Sequence[Pipeline],
        weights: Sequence[float] | None = None,
        stop: str = "first",
        seed: int = 42,
    ) -> Pipeline:
        """Mix pipelines by weight; ``stop`` is ``"first"``, ``"all"`` or ``"never"`` (see interleave.py)."""
        from tokenmill.pipeline.interleave import InterleaveNode

        nodes = tuple(d.node for d in datasets)
        w = tuple(float(x) for x in weights) if weights is not None else (1.0,) * len(nodes)
        return Pipeline(InterleaveNode(nodes, w, stop=stop, seed=seed))

    @staticmethod
    def concat(datasets: Sequence[Pipeline]) -> Pipeline:
        """The pipelines one after the other."""
        from tokenmill.pipeline.concat import ConcatNode

        return Pipeline(ConcatNode(tuple(d.node for d in datasets)))

    def __add__(self, other: Pipeline) -> Pipeline:
        return Pipeline.concat([self, other])

    # --- item transforms ---------------------------------------------------------------------------------
    def map(self, fn: Callable[[Any], Any]) -> Pipeline:
        from tokenmill.pipeline.map import MapNode

        return self._then(MapNode(self.node, fn, "map"))

    def filter(self, fn: Callable[[Any], bool]) -> Pipeline:
        from tokenmill.pipeline.map import MapNode

        return self._then(MapNode(self.node, fn, "filter"))

    def filter_map(self, fn: Callable[[Any], Any]) -> Pipeline:
        """``fn`` returns the new item, or None to drop it."""
        from tokenmill.pipeline.map import MapNode

        return self._then(MapNode(self.node, fn, "filter_map"))

    def _parallel(
        self, fn: Callable[[Any], Any], kind: str, max_workers, prefetch_factor, ordered, executor_type
    ) -> Pipeline:
        from tokenmill.pipeline.parallel import ParallelMapNode

        return self._then(
            ParallelMapNode(
                self.node,
                fn,
                kind,
                max_workers=max_workers,
                prefetch_factor=prefetch_factor,
                ordered=ordered,
                executor_type=executor_type,
            )
        )

    def parallel_map(
        self,
        fn: Callable[[Any], Any],
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: str = "process",
    ) -> Pipeline:
        """``map`` in worker threads or (spawned) processes; ``fn`` must be importable for processes."""
        return self._parallel(fn, "map", max_workers, prefetch_factor, ordered, executor_type)

    def parallel_filter(
        self,
        fn: Callable[[Any], bool],
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: str = "process",
    ) -> Pipeline:
        return self._parallel(fn, "filter", max_workers, prefetch_factor, ordered, executor_type)

    def parallel_filter_map(
        self,
        fn: Callable[[Any], Any],
        max_workers: int | None = None,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: str = "process",
    ) -> Pipeline:
        return self._parallel(fn, "filter_map", max_workers, prefetch_factor, ordered, executor_type)

    # --- tokens ------------------------------------------------------------------------------------------
    def tokenize(
        self,
        tokenizer: Any,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        target_column: str = "text",
        parallel: bool = True,
        max_workers: int | None = 1,
        prefetch_factor: int = 10,
        ordered: bool = True,
        executor_type: str = "thread",
        *,
        output_column: str = "input_ids",
    ) -> Pipeline:
        """Encode ``target_column`` into ``input_ids`` (no special tokens; see ``ensure_bos_eos``).

        ``tokenizer`` is a tokenmill tokenizer, a path or name, or a transformers / `tokenizers` / tiktoken object.
        ``tokenizer_kwargs`` of a transformers call are honoured as transformers does (``add_special_tokens``,
        ``truncation`` with ``max_length``, ``split_special_tokens``) or refused with what to use instead.

        Records are encoded a batch per tokenizer call, in a background thread (``parallel=False`` keeps it in
        the consumer's thread). epochraft's ``max_workers``/``prefetch_factor``/``executor_type`` are accepted
        and ignored: batch encoding releases the GIL, which is what those workers were for.
        """
        from tokenmill.pipeline.tokenize import TokenizeNode, encode_options, resolve_tokenizer

        del max_workers, prefetch_factor, ordered, executor_type
        options = encode_options(tokenizer_kwargs, tokenizer)
        tok = resolve_tokenizer(tokenizer)
        tok.engine  # noqa: B018 - the engine is chosen (probe set) here, not when the first batch is due
        node = TokenizeNode(
            self.node, tok, target_column, output_column, prefetch=2 if parallel else 0, options=options
        )
        return self._then(node)

    def format(
        self,
        config: Any = None,
        tokenizer: Any = None,
        *,
        on_error: str = "raise",
        **options: Any,
    ) -> Pipeline:
        """Records -> ``input_ids`` and ``loss_mask`` through a record format (text, prompt-completion, columns,
        chat, tokens): a ``tokenmill.formats.FormatConfig`` or its fields as keyword arguments. BOS/EOS are added
        by the format, as in ``tokenmill prepare``."""
        from tokenmill.pipeline.tokenize import FormatNode, resolve_tokenizer

        tok = resolve_tokenizer(tokenizer) if tokenizer is not None else self.tokenizer
        if tok is None:
            raise ConfigError("format needs a tokenizer: format(config, tokenizer=...)")
        if config is None:
            from tokenmill.formats import FormatConfig

            config = FormatConfig(**options)
        elif options:
            raise ConfigError("pass either a FormatConfig or keyword options to format(), not both")
        return self._then(FormatNode(self.node, tok, config, on_error=on_error))

    def add_bos_eos(
        self, bos_token_id: int | None, eos_token_id: int | None, target_column: str = "input_ids"
    ) -> Pipeline:
        """Add the given ids at the start and end of every item, always."""
        from tokenmill.pipeline.bos_eos import BosEosNode

        return self._then(
            BosEosNode(self.node, bos_token_id, eos_token_id, ensure=False, target_column=target_column)
        )

    def ensure_bos_eos(self, tokenizer: Any = None, target_column: str = "input_ids") -> Pipeline:
        """BOS/EOS by the tokenizer's convention (the one given to ``tokenize`` by default), never doubled."""
        from tokenmill.pipeline.bos_eos import make_bos_eos
        from tokenmill.pipeline.tokenize import resolve_tokenizer

        tok = resolve_tokenizer(tokenizer) if tokenizer is not None else self.tokenizer
        return self._then(make_bos_eos(self.node, tok, target_column))

    def chunk(
        self, chunk_length: int, target_columns: Sequence[str] | None = None, drop_remainder: bool = True
    ) -> Pipeline:
        """Cut each item into ``chunk_length`` pieces (token columns: ``input_ids`` and ``loss_mask``)."""
        from tokenmill.pipeline.chunk import ChunkNode

        cols = tuple(target_columns) if target_columns is not None else None
        return self._then(ChunkNode(self.node, chunk_length, cols, drop_remainder))

    def concat_chunk(self, chunk_length: int, target_columns: Sequence[str] | None = None) -> Pipeline:
        """Concatenate items and cut the stream into ``chunk_length`` pieces."""
        from tokenmill.pipeline.concat_chunk import ConcatChunkNode

        cols = tuple(target_columns) if target_columns is not None else None
        return self._then(ConcatChunkNode(self.node, chunk_length, cols))

    def pack(
        self,
        seq_len: int,
        buffer_size: int = 1000,
        pad_id: int | None = None,
        seed: int | None = 42,
        target_columns: Sequence[str] | None = None,
    ) -> Pipeline:
        """Best-fit-decreasing packing of whole documents into ``seq_len`` rows, over ``buffer_size`` documents,
        with ``position_ids``, ``cu_seqlens`` and a ``loss_mask`` that stops at document boundaries."""
        from tokenmill.pipeline.pack import PackNode
        from tokenmill.pipeline.pad import default_pad_id

        pid = default_pad_id(self.tokenizer) if pad_id is None else int(pad_id)
        cols = tuple(target_columns) if target_columns is not None else None
        return self._then(PackNode(self.node, seq_len, buffer_size, pid, seed, cols))

    def pad(
        self,
        pad_values: Mapping[str, Any] | int | None = None,
        chunk_length: int | None = None,
        *,
        truncate: bool = False,
        attention_mask: bool = True,
    ) -> Pipeline:
        """Pad token columns to ``chunk_length`` (``pad(1024)`` or epochraft's ``pad(pad_values, chunk_length)``);
        ``input_ids`` default to the tokenizer's pad id, ``loss_mask`` to False."""
        from tokenmill.pipeline.pad import PadNode, default_pad_id

        if isinstance(pad_values, int) and chunk_length is None:
            pad_values, chunk_length = None, pad_values
        if chunk_length is None or chunk_length < 1:
            raise ConfigError("pad needs chunk_length >= 1")
        values = dict(pad_values) if pad_values is not None else {"input_ids": default_pad_id(self.tokenizer)}
        return self._then(PadNode(self.node, chunk_length, values, truncate, attention_mask))

    # --- order and grouping ------------------------------------------------------------------------------
    def shuffle(self, buffer_size: int, seed: int = 42) -> Pipeline:
        """Block shuffle over ``buffer_size`` items; its state is a position, not the buffer (see shuffle.py)."""
        from tokenmill.pipeline.shuffle import ShuffleNode

        return self._then(ShuffleNode(self.node, buffer_size, seed))

    def batch(
        self,
        batch_size: int,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        drop_last: bool = False,
        *,
        return_tensors: str = "np",
        labels: bool = True,
    ) -> Pipeline:
        """Stack items into batches (``return_tensors="np"`` or ``"pt"``); adds ``labels`` with -100 wherever
        ``loss_mask`` is False."""
        from tokenmill.pipeline.batch import BatchNode

        return self._then(BatchNode(self.node, batch_size, drop_last, collate_fn, labels, return_tensors))

    def take(self, max_count: int) -> Pipeline:
        from tokenmill.pipeline.count import CountNode

        return self._then(CountNode(self.node, "take", n=int(max_count)))

    def skip(self, count: int) -> Pipeline:
        from tokenmill.pipeline.count import CountNode

        return self._then(CountNode(self.node, "skip", n=int(count)))

    def stride(self, interval: int, offset: int) -> Pipeline:
        """Keep items ``i`` with ``i % interval == offset``."""
        from tokenmill.pipeline.count import CountNode

        if interval < 1 or not 0 <= offset < interval:
            raise ConfigError(
                f"stride needs interval >= 1 and 0 <= offset < interval, got {interval}, {offset}"
            )
        return self._then(CountNode(self.node, "stride", n=int(interval), offset=int(offset)))

    def enumerate(self, count_column: str = "step") -> Pipeline:
        """Write the item's index into ``count_column``."""
        from tokenmill.pipeline.count import CountNode

        return self._then(CountNode(self.node, "enumerate", column=count_column))

    def repeat(self, times: int | None = None) -> Pipeline:
        """Iterate again from the start when the pipeline ends (``times`` passes, or forever)."""
        from tokenmill.pipeline.repeat import RepeatNode

        return self._then(RepeatNode(self.node, times))

    def prefetch(self, buffer_size: int = 2) -> Pipeline:
        """Run the pipeline so far in a background thread, ``buffer_size`` items ahead (state stays exact)."""
        from tokenmill.pipeline.prefetch import PrefetchNode

        return self._then(PrefetchNode(self.node, buffer_size))

    def shard(self, rank: int, world_size: int) -> Pipeline:
        """This rank's part of the data: sources split by file (or document, or item) where they can, otherwise
        a stride over the source's records. Everything downstream then runs per rank."""
        from tokenmill.pipeline.shard import shard_node

        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"shard needs 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        return Pipeline(shard_node(self.node, rank, world_size))

    def cache(self, path: str, **options: Any) -> Pipeline:
        """Write this pipeline's documents once to a local token cache at ``path``, then read from it."""
        from tokenmill.pipeline.cache import CacheToNode

        return Pipeline(CacheToNode(self.node, str(path), options))

    def to_torch(self, **kwargs: Any) -> Any:
        """A ``torch.utils.data.IterableDataset`` view (see tokenmill.pipeline.torch)."""
        from tokenmill.pipeline.torch import PipelineIterableDataset

        return PipelineIterableDataset(self, **kwargs)
