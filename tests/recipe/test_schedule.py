"""A recipe's ``schedule:``: checked against its sources with the YAML line of the bad point, and a recipe without
one reads as before."""

from __future__ import annotations

import json

import pytest

from conftest import make_documents, write_jsonl
from tokenmill.cli import main as cli_main
from tokenmill.errors import ConfigError
from tokenmill.recipe import load_recipe, parse_recipe, prepare_recipe, recipe_report

SCHEDULED = """\
tokenizer: bytes
sources:
  web: {urls: web.jsonl}
  code: {urls: code.jsonl}
  hq: {urls: hq.jsonl, validation: 0.1}
  spare: {urls: spare.jsonl, validation: 0.1}
schedule:                 # by global step (batch); linear between points, constant after the last
  - {at: 0,    weights: {web: 0.9, code: 0.1}}
  - {at: 2000, weights: {web: 0.5, code: 0.5}, segment: constant}
  - {at: 3000, weights: {hq: 1.0}}
"""


def test_the_issue_yaml_parses_and_sources_outside_the_schedule_are_not_trained(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(SCHEDULED)
    recipe = load_recipe(path)
    assert recipe.schedule[1] == {"at": 2000, "weights": {"web": 0.5, "code": 0.5}, "segment": "constant"}
    assert [n for n in recipe.names if recipe.trains_on(n)] == ["web", "code", "hq"]
    assert type(recipe).from_json(recipe.to_json()).schedule == recipe.schedule
    plain = parse_recipe(
        {"tokenizer": "bytes", "sources": {"a": {"urls": "x"}, "b": {"urls": "y", "weight": 0}}}
    )
    assert plain.schedule is None and plain.trains_on("a") and not plain.trains_on("b")


@pytest.mark.parametrize(
    "old, new, where, what",
    [
        ("{hq: 1.0}", "{hqq: 1.0}", "line 10, key 'schedule.2.weights'", "unknown source(s) hqq"),
        ("at: 2000", "at: -5", "line 9, key 'schedule.1.at'", "at must be a number >= 0"),
        ("at: 3000", "at: 1000", "line 10, key 'schedule.2.at'", "points must move forward"),
        ("segment: constant", "segment: cosine", "line 9, key 'schedule.1.segment'", "linear, constant"),
        ("{hq: 1.0}", "{hq: 0}", "line 10, key 'schedule.2.weights'", "at least one weight"),
        (
            "{urls: code.jsonl}",
            "{urls: code.jsonl, weight: 2}",
            "key 'sources.code.weight'",
            "schedule gives",
        ),
        ("sources:", "policy: stop\nsources:", "line 2, key 'policy'", "whole run"),
        ("at: 0,", "tokens: 0,", "line 9, key 'schedule.1.at'", "mixes 'at' and 'tokens'"),
    ],
)
def test_bad_schedules_name_the_line(tmp_path, old, new, where, what):
    assert old in SCHEDULED
    path = tmp_path / "r.yaml"
    path.write_text(SCHEDULED.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    assert where in str(exc.value) and what in str(exc.value), str(exc.value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tokenizer_path):
    """The scheduled recipe over four small real sources, prepared once."""
    root = tmp_path_factory.mktemp("scheduled")
    for i, name in enumerate(("web", "code", "hq", "spare")):
        docs = make_documents(30 + 10 * i, seed=40 + i, max_words=120)
        write_jsonl(root / f"{name}.jsonl", [{"text": t} for t in docs])
    path = root / "recipe.yaml"
    path.write_text(SCHEDULED.replace("tokenizer: bytes", f"tokenizer: {tokenizer_path}\nseq_len: 32"))
    prepare_recipe(load_recipe(path), str(root / "out"), workers=0, progress=False)
    return root, path


def test_inspect_prints_tokens_and_epochs_per_segment(prepared, capsys, tmp_path):
    root, path = prepared
    report = recipe_report(load_recipe(path), str(root / "out"), global_batch_size=8, steps=4000)
    plan = report["schedule"]
    assert [(s["from"], s["to"], s["segment"]) for s in plan["segments"]] == [
        (0, 2000, "linear"),
        (2000, 3000, "constant"),
        (3000, 4000, "constant"),
    ]
    first = {r["name"]: r for r in plan["segments"][0]["sources"]}
    # linear from 0.9 to 0.5 over 2000 steps of 8: a mean share of 0.7
    assert first["web"]["samples"] == pytest.approx(0.7 * 16_000) and first["hq"]["samples"] == 0
    last = {r["name"]: r for r in plan["segments"][2]["sources"]}
    assert last["hq"]["samples"] == 8000 and last["web"]["samples"] == 0
    samples = {r["name"]: r["samples"] for r in report["sources"]}
    assert last["hq"]["epochs_so_far"] == pytest.approx(8000 / samples["hq"])
    assert sum(r["draws_per_pass"] for r in report["sources"]) == 32_000
    with pytest.raises(ConfigError, match="global batch size"):
        recipe_report(load_recipe(path), str(root / "out"))
    args = ["inspect", "--recipe", str(path), "--output", str(root / "out"), "--global-batch-size", "8"]
    plot = tmp_path / "shares.png"
    assert cli_main([*args, "--steps", "4000", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "schedule   by steps, global batch 8: 3 segment(s)" in out
    assert "0-2K" in out and "0.90->0.50" in out and plot.stat().st_size > 10_000
    assert cli_main([*args, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["schedule"]["segments"]) == 2  # to the last point


def test_batches_cli_names_sources_and_resumes_on_the_schedule(prepared, capsys, tmp_path):
    root, path = prepared
    args = ["batches", "--recipe", str(path), str(root / "out"), "--seq-len", "32", "--batch-size", "8"]
    assert cli_main([*args, "--steps", "3"]) == 0
    decoded = capsys.readouterr().out
    assert decoded.count("=== step") == 24 and "· web ===" in decoded and "· hq ===" not in decoded
    assert cli_main([*args, "--steps", "20", "--digest"]) == 0
    whole = capsys.readouterr().out.splitlines()
    state = tmp_path / "state.json"
    assert cli_main([*args, "--steps", "7", "--digest", "--save-state", str(state)]) == 0
    first = capsys.readouterr().out.splitlines()
    assert cli_main([*args, "--steps", "13", "--digest", "--resume", str(state), "--world-size", "2"]) == 0
    rank0 = capsys.readouterr().out.splitlines()
    assert (
        cli_main(
            [*args, "--steps", "13", "--digest", "--resume", str(state), "--world-size", "2", "--rank", "1"]
        )
        == 0
    )
    rank1 = capsys.readouterr().out.splitlines()
    resumed = [
        line
        for step in range(7, 20)
        for part in (rank0, rank1)
        for line in part
        if line.startswith(f"{step} ")
    ]
    assert first + resumed == whole
    assert cli_main([*args, "--epochs", "1"]) == 1 and "use --steps" in capsys.readouterr().err
    # the flag that sets the batch also places the schedule's steps; a state of another batch size is refused
    assert cli_main([*args[:-1], "16", "--steps", "1", "--resume", str(state)]) == 1
    assert "saved global batch size 8" in capsys.readouterr().err


def test_a_schedule_in_tokens_needs_no_batch_size(prepared):
    root, path = prepared
    recipe = load_recipe(path)
    recipe.schedule = [
        {"tokens": 0, "weights": {"web": 1.0}},
        {"tokens": "3.2e4", "weights": {"code": 1.0}},  # YAML 1.1 keeps 3.2e4 a string: still a number
    ]
    plan = recipe_report(recipe, str(root / "out"))["schedule"]
    assert plan["unit"] == "tokens" and plan["global_batch_size"] is None
    (segment,) = plan["segments"]
    assert (segment["from"], segment["to"]) == (0, 32_000)  # 1000 samples of seq_len 32
    shares = {r["name"]: r["samples"] for r in segment["sources"]}
    assert shares == {"web": 500.0, "code": 500.0}  # hq is in no point: prepared, not mixed
