"""The ``tokenmill`` command ends without the interpreter's teardown (:func:`tokenmill.cli.run_and_exit`), but only
after what an exit owes: output flushed into a pipe, threads joined, ``atexit`` handlers run, the exit code kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import lance

from tokenmill.cache.layout import TOKENS_DATASET


def _records(tmp_path):
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps({"text": f"document {i} of the file"}) + "\n" for i in range(20)))
    return data


def _prepare(tmp_path, out) -> list[str]:
    """A small `tokenmill prepare` into ``out``: 20 documents, the byte tokenizer, no worker processes."""
    return [
        "prepare",
        str(_records(tmp_path)),
        "--tokenizer",
        "bytes",
        "--workers",
        "0",
        "--output",
        str(out),
    ]


def _run(args):
    """``python ARGS`` with its output in pipes, block-buffered as a user's would be (never PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)


def test_python_m_prints_into_a_pipe_and_leaves_a_committed_cache(tmp_path):
    out = tmp_path / "cache"
    args = _prepare(tmp_path, out)
    done = _run(["-m", "tokenmill.cli", *args, "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] == 20
    assert lance.dataset(str(out / TOKENS_DATASET)).count_rows() == 20
    again = _run(["-m", "tokenmill.cli", *args])  # plain print()s, block-buffered into the pipe
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_threads_are_joined_and_atexit_handlers_run_before_the_exit(tmp_path):
    """A job still running on an executor when the command returns, and an ``atexit`` handler, both finish."""
    marker, out = tmp_path / "late.txt", tmp_path / "cache"
    args = _prepare(tmp_path, out)
    script = textwrap.dedent(
        f"""
        import atexit, sys, time
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path
        from tokenmill.cli import run_and_exit

        def late():
            time.sleep(0.5)
            Path({str(marker)!r}).write_text("written")

        ThreadPoolExecutor(1).submit(late)
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        run_and_exit({args!r})
        """
    )
    done = _run(["-c", script])
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "written"
    assert "atexit ran" in done.stderr
    assert "documents" in done.stdout


def test_an_error_keeps_its_exit_code_and_message(tmp_path):
    args = [
        "prepare",
        str(tmp_path / "missing.jsonl"),
        "--tokenizer",
        "bytes",
        "--output",
        str(tmp_path / "c"),
    ]
    done = _run(["-m", "tokenmill.cli", *args])
    assert done.returncode == 1
    assert "tokenmill prepare: error:" in done.stderr and "missing.jsonl" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_takes_the_ordinary_exit():
    done = _run(["-m", "tokenmill.cli", "--version"])
    assert done.returncode == 0 and done.stdout.startswith("tokenmill ")
