"""Golden tests of the chat format: templates, masks of assistant turns, errors."""

from __future__ import annotations

import pytest

from tokenmill.errors import ConfigError, RecordError
from tokenmill.formats import (
    BUILTIN_CHAT_TEMPLATE,
    FormatConfig,
    RecordFormatter,
)
from tokenmill.tokenizer import load_tokenizer

from .format_helpers import CHATML, CONVERSATION, EOS, Golden, check, fmt

# ----------------------------------------------------------------------------------------- chat


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


def test_formatter_pickles_after_rendering_chat(tok):
    import pickle

    f = fmt(tok)
    rec = {"messages": CONVERSATION}
    first = f.encode_record(rec)
    copy = pickle.loads(pickle.dumps(f))
    again = copy.encode_record(rec)
    assert again.ids.tolist() == first.ids.tolist() and again.mask.tolist() == first.mask.tolist()
