"""Golden tests of every record format: exact ids and masks, computed here from the documented parts with the raw
`tokenizers` library (never with the formatter itself), plus errors, options and batching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import processors

from tokenmill.errors import ConfigError, RecordError
from tokenmill.formats import (
    BUILTIN_CHAT_TEMPLATE,
    Encoded,
    FormatConfig,
    RecordFormatter,
    ensure_bos_eos,
    unescape,
    with_location,
)
from tokenmill.tokenizer import ByteTokenizer, load_tokenizer

EOS = 0  # the fixture tokenizer's <|endoftext|>

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


class Golden:
    """Tokenizes documented parts independently with the raw library, to build expected ids and masks."""

    def __init__(self, path: Path) -> None:
        self.plain = RawTokenizer.from_file(str(path))
        self.plain.encode_special_tokens = True  # data text: special-token text stays text
        self.special = RawTokenizer.from_file(str(path))  # template text: control tokens recognised

    def text(self, s: str) -> list[int]:
        return self.plain.encode(s, add_special_tokens=False).ids

    def tmpl(self, s: str) -> list[int]:
        return self.special.encode(s, add_special_tokens=False).ids

    def build(self, parts: list[tuple[str, str | list[int], bool]]) -> tuple[list[int], list[bool]]:
        ids: list[int] = []
        mask: list[bool] = []
        for kind, value, trained in parts:
            got = value if kind == "ids" else self.text(value) if kind == "text" else self.tmpl(value)
            ids += got
            mask += [trained] * len(got)
        return ids, mask


@pytest.fixture(scope="module")
def golden(tokenizer_path) -> Golden:
    return Golden(tokenizer_path)


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return load_tokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def chat_dir(tokenizer_path, tmp_path_factory) -> Path:
    """The fixture tokenizer plus ChatML control tokens, with a ChatML template (default system prompt)."""
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    folder = tmp_path_factory.mktemp("chatml")
    raw.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|endoftext|>", "chat_template": CHATML})
    )
    return folder


@pytest.fixture(scope="module")
def llama_dir(tokenizer_path, tmp_path_factory) -> Path:
    """The fixture tokenizer with Llama-3-style specials, a post-processor that adds BOS, and a trimming template."""
    raw = RawTokenizer.from_file(str(tokenizer_path))
    raw.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    bos = raw.token_to_id("<|begin_of_text|>")
    raw.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    folder = tmp_path_factory.mktemp("llama")
    raw.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3})
    )
    return folder


def check(result, ids: list[int], mask: list[bool] | None) -> None:
    assert isinstance(result, Encoded), result
    assert result.ids.dtype == np.uint32
    assert result.ids.tolist() == ids
    if mask is None or all(mask):
        assert result.mask is None
    else:
        assert result.mask is not None and result.mask.tolist() == mask


def fmt(tokenizer, **options) -> RecordFormatter:
    return RecordFormatter(FormatConfig(**options), tokenizer)


# ----------------------------------------------------------------------------------------- text


def test_text_golden_unicode(tok, golden):
    records = [
        {"text": "café naïve 東京 🙂 données"},
        {"text": "hello world <|endoftext|> again"},
        {"text": " \n"},
    ]
    results = fmt(tok, format="text").encode_records(records)
    for rec, res in zip(records, results, strict=True):
        check(res, golden.text(rec["text"]) + [EOS], None)
    assert EOS not in results[1].ids[:-1].tolist()  # the special token's text in data stays text


def test_text_key_and_add_eos_false(tok, golden):
    res = fmt(tok, text_key="body", add_eos=False).encode_record({"body": "the old man"})
    check(res, golden.text("the old man"), None)


# ----------------------------------------------------------------------------------------- prompt/completion


def test_mask_boundary_does_not_depend_on_merges_across_the_join(tok, golden):
    joint = golden.text("hello world")
    prompt, completion = golden.text("hel"), golden.text("lo world")
    assert prompt + completion != joint  # the tokenizer merges across "hel|lo": the join matters here
    res = fmt(tok).encode_record({"prompt": "hel", "completion": "lo world"})
    check(res, prompt + completion + [EOS], [False] * len(prompt) + [True] * (len(completion) + 1))
    assert tok.decode(res.ids[res.mask].tolist()) == "lo world<|endoftext|>"


def test_prompt_completion_golden_unicode_and_no_prompt_mask(tok, golden):
    rec = {"prompt": "Q: 東京は?\nA:", "completion": " 🙂 café"}
    ids, mask = golden.build(
        [("text", rec["prompt"], False), ("text", rec["completion"], True), ("ids", [EOS], True)]
    )
    check(fmt(tok, format="prompt-completion").encode_record(rec), ids, mask)
    # without the prompt mask the record is one text, tokenized as a whole
    check(
        fmt(tok, prompt_mask=False).encode_record(rec),
        golden.text(rec["prompt"] + rec["completion"]) + [EOS],
        None,
    )
    # empty prompt: just the completion
    check(fmt(tok).encode_record({"prompt": "", "completion": "x y"}), golden.text("x y") + [EOS], None)


@settings(max_examples=40, deadline=None)
@given(prompt=st.text(max_size=40), completion=st.text(min_size=1, max_size=40))
def test_prompt_completion_property(tokenizer_path, prompt, completion):
    tokenizer = load_tokenizer(tokenizer_path)  # cached per process by the OS; fast
    golden = Golden(tokenizer_path)
    p, c = golden.text(prompt), golden.text(completion)
    res = fmt(tokenizer).encode_record({"prompt": prompt, "completion": completion})
    check(res, p + c + [EOS], [False] * len(p) + [True] * (len(c) + 1))


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


# ----------------------------------------------------------------------------------------- chat


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye <|endoftext|>"},
    {"role": "assistant", "content": "Bye."},
]


def test_chat_builtin_template_multi_turn_with_system(tok, golden):
    parts = [
        ("tmpl", "<|system|>\n", False),
        ("text", "Be brief.", False),
        ("tmpl", "\n<|user|>\n", False),
        ("text", "Hi", False),
        ("tmpl", "\n<|assistant|>\n", False),
        ("text", "Hello!", True),
        ("tmpl", "<|endoftext|>", True),  # the assistant's end of turn is the tokenizer's EOS
        ("tmpl", "<|user|>\n", False),
        ("text", "Bye <|endoftext|>", False),  # user text that looks like a control token stays text
        ("tmpl", "\n<|assistant|>\n", False),
        ("text", "Bye.", True),
        ("tmpl", "<|endoftext|>", True),  # ends with EOS already: no second EOS
    ]
    f = fmt(tok, format="chat")
    res = f.encode_record({"messages": CONVERSATION})
    check(res, *golden.build(parts))
    assert tok.decode(res.ids[res.mask].tolist()) == "Hello!<|endoftext|>Bye.<|endoftext|>"
    assert f.render_chat(CONVERSATION) == (
        "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!<|endoftext|><|user|>\n"
        "Bye <|endoftext|>\n<|assistant|>\nBye.<|endoftext|>"
    )


def test_chat_train_on_all_trains_every_token(tok, golden):
    res = fmt(tok, format="chat", train_on="all").encode_record({"messages": CONVERSATION[1:3]})
    parts = [("tmpl", "<|user|>\n", True), ("text", "Hi", True), ("tmpl", "\n<|assistant|>\n", True)]
    parts += [("text", "Hello!", True), ("tmpl", "<|endoftext|>", True)]
    check(res, golden.build(parts)[0], None)


def test_chat_jinja_template_string_and_default_system_prompt(chat_dir, golden):
    tokenizer = load_tokenizer(chat_dir)
    g = Golden(chat_dir / "tokenizer.json")
    im_start, im_end = tokenizer.token_to_id("<|im_start|>"), tokenizer.token_to_id("<|im_end|>")
    assert tokenizer.chat_template == CHATML
    messages = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! 🙂"},
        {"role": "user", "content": "What is <|im_end|>?"},
        {"role": "assistant", "content": "A marker."},
    ]
    parts = [
        ("tmpl", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", False),
        ("text", "Hi there", False),
        ("tmpl", "<|im_end|>\n<|im_start|>assistant\n", False),
        ("text", "Hello! 🙂", True),
        ("tmpl", "<|im_end|>\n", True),
        ("tmpl", "<|im_start|>user\n", False),
        ("text", "What is <|im_end|>?", False),
        ("tmpl", "<|im_end|>\n<|im_start|>assistant\n", False),
        ("text", "A marker.", True),
        ("tmpl", "<|im_end|>\n", True),
        ("ids", [EOS], True),
    ]
    ids, mask = g.build(parts)
    assert ids[0] == im_start and ids.count(im_end) == 5  # control tokens from the template only
    res = fmt(tokenizer, format="chat").encode_record({"messages": messages})
    check(res, ids, mask)
    # the same template given as a string in the config, to a tokenizer that has none
    plain = load_tokenizer(chat_dir / "tokenizer.json")
    bare = RecordFormatter(FormatConfig(format="chat", chat_template=CHATML), _without_template(plain))
    check(bare.encode_record({"messages": messages}), ids, mask)


def _without_template(tokenizer):
    tokenizer.chat_template = None
    return tokenizer


def test_chat_system_prompt_option_and_sharegpt_keys(chat_dir):
    tokenizer = load_tokenizer(chat_dir)
    g = Golden(chat_dir / "tokenizer.json")
    f = fmt(
        tokenizer,
        format="chat",
        system_prompt="Answer in French.",
        messages_key="conversations",
        role_key="from",
        content_key="value",
    )
    res = f.encode_record(
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Salut"}]}
    )
    parts = [
        ("tmpl", "<|im_start|>system\n", False),
        ("text", "Answer in French.", False),
        ("tmpl", "<|im_end|>\n<|im_start|>user\n", False),
        ("text", "Hi", False),
        ("tmpl", "<|im_end|>\n<|im_start|>assistant\n", False),
        ("text", "Salut", True),
        ("tmpl", "<|im_end|>\n", True),
        ("ids", [EOS], True),
    ]
    check(res, *g.build(parts))


def test_chat_tokenizer_template_that_trims_and_adds_bos(llama_dir):
    tokenizer = load_tokenizer(llama_dir)
    assert tokenizer.adds_bos and tokenizer.bos_token == "<|begin_of_text|>"
    g = Golden(llama_dir / "tokenizer.json")
    messages = [{"role": "user", "content": "  Hi  "}, {"role": "assistant", "content": "\nHello there \n"}]
    parts = [
        ("tmpl", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", False),
        ("text", "Hi", False),
        ("tmpl", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("text", "Hello there", True),
        ("tmpl", "<|eot_id|>", True),
    ]
    ids, mask = g.build(parts)
    # BOS from the template is not doubled, and the EOS (<|eot_id|>) ending the turn is not doubled either
    res = fmt(tokenizer).encode_record({"messages": messages})
    check(res, ids, mask)
    assert res.ids.tolist().count(tokenizer.bos_id) == 1


def test_chat_errors(tok, chat_dir):
    f = fmt(tok, format="chat")
    cases = [
        ({}, "missing_field", "messages"),
        ({"messages": "hi"}, "not_list", "messages"),
        ({"messages": []}, "empty", "messages"),
        ({"messages": ["hi"]}, "bad_message", "messages[0]"),
        ({"messages": [{"role": "user"}]}, "missing_field", "messages[0].content"),
        ({"messages": [{"role": "user", "content": ["a"]}]}, "not_string", "messages[0].content"),
        ({"messages": [{"role": 3, "content": "a"}]}, "not_string", "messages[0].role"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "all_masked", None),
    ]
    for rec, reason, field in cases:
        err = f.encode_record(rec)
        assert isinstance(err, RecordError), rec
        assert (err.reason, err.field) == (reason, field), (rec, err)
    convo = {"messages": CONVERSATION[1:3]}
    upper = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    err = fmt(tok, format="chat", chat_template=upper).encode_record(convo)
    assert (
        isinstance(err, RecordError)
        and err.reason == "chat_template"
        and "changes message contents" in str(err)
    )
    unstable = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n{% endfor %}"
    err = fmt(tok, format="chat", chat_template=unstable).encode_record(convo)
    assert isinstance(err, RecordError) and err.reason == "chat_template" and "prefix" in str(err)
    raising = "{{ raise_exception('roles must alternate') }}"
    err = fmt(tok, format="chat", chat_template=raising).encode_record(convo)
    assert isinstance(err, RecordError) and "roles must alternate" in str(err)
    with pytest.raises(ConfigError, match="does not compile"):
        fmt(tok, format="chat", chat_template="{% for %}").encode_record(convo)


def test_builtin_template_is_the_documented_one(tok):
    f = fmt(tok, format="chat", chat_template="builtin")
    assert f.chat.template() is not None
    assert "eos_token" in BUILTIN_CHAT_TEMPLATE
    assert f.render_chat(CONVERSATION[1:2], add_generation_prompt=True) == "<|user|>\nHi\n<|assistant|>\n"


# ----------------------------------------------------------------------------------------- tokens


def test_tokens_format(tok):
    f = fmt(tok, format="tokens")
    check(f.encode_record({"input_ids": [5, 17, 892]}), [5, 17, 892, EOS], None)
    check(f.encode_record({"input_ids": [5, EOS]}), [5, EOS], None)  # EOS never doubled
    masked = fmt(tok, format="tokens", tokens_mask_key="loss_mask")
    check(
        masked.encode_record({"input_ids": [5, 6, 7], "loss_mask": [0, 1, 1]}),
        [5, 6, 7, EOS],
        [False, True, True, True],
    )
    bad = [
        ({"input_ids": [893]}, "bad_tokens"),
        ({"input_ids": [-1, 3]}, "bad_tokens"),
        ({"input_ids": [1.5]}, "bad_tokens"),
        ({"input_ids": "1 2 3"}, "bad_tokens"),
        ({"input_ids": [[1, 2]]}, "bad_tokens"),
        ({"input_ids": []}, "empty"),
        ({"ids": [1]}, "missing_field"),
    ]
    for rec, reason in bad:
        err = f.encode_record(rec)
        assert isinstance(err, RecordError) and err.reason == reason, rec
    assert "893" in str(f.encode_record({"input_ids": [893]}))
    err = masked.encode_record({"input_ids": [5, 6], "loss_mask": [1]})
    assert isinstance(err, RecordError) and err.reason == "bad_mask"


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

    monkeypatch.setattr(tokenizer, "encode_batch", spy)
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


# ----------------------------------------------------------------------------------------- config


def test_unescape():
    assert unescape("Input:\\n") == "Input:\n"
    assert unescape("a\\tb\\r\\n") == "a\tb\r\n"
    assert unescape("keep \\\\n literal") == "keep \\n literal"
    assert unescape("already\nreal") == "already\nreal"
    assert unescape("C:\\path\\x") == "C:\\path\\x"


def test_from_dict_validates_and_round_trips():
    with pytest.raises(ConfigError, match="'prompt_kye'.*prompt_key"):
        FormatConfig.from_dict({"prompt_kye": "q"})
    with pytest.raises(ConfigError, match="unknown format"):
        FormatConfig.from_dict({"format": "xml"})
    with pytest.raises(ConfigError, match="truncate"):
        FormatConfig.from_dict({"truncate": "middle"})
    with pytest.raises(ConfigError, match="column_prefixes has 2 entries"):
        FormatConfig.from_dict({"column_prefixes": ["a", "b"]})
    with pytest.raises(ConfigError, match="max_tokens"):
        FormatConfig.from_dict({"max_tokens": 0})
    with pytest.raises(ConfigError, match="min_tokens"):
        FormatConfig.from_dict({"max_tokens": 5, "min_tokens": 9})
    with pytest.raises(ConfigError, match="true or false"):
        FormatConfig.from_dict({"prompt_mask": "maybe"})
    with pytest.raises(ConfigError, match="columns\\[0\\]: unknown option 'prefx'"):
        FormatConfig.from_dict({"columns": [{"key": "a", "prefx": "x"}]})
    cfg = FormatConfig.from_dict(
        {
            "format": "prompt_completion",
            "prompt-mask": "false",
            "column_keys": "q, a",
            "column_train": "false,true",
            "system_prompt": "Be kind.\\nAlways.",
            "max_tokens": "2048",
            "add_bos": "auto",
        }
    )
    assert cfg.format == "prompt-completion" and cfg.prompt_mask is False
    assert (
        cfg.column_keys == ("q", "a")
        and cfg.column_train == (False, True)
        and cfg.column_prefixes == ("", "")
    )
    assert cfg.system_prompt == "Be kind.\nAlways." and cfg.max_tokens == 2048 and cfg.add_bos is None
    data = cfg.to_dict()
    json.dumps(data)
    assert FormatConfig.from_dict(data) == cfg
    assert FormatConfig.from_dict({}) == FormatConfig()
    default = FormatConfig()
    assert default.column_prefixes == ("Instruction:\n", "Input:\n", "Output:\n")
    assert default.column_train == (True, False, True) and default.column_separator == "\n\n"


def test_formatter_pickles_after_rendering_chat(tok):
    import pickle

    f = fmt(tok)
    rec = {"messages": CONVERSATION}
    first = f.encode_record(rec)
    copy = pickle.loads(pickle.dumps(f))
    again = copy.encode_record(rec)
    assert again.ids.tolist() == first.ids.tolist() and again.mask.tolist() == first.mask.tolist()


def test_columns_as_comma_separated_string():
    cfg = FormatConfig.from_dict({"columns": "question, answer"})
    assert cfg.column_keys == ("question", "answer") and cfg.column_train == (False, True)
