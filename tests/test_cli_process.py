"""A command in its own process (the ``tokenmill`` script) loads pyarrow without pandas where it converts nothing
from pandas (:func:`tokenmill.cli._common.import_arrow_without_pandas`); a build that reads a Hugging Face dataset, and
``main()`` called in a caller's process, keep pandas as pyarrow loads it.

Each case runs in a fresh interpreter: whether pandas is loaded is decided once per process, as pyarrow loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import lance
import pytest

from tokenmill.cache.layout import TOKENS_DATASET

REPORT = """
import atexit, json, sys
atexit.register(lambda: print("PANDAS " + json.dumps("pandas" in sys.modules), file=sys.stderr))
"""


def _run(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _pandas_loaded(done: subprocess.CompletedProcess) -> bool:
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("PANDAS "))
    return json.loads(line.removeprefix("PANDAS "))


def _script(entry: str, argv: list[str]) -> str:
    """``tokenmill ARGV`` through ``run_and_exit`` (the command's own process) or ``main`` (a caller's)."""
    return REPORT + f"from tokenmill.cli import {entry}\n{entry}({argv!r})\n"


def _records(tmp_path) -> str:
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps({"text": f"document {i} of the file"}) + "\n" for i in range(20)))
    return str(data)


def _prepare(tmp_path, out, *more: str) -> list[str]:
    return ["prepare", *more, "--tokenizer", "bytes", "--workers", "0", "--output", str(out)]


def test_prepare_in_its_own_process_leaves_pandas_unloaded_and_writes_the_same_cache(tmp_path):
    own, called = tmp_path / "own", tmp_path / "called"
    source = _records(tmp_path)
    done = _run(_script("run_and_exit", _prepare(tmp_path, own, source)))
    assert _pandas_loaded(done) is False
    # main() runs in a caller's process, which may hold pandas objects: pyarrow loads pandas there as always
    done = _run(_script("main", _prepare(tmp_path, called, source)))
    assert _pandas_loaded(done) is True
    tables = [lance.dataset(str(c / TOKENS_DATASET)).to_table() for c in (own, called)]
    assert tables[0].num_rows == 20 and tables[0].equals(tables[1])


@pytest.fixture
def cache(tmp_path):
    """A small cache, built through main() (pandas loaded as always)."""
    out = tmp_path / "cache"
    assert _pandas_loaded(_run(_script("main", _prepare(tmp_path, out, _records(tmp_path))))) is True
    return str(out)


@pytest.mark.parametrize("command", [["inspect"], ["verify", "--deep"]])
def test_inspect_and_verify_in_their_own_process_leave_pandas_unloaded(cache, command):
    done = _run(_script("run_and_exit", [*command, cache, "--json"]))
    assert _pandas_loaded(done) is False
    report = json.loads(done.stdout)
    assert report["documents"] == 20 if command == ["inspect"] else report["ok"] is True


def test_batches_of_caches_in_their_own_process_leave_pandas_unloaded_and_are_the_same(cache):
    argv = ["batches", cache, "--seq-len", "8", "--batch-size", "2", "--steps", "3"]
    own, called = _run(_script("run_and_exit", argv)), _run(_script("main", argv))
    assert _pandas_loaded(own) is False and _pandas_loaded(called) is True
    assert own.stdout == called.stdout and "document" in own.stdout


def test_pandas_still_loads_when_asked_for_after_the_import_without_it():
    """The refusal lasts only for the import of pyarrow's dataset module: pandas imports afterwards, and pyarrow's
    own conversions to pandas find it."""
    body = textwrap.dedent(
        """
        import argparse
        from tokenmill.cli._common import import_arrow_without_pandas
        import_arrow_without_pandas(argparse.Namespace(own_process=True))
        assert "pandas" not in sys.modules and "pyarrow._dataset" in sys.modules
        import lance, pyarrow as pa
        assert "pandas" not in sys.modules
        import pandas
        frame = pa.table({"a": [1, 2]}).to_pandas()
        assert isinstance(frame, pandas.DataFrame) and frame["a"].tolist() == [1, 2]
        """
    )
    assert _pandas_loaded(_run(REPORT + body)) is True


def test_a_hugging_face_build_in_its_own_process_loads_pandas(tmp_path):
    """`datasets` reads through pandas: a build with an ``hf`` source never imports pyarrow without it."""
    pytest.importorskip("datasets")
    repo = tmp_path / "repo" / "python"
    repo.mkdir(parents=True)
    (repo / "part.jsonl").write_text("".join(json.dumps({"text": f"snippet {i}"}) + "\n" for i in range(30)))
    argv = _prepare(
        tmp_path, tmp_path / "hf", "--hf-dataset", str(repo.parent), "--hf-arg", "data_dir=python"
    )
    offline = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
    }
    done = _run(_script("run_and_exit", [*argv, "--json"]), **offline)
    assert _pandas_loaded(done) is True
    assert json.loads(done.stdout)["documents"] == 30
