"""JSON lines: the fast parser (orjson) gives exactly the stdlib's records and errors, on any line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.errors import RecordError
from tokenmill.sources import jsonl, read_records
from tokenmill.sources.lines import BadLine

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)  # past 64 bits: orjson would read a float
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "\udfff x", "\U0001f600", "\u2581 ▁", "\x00", "\u2028"])
)
values = st.recursive(
    scalars, lambda v: st.lists(v, max_size=4) | st.dictionaries(st.text(max_size=5), v, max_size=4)
)


def _outcome(parse, raw: bytes):
    try:
        return "ok", repr(parse(raw))  # repr: nan equals itself, 1 and 1.0 and True differ
    except BadLine as e:
        return "bad", e.reason, e.message, e.field


def _encode(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=6), values, max_size=5) | values,
    ascii_only=st.booleans(),
    cut=st.none() | st.tuples(st.integers(0, 200), st.integers(0, 3), st.binary(max_size=3)),
)
def test_fast_parse_is_the_stdlib_parse(value, ascii_only, cut):
    raw = _encode(value, ascii_only)
    if cut is not None:  # a damaged line: bytes taken out and others put in
        at, drop, put = cut
        at = min(at, len(raw))
        raw = raw[:at] + put + raw[at + drop :]
    assert _outcome(jsonl.parse_json_line, raw) == _outcome(jsonl._parse_strict, raw)


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'{"id": 123456789012345678901234567890}', {"id": 123456789012345678901234567890}),
        (b'{"t": [1, {"x": 18446744073709551616}]}', {"t": [1, {"x": 18446744073709551616}]}),
        (b'{"x": NaN, "y": -Infinity}', None),
        (b'{"t": "\\ud83d\\ude00 \\u2581"}', {"t": "\U0001f600 \u2581"}),
    ],
)
def test_what_orjson_reads_otherwise_goes_the_stdlib_way(raw, expected):
    got = jsonl.parse_json_line(raw)  # repr: 2**64 == float(2**64), but they are not the same record
    assert repr(got) == repr(json.loads(raw) if expected is None else expected)


def test_lone_surrogate_and_bad_utf8_keep_their_messages():
    with pytest.raises(BadLine, match="lone surrogate escape \\(U\\+D800\\)") as e:
        jsonl.parse_json_line(b'{"text": "a\\ud800b"}')
    assert e.value.reason == "invalid_utf8"
    with pytest.raises(BadLine, match="invalid UTF-8 at byte 10"):
        jsonl.parse_json_line(b'{"text": "\xff"}')


@pytest.mark.parametrize("depth", [1020, 5000])
def test_nesting_past_the_recursion_limit_is_a_bad_line_not_a_traceback(tmp_path, depth):
    raw = b'{"text": "x", "a": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(BadLine, match="nested too deeply") as e:
        jsonl.parse_json_line(raw)
    assert e.value.reason == "malformed_json"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b'{"text": "a"}\n' + raw + b'\n{"text": "b"}\n')
    skipped = []
    assert [r.record["text"] for r in read_records(str(path), on_error=skipped.append)] == ["a", "b"]
    assert [(err.reason, err.line) for err in skipped] == [("malformed_json", 2)]
    with pytest.raises(RecordError, match="deep.jsonl, line 2: arrays or objects nested too deeply"):
        list(read_records(str(path)))
