"""The formatter: BOS/EOS, lengths, auto detection, record errors, batching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.errors import ConfigError, RecordError
from tokenmill.formats import (
    Encoded,
    FormatConfig,
    RecordFormatter,
    ensure_bos_eos,
    with_location,
)
from tokenmill.tokenizer import ByteTokenizer, load_tokenizer

from .format_helpers import CONVERSATION, EOS, check, fmt

# ----------------------------------------------------------------------------------------- BOS/EOS, lengths


def test_bos_eos_conventions_never_doubled():
    b = ByteTokenizer()
    check(fmt(b).encode_record({"text": "hi"}), [104, 105, 256], None)  # bytes: no BOS by convention
    check(fmt(b, add_bos=True).encode_record({"text": "hi"}), [257, 104, 105, 256], None)
    check(
        fmt(b, add_bos=True, format="tokens").encode_record({"input_ids": [257, 1, 256]}), [257, 1, 256], None
    )
    check(fmt(b, add_eos=False).encode_record({"text": "hi"}), [104, 105], None)
    assert ensure_bos_eos([257, 1], 257, 256) == (False, True)
    assert ensure_bos_eos([], 257, 256) == (True, True)
    assert ensure_bos_eos([1, 256], None, 256) == (False, False)


def test_bos_takes_first_flag_and_eos_last_flag():
    b = ByteTokenizer()
    res = fmt(b, add_bos=True).encode_record({"prompt": "ab", "completion": "c"})
    check(res, [257, 97, 98, 99, 256], [False, False, False, True, True])


def test_add_bos_without_a_bos_token_is_a_config_error(tok):
    with pytest.raises(ConfigError, match="no BOS"):
        fmt(tok, add_bos=True)


def test_length_limits_and_truncation():
    b = ByteTokenizer()
    rec = {"text": "abcdef"}  # 7 tokens with EOS, 8 with BOS
    err = fmt(b, max_tokens=4).encode_record(rec)
    assert isinstance(err, RecordError) and err.reason == "too_long"
    check(fmt(b, max_tokens=4, truncate="right").encode_record(rec), [97, 98, 99, 100], None)
    check(fmt(b, max_tokens=4, truncate="left").encode_record(rec), [100, 101, 102, 256], None)
    check(fmt(b, max_tokens=4, truncate="left", add_bos=True).encode_record(rec), [257, 101, 102, 256], None)
    check(fmt(b, max_tokens=7).encode_record(rec), [97, 98, 99, 100, 101, 102, 256], None)
    err = fmt(b, min_tokens=8).encode_record(rec)
    assert isinstance(err, RecordError) and err.reason == "too_short"
    # truncation that cuts away every trained token
    err = fmt(b, max_tokens=4, truncate="right").encode_record({"prompt": "aaaaaa", "completion": "b"})
    assert isinstance(err, RecordError) and err.reason == "all_masked"
    check(
        fmt(b, max_tokens=3, truncate="left").encode_record({"prompt": "aaaaaa", "completion": "b"}),
        [97, 98, 256],
        [False, True, True],
    )


# ----------------------------------------------------------------------------------------- auto, errors, batching


def test_auto_picks_chat_columns_prompt_completion_then_text(tok, golden):
    f = fmt(tok)
    assert f.format_of({"messages": [], "text": "x"}) == "chat"
    assert f.format_of({"instruction": "x", "prompt": "a", "completion": "b"}) == "columns"
    assert f.format_of({"prompt": "a", "completion": "b", "text": "t"}) == "prompt-completion"
    assert f.format_of({"prompt": "a", "text": "t"}) == "text"
    results = f.encode_records([{"text": "plain"}, {"prompt": "p", "completion": "c"}, {"output": "o"}])
    check(results[0], golden.text("plain") + [EOS], None)
    check(
        results[1],
        golden.text("p") + golden.text("c") + [EOS],
        [False] + [True] * (len(golden.text("c")) + 1),
    )
    check(
        results[2], *golden.build([("text", "Output:\n", False), ("text", "o", True), ("ids", [EOS], True)])
    )


def test_record_errors_name_the_field_and_reason(tok):
    f = fmt(tok)
    cases = [
        ({"body": "x"}, "missing_field", "text"),
        ({"text": 7}, "not_string", "text"),
        ({"text": ""}, "empty", "text"),
        ({"prompt": "p", "completion": ""}, "empty", "completion"),
        ({"prompt": None, "completion": "c"}, "not_string", "prompt"),
    ]
    for rec, reason, field in cases:
        err = f.encode_record(rec)
        assert isinstance(err, RecordError) and (err.reason, err.field) == (reason, field)
        assert err.path is None and err.line is None
        located = with_location(err, path="data/a.jsonl", line=12)
        assert str(located).startswith(f"data/a.jsonl, line 12, field '{field}'")
        assert located.reason == reason
    assert isinstance(f.encode_record(["not", "a", "dict"]), RecordError)


def test_one_encode_batch_call_per_kind_for_the_whole_batch(chat_dir, monkeypatch):
    tokenizer = load_tokenizer(chat_dir)
    calls = []
    real = tokenizer.encode_batch

    def spy(texts, *, parse_special=False):
        calls.append(parse_special)
        return real(texts, parse_special=parse_special)

    real_flat = tokenizer.encode_flat

    def spy_flat(texts):  # plain text: one flat buffer from the engine (prepare's hot path)
        calls.append(False)
        return real_flat(texts)

    monkeypatch.setattr(tokenizer, "encode_batch", spy)
    monkeypatch.setattr(tokenizer, "encode_flat", spy_flat)
    records = [{"text": f"doc {i}"} for i in range(50)] + [{"messages": CONVERSATION}] * 5
    records += [{"instruction": "a", "output": "b"}] * 5
    results = fmt(tokenizer).encode_records(records)
    assert all(isinstance(r, Encoded) for r in results)
    assert sorted(calls) == [False, True]


record_strategy = st.one_of(
    st.builds(lambda t: {"text": t}, st.text(min_size=1, max_size=30)),
    st.builds(lambda p, c: {"prompt": p, "completion": c}, st.text(max_size=20), st.text(max_size=20)),
    st.builds(
        lambda i, x, o: {"instruction": i, "input": x, "output": o},
        st.text(max_size=15),
        st.text(max_size=15),
        st.text(max_size=15),
    ),
    st.builds(
        lambda u, a: {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]},
        st.text(max_size=20),
        st.text(max_size=20),
    ),
)


@settings(max_examples=30, deadline=None)
@given(records=st.lists(record_strategy, max_size=8))
def test_batching_does_not_change_results(tokenizer_path, records):
    f = RecordFormatter(FormatConfig(), load_tokenizer(tokenizer_path))
    batch = f.encode_records(records)
    for rec, got in zip(records, batch, strict=True):
        single = f.encode_record(rec)
        assert type(got) is type(single)
        if isinstance(got, Encoded):
            assert got.ids.tolist() == single.ids.tolist()
            assert (got.mask is None) == (single.mask is None)
            if got.mask is not None:
                assert got.mask.tolist() == single.mask.tolist()
        else:
            assert (got.reason, got.field) == (single.reason, single.field)
