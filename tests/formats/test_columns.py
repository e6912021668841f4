"""Golden tests of the columns format."""

from __future__ import annotations

from tokenmill.errors import RecordError
from tokenmill.formats import (
    FormatConfig,
    RecordFormatter,
)

from .format_helpers import EOS, check, fmt

# ----------------------------------------------------------------------------------------- columns


def test_columns_golden_defaults_with_empty_and_missing_columns(tok, golden):
    records = [
        {"instruction": "Traduis: 東京", "input": "", "output": "Tokyo 🙂"},
        {"instruction": "Sum", "input": "2 + 2", "output": "4"},
        {"input": "only input", "output": "out"},
    ]
    expected = [
        [("text", "Instruction:\n", False), ("text", "Traduis: 東京", True), ("text", "\n\nOutput:\n", False)]
        + [("text", "Tokyo 🙂", True), ("ids", [EOS], True)],
        # consecutive masked parts (separator, prefix, the masked input) are one run
        [
            ("text", "Instruction:\n", False),
            ("text", "Sum", True),
            ("text", "\n\nInput:\n2 + 2\n\nOutput:\n", False),
        ]
        + [("text", "4", True), ("ids", [EOS], True)],
        [("text", "Input:\nonly input\n\nOutput:\n", False), ("text", "out", True), ("ids", [EOS], True)],
    ]
    results = fmt(tok, format="columns").encode_records(records)
    for res, parts in zip(results, expected, strict=True):
        check(res, *golden.build(parts))


def test_columns_from_yaml_like_dict_with_escapes(tok, golden):
    config = FormatConfig.from_dict(
        {
            "format": "columns",
            "columns": [
                {"key": "q", "prefix": "Q:\\n"},
                {"key": "a", "prefix": "A:\\n", "suffix": "\\n", "train": True},
            ],
            "column_separator": "\\n",
        }
    )
    assert config.column_prefixes == ("Q:\n", "A:\n") and config.column_separator == "\n"
    assert config.column_train == (False, True)
    res = RecordFormatter(config, tok).encode_record({"q": "why?", "a": "because"})
    check(
        res,
        *golden.build([("text", "Q:\nwhy?\nA:\n", False), ("text", "because\n", True), ("ids", [EOS], True)]),
    )


def test_columns_all_empty_and_non_string(tok):
    f = fmt(tok, format="columns")
    err = f.encode_record({"instruction": "", "output": None})
    assert isinstance(err, RecordError) and err.reason == "empty"
    err = f.encode_record({"instruction": "x", "output": 3})
    assert isinstance(err, RecordError) and (err.reason, err.field) == ("not_string", "output")
    # only masked columns: nothing to learn
    err = f.encode_record({"input": "just input"})
    assert isinstance(err, RecordError) and err.reason == "all_masked"
