"""Every snippet of README.md and docs/**/*.md runs as written, page by page, on small data made here.

How a page is read (the conventions a page writer follows):

- ```` ```python ```` blocks run in order in one namespace per page (``__name__ == "__main__"``), in a fresh
  working directory that holds the files the pages name (``data/train-{00..31}.jsonl.gz``, ``tokenizer.json``,
  ``tok.json``, ``tok/`` (a ``tokenizer.json`` that transformers also loads), ``cache/``, ``examples/``; see
  :func:`world`).
- ```` ```bash ```` blocks: each ``tokenmill ...`` command runs through the in-process entry point
  (``tokenmill.cli.main``), each ``python examples/...`` script in a subprocess; ``export A=B`` sets the
  environment; ``> FILE`` after a command writes its standard output to FILE; other lines (``make``,
  ``torchrun``, benchmarks) are not run.
- a ```` ```text ```` block right after a runnable block is what that block prints: compared line by line, where
  ``...`` stands for any text (timings, absolute paths). A command whose output shows ``error:`` must fail.
- a block right below ``<!-- file: NAME -->`` is written to NAME (a config the next commands read);
- ``json`` blocks must parse (as one document or as JSON lines), ``yaml`` blocks too; untyped, ``jsonc`` and
  ``jinja`` blocks are illustrations (layouts, synopses, annotated states), not run.
- a block is skipped only when the line right above its fence says why, visibly:
  ``*Not run by the docs test: REASON.*``
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
SKIP_MARK = re.compile(r"^\*Not run by the docs test: (.+)\.\*\s*$")
FILE_MARK = re.compile(r"^<!-- file: (\S+) -->\s*$")
RUN_LANGS = {"python", "bash", "sh", "shell", "console"}
OUTPUT_LANG = "text"

#: pages that build ``cache/`` themselves (the others find it ready)
OWN_CACHE = {"README.md"}
#: pages whose snippets are too heavy for the default suite (run with -m slow). Empty: every page runs in CI
#: (training.md 13 s and recipes.md 47 s on a quiet 2-core machine; the 160-step schedule run is marked not run
#: on its page and trained by tests/test_train_schedule.py instead)
SLOW_PAGES: set[str] = set()
#: pages not yet runnable as written, with the reason (empty when every page runs)
PENDING: dict[str, str] = {page: "being made runnable as written (issue 14, item 7)" for page in ()}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None  # the visible reason, when the page marks the block not to run
    file: str | None = None  # the block is this file's content (``<!-- file: NAME -->`` above the fence)


def parse_blocks(page: str, text: str) -> list[Block]:
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```+\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            j += 1
        body = "\n".join(line[indent:] for line in lines[i + 1 : j])
        above = lines[start - 1] if start else ""
        skip, file = SKIP_MARK.match(above.strip()), FILE_MARK.match(above.strip())
        blocks.append(
            Block(
                page, start + 1, lang, body, skip.group(1) if skip else None, file.group(1) if file else None
            )
        )
        i = j + 1
    return blocks


# --- the small world the pages' file names point at ----------------------------------------------------------
@pytest.fixture(scope="session")
def world(tmp_path_factory, tokenizer_path) -> Path:
    """A folder with what the pages name: 32 gzipped JSONL shards, a tokenizer under three names, a cache."""
    from conftest import make_documents

    root = tmp_path_factory.mktemp("docs_world")
    docs = make_documents(640, seed=11, max_words=300)
    (root / "data").mkdir()
    for shard in range(32):
        with gzip.open(root / "data" / f"train-{shard:02d}.jsonl.gz", "wt", encoding="utf-8") as f:
            for j, text in enumerate(docs[shard::32]):
                f.write(json.dumps({"id": f"{shard}-{j}", "text": text}) + "\n")
    for name in ("tokenizer.json", "tok.json", "tok/tokenizer.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tokenizer_path, root / name)
    end = (
        "<|endoftext|>"  # tok/ is also a transformers tokenizer folder (AutoTokenizer.from_pretrained("tok"))
    )
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": end,
        "eos_token": end,
        "pad_token": end,
    }
    (root / "tok" / "tokenizer_config.json").write_text(json.dumps(config))
    shutil.copytree(
        ROOT / "examples", root / "examples", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    rc, out = run_cli(
        ["prepare", str(root / "data/train-{00..31}.jsonl.gz"), "--tokenizer", str(root / "tokenizer.json")]
        + ["--output", str(root / "cache"), "--validation", "0.05", "--workers", "0"]
    )
    assert rc == 0, out
    return root


def run_cli(argv: list[str], stdout_to: Path | None = None) -> tuple[int, str]:
    """``tokenmill ARGV`` in this process: exit code and what it printed (stdout goes to ``stdout_to`` when
    given, as with ``> FILE``)."""
    from tokenmill.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
    if stdout_to is not None:
        stdout_to.write_text(out.getvalue(), encoding="utf-8")
        return int(rc or 0), err.getvalue()
    return int(rc or 0), out.getvalue() + err.getvalue()


# --- running a page --------------------------------------------------------------------------------------------
def shell_commands(code: str) -> list[str]:
    """Lines of a shell block with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.strip() for line in joined.split("\n") if line.strip() and not line.strip().startswith("#")]


