"""PrepareConfig on the one configuration mechanism: rules at construction, YAML lines in errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tokenmill.errors import ConfigError
from tokenmill.prepare import PrepareConfig


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_error": "ignore"}, "on_error must be one of raise, skip"),
        ({"text_split": "para"}, "text_split must be one of document, lines"),
        ({"row_tokens": 8}, "row_tokens must be >= 16"),
        ({"validation": 1.5}, r"validation as a fraction must be in \[0, 1\)"),
        ({"validation": -3}, "validation as a count must be >= 0"),
        ({"max_documents": -1}, "max_documents must be >= 0"),
        ({"sample": "all"}, "sample must be one of first, random"),
        ({"dedup": "fuzzy"}, "dedup must be one of exact"),
        ({"workres": 2}, "did you mean 'workers'"),
    ],
)
def test_bad_options_are_refused_naming_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        PrepareConfig.from_dict(options)
    if "workres" not in options:
        with pytest.raises(ConfigError, match=message):
            PrepareConfig(**options)


def test_values_in_other_spellings_are_converted():
    config = PrepareConfig.from_dict({"workers": "2", "append": "yes", "validation": 500})
    assert config.workers == 2 and config.append is True and config.validation == 500


def test_a_config_file_error_names_the_file_and_line(tmp_path, tokenizer_path):
    path = tmp_path / "prep.yaml"
    path.write_text(f"tokenizer: {tokenizer_path}\noutput: {tmp_path / 'c'}\nrow_tokens: 4\n")
    done = subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", "prepare", "x.jsonl", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"{path}, line 3, key 'row_tokens': row_tokens must be >= 16" in done.stderr
    assert "Traceback" not in done.stderr
