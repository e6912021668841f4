"""Shared fixtures: small real data and a small real tokenizer, made in a second, never downloaded."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

WORDS = (
    "the of and to in is was he for it with as his on be at by had are but from or have an they which one you "
    "were her all she there would their we him been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "man me even most made after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us great old year off "
    "café naïve 東京 données ünïcödé 🙂 def return import class self None True False print range len"
).split()


def make_documents(n: int, seed: int = 0, min_words: int = 1, max_words: int = 400) -> list[str]:
    """Random documents of varied length (some long enough to span several cache rows)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        k = rng.randint(min_words, max_words) if i % 17 else rng.randint(800, 2000)
        words = [rng.choice(WORDS) for _ in range(k)]
        # newlines and punctuation so pre-tokenization and merges see real structure
        for j in range(0, k, rng.randint(5, 15)):
            words[j] = words[j] + rng.choice([".", ",", "\n", ":", "!", "\n\n"])
        docs.append(f"doc {i}: " + " ".join(words))
    return docs


def train_test_tokenizer(path: Path, vocab_size: int = 1000) -> Path:
    """A byte-level BPE trained with `tokenizers` on the fixture corpus, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(make_documents(300, seed=123), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def build(sources, out, tokenizer, **kw) -> Path:
    """A cache prepared by the real ``prepare`` in this process (small 64-token rows, so documents span rows)."""
    from tokenmill.prepare import PrepareConfig, prepare

    kw.setdefault("workers", 0)
    kw.setdefault("row_tokens", 64)
    config = PrepareConfig(sources=[str(s) for s in sources], output=str(out), tokenizer=str(tokenizer), **kw)
    prepare(config, progress=False)
    return Path(out)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """Path of a small real byte-level BPE `tokenizer.json` (vocabulary 1000, `<|endoftext|>` = id 0)."""
    return train_test_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def documents() -> list[str]:
    return make_documents(400, seed=7)


@pytest.fixture(scope="session")
def jsonl_shards(tmp_path_factory, documents) -> list[Path]:
    """The fixture documents as four JSONL shards with a `text` field."""
    root = tmp_path_factory.mktemp("shards")
    return [
        write_jsonl(
            root / f"part-{i:02d}.jsonl", [{"text": t, "id": j} for j, t in enumerate(documents[i::4])]
        )
        for i in range(4)
    ]
