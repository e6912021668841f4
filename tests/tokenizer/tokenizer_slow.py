"""A slow transformers tokenizer over a tiktoken ``Encoding``, shaped like Qwen's first ones and Kimi's."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizer


class TikTokenSlow(PreTrainedTokenizer):
    def __init__(self, encoding: Any, **kwargs: Any) -> None:
        self.model = encoding
        self._specials = dict(encoding._special_tokens)
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return self.model.n_vocab

    def get_vocab(self) -> dict[str, int]:
        return {**{t.decode("latin-1"): i for t, i in self.model._mergeable_ranks.items()}, **self._specials}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [str(i) for i in self.model.encode_ordinary(text)]

    def _convert_token_to_id(self, token: str) -> int:
        return self._specials.get(token, int(token) if token.isdigit() else 0)

    def _convert_id_to_token(self, index: int) -> str:
        return str(index)

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        return self.model.encode_ordinary(text)
