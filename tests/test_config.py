"""The one configuration mechanism: types, allowed values, YAML lines in errors, ``--set`` merging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from tokenmill.config import Config, OptionError, Where, digest, load_config, option
from tokenmill.errors import ConfigError


@dataclass
class Toy(Config):
    LABEL: ClassVar[str] = "toy config"
    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "the learning rate is lr"}

    lr: float = option(1e-3, minimum=0)
    mode: str = option("a", choices=("a", "b"))
    count: float | int | None = None
    flags: tuple[bool, ...] = (True,)
    model: dict = option(factory=lambda: {"type": "gpt2", "n_layer": 2})
    name: str = option("x", coerce=str.strip)

    def validate(self) -> None:
        if self.mode == "b" and self.lr > 1:
            raise OptionError("lr", "mode b needs lr <= 1")


def test_types_are_converted_and_checked():
    toy = Toy.from_dict({"lr": "3e-4", "count": 500, "flags": ["yes", False], "name": "  n "})
    assert toy.lr == 3e-4 and toy.count == 500 and isinstance(toy.count, int)
    assert toy.flags == (True, False) and toy.name == "n"
    assert Toy.from_dict({"count": 0.5}).count == 0.5
    with pytest.raises(ConfigError, match="toy config, key 'lr': lr must be a number, got 'fast'"):
        Toy.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="mode must be one of a, b, got 'c'"):
        Toy.from_dict({"mode": "c"})
    with pytest.raises(ConfigError, match="lr must be >= 0"):
        Toy(lr=-1.0)  # rules hold for configs built in Python too
    with pytest.raises(ConfigError, match="key 'lr': mode b needs lr <= 1"):
        Toy.from_dict({"mode": "b", "lr": 2})
    with pytest.raises(ConfigError, match="unknown option 'mdoe' \\(did you mean 'mode'\\?\\)"):
        Toy.from_dict({"mdoe": "a"})
    with pytest.raises(ConfigError, match="the learning rate is lr"):
        Toy.from_dict({"learning_rate": 1})


def test_errors_name_the_yaml_line_and_set_merges_into_defaults(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("lr: 0.1\nmodel:\n  type: llama\n  n_layr: 3\nmode: z\n")
    with pytest.raises(ConfigError, match=r"toy.yaml, line 5, key 'mode'"):
        load_config(Toy, path)
    assert load_config(Toy, None, ["model.n_layer=1"]).model == {"type": "gpt2", "n_layer": 1}
    path.write_text("model: {type: llama}\n")
    assert load_config(Toy, path, ["model.n_layer=4"], lr=0.5).model == {"type": "llama", "n_layer": 4}
    where = Where("r.yaml", {"sources": 2, "sources.web": 3}).child("sources").child("web")
    assert str(where.error("weight", "bad")) == "r.yaml, line 3, key 'sources.web.weight': bad"
    assert str(where.locate(OptionError("max_tokens", "too big"), {"max_tokens": "max_document_tokens"})) == (
        "r.yaml, line 3, key 'sources.web.max_document_tokens': too big"
    )


def test_digest_is_sixteen_hex_digits_of_sorted_json():
    assert digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
    assert len(digest({})) == 16 and digest({"a": 1}) != digest({"a": 2})
