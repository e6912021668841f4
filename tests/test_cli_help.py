"""What ``--help`` says is what the command does (issue 14: defaults and accepted names matched the docs)."""

from __future__ import annotations

import json

from tokenmill.cli import build_parser
from tokenmill.cli import main as cli_main
from tokenmill.cli.prepare import DEFAULT_UNIT_BYTES
from tokenmill.prepare import PrepareConfig


def _help(command: str) -> str:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # noqa: SLF001 (argparse has no API)
    return " ".join(sub.format_help().split())


def test_unit_bytes_default_in_help_is_the_real_default():
    assert PrepareConfig().unit_bytes == DEFAULT_UNIT_BYTES
    assert f"(default {DEFAULT_UNIT_BYTES >> 20} MiB)" in _help("prepare")


def test_input_format_aliases_documented_in_sources_md_are_accepted(tmp_path, capsys):
    data = tmp_path / "records.txt"  # JSON lines in a file whose extension says text
    data.write_text("".join(json.dumps({"text": f"line {i} of the file"}) + "\n" for i in range(5)))
    for alias in ("json", "ndjson"):
        out = tmp_path / f"cache-{alias}"
        args = ["prepare", str(data), "--input-format", alias, "--tokenizer", "bytes"]
        assert cli_main([*args, "--output", str(out), "--workers", "0", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["documents"] == 5
    assert "aliases json, ndjson, pq, tsv, txt" in _help("prepare")
