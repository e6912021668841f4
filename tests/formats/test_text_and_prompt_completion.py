"""Golden tests of the text and prompt-completion formats: exact ids and masks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.tokenizer import load_tokenizer

from .format_helpers import EOS, Golden, check, fmt

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
