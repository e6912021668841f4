"""JSON lines: the fast parser (orjson) gives exactly the stdlib's records and errors, on any line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sources import jsonl
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
