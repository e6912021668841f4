"""Every snippet of docs/migrate/levanter.md and docs/migrate/rwkv-infctx.md runs as written, in page order, in an
empty folder: ``python`` blocks are executed, ``bash`` blocks run with ``tokenmill`` on the PATH, a ``yaml``
block headed ``<!-- file: NAME -->`` is written to NAME (any other is parsed), ``text`` blocks show output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrate"
SRC = Path(__file__).resolve().parents[2] / "src"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)\n```", re.S)


def snippets(page: Path) -> list[tuple[str, str, str | None]]:
    return [(m["lang"], m["body"], m["file"]) for m in BLOCK.finditer(page.read_text())]


def tokenmill_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``tokenmill`` is this checkout's (as an installed console script would be)."""
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "tokenmill"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tokenmill.cli "$@"\n')
    script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def matches(shown: str, printed: str) -> None:
    """Every line shown on the page is a line the command printed (``...`` stands for any text)."""
    lines = printed.splitlines()
    for line in shown.splitlines():
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("...")) + "$")
        assert any(pattern.match(p) for p in lines), f"shown but not printed: {line!r}\nprinted:\n{printed}"


@pytest.mark.parametrize("page", ["levanter.md", "rwkv-infctx.md"])
def test_every_snippet_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = tokenmill_on_path(tmp_path)
    namespace: dict = {}
    ran = 0
    printed = ""
    for lang, body, file in snippets(DOCS / page):
        if lang == "text" and body.startswith("tokenmill prepare: error: "):
            config = body.split()[3].rstrip(",")  # the command that prints it: prepare without --tokenizer
            done = subprocess.run(
                ["tokenmill", "prepare", "--config", config], env=env, capture_output=True, text=True
            )
            assert done.returncode == 1
            matches(body, done.stderr)
        elif lang == "text":
            matches(body, printed)
        elif lang == "yaml":
            yaml.safe_load(body)
            if file:
                (tmp_path / file).write_text(body + "\n")
        elif lang == "python":
            exec(compile(body, f"{page} snippet", "exec"), namespace)  # noqa: S102 (the page's own code)
            ran += 1
        elif lang == "bash":
            done = subprocess.run(["bash", "-e", "-c", body], env=env, capture_output=True, text=True)
            assert done.returncode == 0, (
                f"{page}:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            printed = done.stdout + done.stderr
            ran += 1
    assert ran >= 6
