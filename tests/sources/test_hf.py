"""Hugging Face sources as the Lance blog uses them: load_dataset arguments passed through, streaming, a budget
that stops reading, the dataset's identity among a cache's sources, its own test split as validation.

Nothing here touches the hub: datasets are local (``save_to_disk`` folders, json files through the ``json``
builder, a script-free dataset folder) and the hub is switched off for every test.
"""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from tokenmill.cli import main
from tokenmill.errors import CacheError, ConfigError, SourceError, TokenmillError
from tokenmill.pipeline import Pipeline
from tokenmill.prepare import PrepareConfig, prepare
from tokenmill.sources import read_hf
from tokenmill.sources.hf import HFSource

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def write_rows(path, n: int, bad_at: int | None = None, bad: str = '{"id": 0}', opener=open):
    """``n`` JSON lines with a ``text`` field; line ``bad_at`` (0-based) is ``bad`` instead."""
    with opener(path, "wt") as f:
        for i in range(n):
            f.write((bad if i == bad_at else json.dumps({"text": f"row {i}: " + "words " * 8})) + "\n")
    return str(path)


def build(out, *, sources=(), **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("tokenizer", "bytes")
    return prepare(PrepareConfig(sources=[str(s) for s in sources], output=str(out), **kw), progress=False)


@pytest.fixture
def code_repo(tmp_path):
    """A script-free dataset folder with one subfolder per language, as hub code datasets are laid out."""
    for lang in ("python", "java"):
        (tmp_path / "repo" / lang).mkdir(parents=True)
        with open(tmp_path / "repo" / lang / "part.jsonl", "w") as f:
            for i in range(30):
                f.write(json.dumps({"text": f"{lang} snippet {i}", "language": lang}) + "\n")
    return str(tmp_path / "repo")


# -- the source description ------------------------------------------------------------------------------------
def test_hf_source_passes_load_dataset_arguments_and_names_itself_exactly():
    blog = HFSource.from_dict(
        {"name": "codeparrot/github-code", "streaming": True, "split": "train", "languages": ["Python"]}
    )
    assert blog.kwargs == {"languages": ["Python"]} and blog.streaming
    assert HFSource.from_dict(blog.to_dict()) == blog
    assert blog.key() == 'hf:codeparrot/github-code[train] {"kwargs":{"languages":["Python"]}}'
    # streaming changes how rows are read, not which
    assert HFSource.from_dict({**blog.to_dict(), "streaming": False}).key() == blog.key()
    for change in (
        {"split": "test"},
        {"config": "all"},
        {"revision": "v2"},
        {"kwargs": {"languages": ["Go"]}},
    ):
        assert HFSource.from_dict({**blog.to_dict(), **change}).key() != blog.key()
    with pytest.raises(ConfigError, match="did you mean 'revision'"):
        HFSource.from_dict({"name": "d", "revison": "x"})
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        HFSource.from_dict({"name": "d", "trust_remote_code": True})


def test_load_dataset_arguments_reach_the_builder(code_repo):
    rows = [r.record for r in read_hf(code_repo, data_dir="python")]
    assert len(rows) == 30 and {r["language"] for r in rows} == {"python"}
    piped = list(Pipeline.from_hf(code_repo, data_dir="java").iter())
    assert len(piped) == 30 and {r["language"] for r in piped} == {"java"}


def test_a_stream_is_read_only_as_far_as_it_is_consumed(tmp_path):
    """A malformed line at row 2,000 (in a later chunk of the json builder) is never reached by 50 rows."""
    path = write_rows(tmp_path / "big.jsonl", 3000, bad_at=2000, bad="{bad json")
    rows = read_hf("json", data_files=path, streaming=True, chunksize=4096)
    assert len(list(itertools.islice(rows, 50))) == 50
    rows.close()
    with pytest.raises(SourceError, match=r"big.jsonl|json\[train\]") as err:
        list(read_hf("json", data_files=path, streaming=True, chunksize=4096))
    assert err.value.row is not None and err.value.row <= 2000


# -- budgets -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [{"max_documents": 50}, {"max_total_tokens": 2000}])
def test_budget_stops_a_streamed_dataset_before_a_bad_row(tmp_path, budget):
    """The blog's point: a budget over a stream; a row that would fail at 2,000 is never read."""
    path = write_rows(tmp_path / "big.jsonl", 3000, bad_at=2000, bad="{bad json")
    hf = {"name": "json", "data_files": path, "streaming": True, "chunksize": 4096}
    summary = build(tmp_path / "cache", hf=hf, **budget)
    if "max_documents" in budget:
        assert summary.documents == 50
    else:
        assert 0 < summary.tokens <= 2000


@pytest.mark.parametrize("budget", [{"max_documents": 50}, {"max_total_tokens": 2000}])
def test_budget_stops_a_compressed_file_before_a_bad_row(tmp_path, budget):
    """A .gz shard is one work unit; it is read only up to the budget (a record without text at row 2,000)."""
    path = write_rows(tmp_path / "shard-0.jsonl.gz", 3000, bad_at=2000, opener=gzip.open)
    later = write_rows(tmp_path / "shard-1.jsonl.gz", 10, bad_at=0, opener=gzip.open)
    summary = build(tmp_path / "cache", sources=[path, later], workers=2, **budget)
    if "max_documents" in budget:
        assert summary.documents == 50
    else:
        assert 0 < summary.tokens <= 2000
    with pytest.raises(TokenmillError, match="shard-0.jsonl.gz, line 2001"):
        build(tmp_path / "whole", sources=[path])


def test_budget_right_at_a_bad_row(tmp_path):
    """The bad record is the very next one after the budget: still not read."""
    path = write_rows(tmp_path / "a.jsonl.gz", 100, bad_at=10, opener=gzip.open)
    assert build(tmp_path / "cache", sources=[path], max_documents=10).documents == 10
    with pytest.raises(TokenmillError, match=r"a.jsonl.gz, line 11"):  # a budget that reaches it still fails
        build(tmp_path / "more", sources=[path], max_documents=11)


# -- identity -----------------------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    train = datasets.Dataset.from_list([{"text": f"train doc {i} " + "w " * 5} for i in range(40)])
    test = datasets.Dataset.from_list([{"text": f"test doc {i}"} for i in range(7)])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    return str(tmp_path / "saved")


def test_another_dataset_or_split_is_another_source(tmp_path, saved, code_repo):
    cache = tmp_path / "cache"
    assert build(cache, hf={"name": saved}).documents == 40
    with pytest.raises(CacheError, match=r"does not hold.*--append"):
        build(cache, hf={"name": saved, "split": "test"})
    with pytest.raises(CacheError, match="does not hold"):
        build(cache, hf={"name": code_repo, "data_dir": "python"})
    assert build(cache, hf={"name": saved}).status == "nothing to do"
    appended = build(cache, hf={"name": saved, "split": "test"}, append=True)
    assert appended.status == "appended" and appended.documents == 47
    assert build(cache, hf={"name": saved, "split": "test"}, append=True).status == "nothing to do"


def test_a_corrected_dataset_name_after_a_failed_run_is_the_one_loaded(tmp_path, saved):
    cache = tmp_path / "cache"
    with pytest.raises(TokenmillError):
        build(cache, hf={"name": str(tmp_path / "no-such-dataset")})
    assert build(cache, hf={"name": saved}).documents == 40


def test_cli_hf_flags(tmp_path, code_repo, capsys):
    argv = ["prepare", "--tokenizer", "bytes", "--output", str(tmp_path / "c"), "--workers", "0"]
    hf = ["--hf-dataset", code_repo, "--hf-arg", "data_dir=python", "--hf-streaming", "--max-documents", "12"]
    assert main([*argv, *hf, "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "data_dir: python" in shown and "streaming: true" in shown
    assert main([*argv, *hf, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 12
    whole = ["--hf-dataset", code_repo, "--hf-arg", "data_dir=python", "--max-documents", "12"]
    assert main([*argv[:4], str(tmp_path / "c2"), *argv[5:], *whole]) == 0
    assert "pass --hf-streaming" in capsys.readouterr().err  # a budget over a split converted whole first
    assert main([*argv, "--hf-dataset", code_repo, "--hf-arg", "data_dir=java", "--max-documents", "12"]) != 0
    assert "does not hold" in capsys.readouterr().err


# -- the dataset's own test split as validation ----------------------------------------------------------------------
def test_recipe_uses_the_datasets_own_test_split_as_validation(tmp_path, saved):
    from tokenmill.recipe import load_recipe, prepare_recipe

    (tmp_path / "r.yaml").write_text(
        f"tokenizer: bytes\nsources:\n  s: {{hf: {{name: {saved}, validation_split: test}}, weight: 1}}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    summary = prepare_recipe(recipe, str(tmp_path / "out"), workers=0)
    by_role = {r.role: r for r in summary.caches}
    assert by_role["train"].documents == 40 and by_role["validation"].documents == 7
    (tmp_path / "bad.yaml").write_text(
        f"tokenizer: bytes\nsources:\n  s: {{hf: {{name: {saved}, validation_split: test}}, validation: 0.1}}\n"
    )
    with pytest.raises(ConfigError, match="validation_split"):
        load_recipe(tmp_path / "bad.yaml")


def test_a_changed_local_dataset_is_refused_like_a_changed_file(tmp_path, saved):
    """The ledger's HF identity: a rewritten data file, a re-saved folder; streaming alone changes nothing."""
    data = write_rows(tmp_path / "d.jsonl", 30)
    hf = {"name": "json", "data_files": data}
    assert build(tmp_path / "a", hf=hf).documents == 30
    assert build(tmp_path / "a", hf={**hf, "streaming": True}).status == "nothing to do"
    write_rows(tmp_path / "d.jsonl", 31)
    with pytest.raises(CacheError, match=r"(?s)changed since.*d\.jsonl"):
        build(tmp_path / "a", hf=hf)
    assert build(tmp_path / "a", hf=hf, rebuild_changed=True).documents == 31

    assert build(tmp_path / "b", hf={"name": saved}).documents == 40
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "other"}] * 3)}).save_to_disk(saved)
    with pytest.raises(CacheError, match="fingerprint"):
        build(tmp_path / "b", hf={"name": saved})


@pytest.mark.parametrize("budget", ["max_documents: 50", "max_tokens: 2000"])
def test_recipe_budget_on_a_streamed_source_never_reaches_the_bad_row(tmp_path, budget):
    """The issue's report as a recipe: a budget on a streamed HF source, a row that fails at 2,000."""
    from tokenmill.recipe import load_recipe, prepare_recipe

    path = write_rows(tmp_path / "big.jsonl", 3000, bad_at=2000, bad="{bad json")
    (tmp_path / "r.yaml").write_text(
        "tokenizer: bytes\nsources:\n"
        f"  code: {{hf: {{name: json, data_files: {path}, streaming: true, chunksize: 4096}}, {budget}}}\n"
    )
    summary = prepare_recipe(load_recipe(tmp_path / "r.yaml"), str(tmp_path / "out"), workers=0)
    (result,) = summary.caches
    assert result.documents == 50 if "documents" in budget else 0 < result.tokens <= 2000


def test_a_changed_file_in_a_dataset_folder_is_refused(tmp_path, code_repo):
    hf = {"name": code_repo, "data_dir": "python"}
    assert build(tmp_path / "c", hf=hf).documents == 30
    with open(f"{code_repo}/java/part.jsonl", "a") as f:  # outside data_dir: not this source
        f.write(json.dumps({"text": "more java"}) + "\n")
    assert build(tmp_path / "c", hf=hf).status == "nothing to do"
    with open(f"{code_repo}/python/part.jsonl", "a") as f:
        f.write(json.dumps({"text": "more python"}) + "\n")
    with pytest.raises(CacheError, match=r"(?s)changed since.*python"):
        build(tmp_path / "c", hf=hf)
