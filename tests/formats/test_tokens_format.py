"""The tokens format: ids checked against the vocabulary, an optional mask."""

from __future__ import annotations

from tokenmill.errors import RecordError

from .format_helpers import EOS, check, fmt

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