def run_shell(block: Block, env: pytest.MonkeyPatch) -> str | None:
    """Run the block's tokenmill commands and example scripts; their output (None when nothing ran)."""
    printed, ran = [], False
    for command in shell_commands(block.code):
        argv = shlex.split(command, comments=True)
        if not argv:
            continue
        if argv[0] == "export":
            for assignment in argv[1:]:
                key, _, value = assignment.partition("=")
                env.setenv(key, value)
            continue
        runs = argv[0] == "tokenmill" or (
            argv[0] in ("python", "python3") and argv[1:2] != [] and argv[1].startswith("examples/")
        )
        target = None
        if len(argv) > 2 and argv[-2] == ">":  # `... > FILE`: stdout into FILE
            argv, target = argv[:-2], Path(argv[-1])
        if runs and any(tok in ("|", ">", "&&", ";") for tok in argv):
            raise AssertionError(
                f"{block.page}:{block.line}: shell syntax the docs test does not run: {command}"
            )
        if argv[0] == "tokenmill":
            ran = True
            rc, out = run_cli(argv[1:], stdout_to=target)
            printed.append(out)
            if rc != 0:
                return _failed(block, command, rc, "".join(printed))
        elif argv[0] in ("python", "python3") and len(argv) > 1 and argv[1].startswith("examples/"):
            ran = True
            proc = subprocess.run(
                [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=300, env=dict(os.environ)
            )
            printed.append(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                return _failed(block, command, proc.returncode, "".join(printed))
    return "".join(printed) if ran else None


class CommandFailed(Exception):
    def __init__(self, block: Block, command: str, rc: int, output: str) -> None:
        super().__init__(f"{block.page}:{block.line}: `{command}` exited {rc}:\n{output}")
        self.output = output


def _failed(block: Block, command: str, rc: int, output: str) -> str:
    raise CommandFailed(block, command, rc, output)


def run_python(block: Block, namespace: dict) -> str:
    buf = io.StringIO()
    code = compile(block.code, f"{block.page}:{block.line}", "exec")
    with contextlib.redirect_stdout(buf):
        exec(code, namespace)
    return buf.getvalue()


def matches(expected: str, actual: str) -> bool:
    """``expected`` with ``...`` as a wildcard, compared with trailing spaces and blank edges ignored."""
    norm = lambda s: "\n".join(line.rstrip() for line in s.strip("\n").split("\n"))  # noqa: E731
    parts = norm(expected).split("...")
    # a space before `...` may stand for a line end ("overridden. ..." shows a sample that goes on)
    pattern = "".join(re.escape(p.rstrip(" ")) + r"\s?.*?" for p in parts[:-1]) + re.escape(parts[-1])
    return re.fullmatch(pattern, norm(actual), flags=re.DOTALL) is not None


def run_page(page: str, workdir: Path, env: pytest.MonkeyPatch) -> None:
    blocks = parse_blocks(page, (ROOT / page).read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__main__"}
    last_output: str | None = None
    last_block: Block | None = None
    timings: list[tuple[int, float]] = []
    for i, block in enumerate(blocks):
        if block.skip or (block.lang == OUTPUT_LANG and i and blocks[i - 1].skip):
            last_output = last_block = None  # a skipped block's shown output is skipped with it
            continue
        if block.file:
            (workdir / block.file).parent.mkdir(parents=True, exist_ok=True)
            (workdir / block.file).write_text(block.code + "\n", encoding="utf-8")
            continue
        if block.lang == OUTPUT_LANG:
            assert last_block is not None, (
                f"{page}:{block.line}: an output block must follow a runnable block"
            )
            assert last_output is not None, f"{page}:{block.line}: the block above printed nothing"
            assert matches(block.code, last_output), (
                f"{page}:{block.line}: the page shows\n{block.code}\nbut {last_block.page}:{last_block.line} "
                f"printed\n{last_output}"
            )
            continue
        if block.lang in ("json", "yaml"):
            check_data(block)
            continue
        if block.lang not in RUN_LANGS:
            continue
        expects_error = (
            i + 1 < len(blocks) and blocks[i + 1].lang == OUTPUT_LANG and "error:" in blocks[i + 1].code
        )
        started = time.perf_counter()
        try:
            if block.lang == "python":
                last_output = run_python(block, namespace)
            else:
                last_output = run_shell(block, env)
        except CommandFailed as exc:
            if not expects_error:
                raise AssertionError(str(exc)) from None
            last_output = exc.output
        except Exception as exc:
            raise AssertionError(
                f"{page}:{block.line}: the snippet raised {type(exc).__name__}: {exc}"
            ) from exc
        last_block = block
        timings.append((block.line, time.perf_counter() - started))
    print(f"{page}: seconds per block (line, s): {[(line, round(t, 1)) for line, t in timings]}")


#: pages whose snippets another test runs, with its own conventions
RUN_ELSEWHERE = {
    "docs/migrate/levanter.md": "tests/recipe/test_migrate_docs.py runs it",
    "docs/migrate/rwkv-infctx.md": "tests/recipe/test_migrate_docs.py runs it",
}


def check_data(block: Block) -> None:
    """A ``json`` block is JSON (one document or several, as JSON lines); a ``yaml`` block is YAML."""
    import yaml

    try:
        if block.lang == "yaml":
            yaml.safe_load(block.code)
            return
        decoder, text, pos = json.JSONDecoder(), block.code.strip(), 0
        while pos < len(text):  # one document or several (JSON lines, a record wrapped for the page)
            _, pos = decoder.raw_decode(text, pos)
            while pos < len(text) and text[pos].isspace():
                pos += 1
    except Exception as exc:
        raise AssertionError(
            f"{block.page}:{block.line}: the {block.lang} block does not parse: {exc}"
        ) from None


def _page_params() -> list:
    params = []
    for page in PAGES:
        marks = [pytest.mark.slow] if page in SLOW_PAGES else []
        if page in PENDING or page in RUN_ELSEWHERE:
            marks.append(pytest.mark.skip(reason=PENDING.get(page) or RUN_ELSEWHERE[page]))
        params.append(pytest.param(page, marks=marks, id=page))
    return params


@pytest.mark.parametrize("page", _page_params())
def test_page_snippets_run(page, world, tmp_path, monkeypatch):
    workdir = tmp_path / "ws"
    ignore = shutil.ignore_patterns("cache") if page in OWN_CACHE else None
    shutil.copytree(world, workdir, symlinks=True, ignore=ignore)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.syspath_prepend(str(workdir))
    run_page(page, workdir, monkeypatch)


def test_the_parser_reads_fences_skip_marks_and_outputs():
    text = "x\n```python\nprint(1)\n```\n```text\n1\n```\n*Not run by the docs test: needs a GPU.*\n```bash\nmake\n```\n"
    text += "<!-- file: a.yaml -->\n```yaml\nk: 1\n```\n"
    blocks = parse_blocks("p.md", text)
    assert [(b.lang, b.line, b.skip, b.file) for b in blocks] == [("python", 2, None, None)] + [
        ("text", 5, None, None),
        ("bash", 9, "needs a GPU", None),
        ("yaml", 13, None, "a.yaml"),
    ]
    assert matches("a ... b\nc", "a 12.5 s b  \nc\n") and not matches("a b", "a c")
    assert shell_commands("tokenmill a \\\n   --b c  # note\n# comment\n") == ["tokenmill a  --b c  # note"]
