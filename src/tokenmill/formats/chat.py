"""``chat``: a list of messages rendered by a chat template, trained on the assistant turns (or on all).

Chat text produced by a template is tokenized with control tokens recognised (``<|im_start|>`` becomes one
id), while message contents are always plain text, so a user message cannot inject a control token. Where each
content sits in the rendering is found by rendering once with each content replaced by a private-use sentinel;
where each turn starts and ends, by rendering the conversation's prefixes (the template must be prefix-stable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tokenmill.errors import ConfigError
from tokenmill.formats.config import FormatConfig
from tokenmill.formats.layout import PLAIN, SPECIAL, Layout, record_error
from tokenmill.tokenizer import Tokenizer

# Used when the tokenizer has no chat template. Each message is `<|role|>` and a newline, the content, then a
# newline; an assistant turn ends with the tokenizer's EOS instead (so the model learns to stop), when it has one.
BUILTIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}{{ message['content'] }}"
    "{% if message['role'] == 'assistant' and eos_token %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_SENTINEL_OPEN, _SENTINEL_CLOSE = "\U000f0000", "\U000f0001"
_SENTINEL_RE = re.compile(f"{_SENTINEL_OPEN}(\\d+){_SENTINEL_CLOSE}")


class ChatRenderer:
    """Renders conversations with the configured (or the tokenizer's, or the built-in) template and lays them
    out as masked and trained parts. The compiled template is made on first use and not pickled."""

    def __init__(self, config: FormatConfig, tokenizer: Tokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self._template: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_template"] = None  # compiled Jinja objects do not pickle; recompiled on first use
        return state

    def messages(self, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        cfg = self.config
        key = cfg.messages_key
        if key not in rec:
            raise record_error(f"field {key!r} is missing", key, "missing_field")
        raw = rec[key]
        if not isinstance(raw, (list, tuple)):
            raise record_error(
                f"field {key!r} must be a list of messages, got {type(raw).__name__}", key, "not_list"
            )
        if not raw:
            raise record_error(f"field {key!r} has no messages", key, "empty")
        messages = []
        for i, m in enumerate(raw):
            where = f"{key}[{i}]"
            if not isinstance(m, Mapping):
                raise record_error(
                    f"{where} must be an object with {cfg.role_key!r} and {cfg.content_key!r}",
                    where,
                    "bad_message",
                )
            role, content = m.get(cfg.role_key), m.get(cfg.content_key)
            if role is None:
                raise record_error(
                    f"{where} has no {cfg.role_key!r}", f"{where}.{cfg.role_key}", "missing_field"
                )
            if content is None and cfg.content_key not in m:
                raise record_error(
                    f"{where} has no {cfg.content_key!r}", f"{where}.{cfg.content_key}", "missing_field"
                )
            if not isinstance(role, str):
                raise record_error(
                    f"must be a string, got {type(role).__name__}", f"{where}.{cfg.role_key}", "not_string"
                )
            if not isinstance(content, str):
                raise record_error(
                    f"must be a string, got {type(content).__name__}",
                    f"{where}.{cfg.content_key}",
                    "not_string",
                )
            msg = {k: v for k, v in m.items() if k not in (cfg.role_key, cfg.content_key)}
            msg["role"] = cfg.role_aliases.get(role, role)
            msg["content"] = content
            messages.append(msg)
        if cfg.system_prompt is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": cfg.system_prompt})
        return messages

    def template(self) -> Any:
        if self._template is None:
            source = self.config.chat_template
            if source is None:
                source = self.tokenizer.chat_template or BUILTIN_CHAT_TEMPLATE
            elif source == "builtin":
                source = BUILTIN_CHAT_TEMPLATE
            self._template = compile_template(source)
        return self._template

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        tok = self.tokenizer
        try:
            return self.template().render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=tok.bos_token or "",
                eos_token=tok.eos_token or "",
                pad_token=tok.pad_token or "",
                tools=None,
                documents=None,
            )
        except ConfigError:
            raise
        except Exception as e:  # a template's raise_exception(), or a template bug this record triggers
            raise record_error(
                f"the chat template failed on this conversation: {e}",
                self.config.messages_key,
                "chat_template",
            ) from None

    def layout(self, rec: Mapping[str, Any]) -> Layout:
        """Render with each content replaced by a sentinel, so we know where contents are (plain text) and where
        each turn starts and ends (prefix renderings); the assistant's trained span runs from the end of the
        generation prompt to the end of its turn: its content plus the template's end-of-turn markers."""
        cfg = self.config
        messages = self.messages(rec)
        contents = [m["content"] for m in messages]
        if any(_SENTINEL_OPEN in c or _SENTINEL_CLOSE in c for c in contents):
            raise record_error(
                "a message contains a reserved private-use character", cfg.messages_key, "chat_template"
            )
        masked = [dict(m, content=f"{_SENTINEL_OPEN}{i}{_SENTINEL_CLOSE}") for i, m in enumerate(messages)]
        full = self.render(masked, False)
        actual = self.render(messages, False)
        chunks = _SENTINEL_RE.split(full)  # text, index, text, index, ..., text
        substitute = None
        for variant in (contents, [c.strip() for c in contents]):
            if "".join(t if j % 2 == 0 else variant[int(t)] for j, t in enumerate(chunks)) == actual:
                substitute = variant
                break
        if substitute is None:
            raise record_error(
                "the chat template changes message contents (beyond trimming whitespace), so exact masks are "
                "impossible; use chat_template: builtin or a template that inserts contents verbatim",
                cfg.messages_key,
                "chat_template",
            )
        trained_spans: list[tuple[int, int]] = []
        if cfg.train_on == "assistant":
            prev = ""
            for i, m in enumerate(masked):
                cur = self.render(masked[: i + 1], False)
                if not cur.startswith(prev) or not full.startswith(cur):
                    raise record_error(
                        "the chat template renders a conversation prefix differently from the whole conversation; "
                        "exact per-turn masks need a prefix-stable template",
                        cfg.messages_key,
                        "chat_template",
                    )
                if m["role"] == "assistant":
                    start = self._assistant_start(masked[:i], prev, cur, i)
                    trained_spans.append((start, len(cur)))
                prev = cur
        lay = Layout()
        pos = 0
        for j, t in enumerate(chunks):
            if j % 2 == 1:
                width = len(_SENTINEL_OPEN) + len(t) + len(_SENTINEL_CLOSE)
                trained = cfg.train_on == "all" or _inside(pos, trained_spans)
                lay.add(substitute[int(t)], trained, PLAIN)
                pos += width
                continue
            # template text, cut at the edges of trained spans
            end = pos + len(t)
            cuts = sorted({pos, end, *(e for s in trained_spans for e in s if pos < e < end)})
            for a, b in zip(cuts, cuts[1:], strict=False):
                lay.add(full[a:b], cfg.train_on == "all" or _inside(a, trained_spans), SPECIAL)
            pos = end
        return lay

    def _assistant_start(self, before: list[dict[str, Any]], prev: str, cur: str, index: int) -> int:
        """Where assistant turn ``index`` starts being trained: after the generation prompt when the template
        has one that the turn's rendering extends, else at its content."""
        if before:
            gen = self.render(before, True)
            if gen.startswith(prev) and cur.startswith(gen) and len(gen) > len(prev):
                return len(gen)
        marker = f"{_SENTINEL_OPEN}{index}{_SENTINEL_CLOSE}"
        at = cur.find(marker, len(prev))
        return at if at >= 0 else len(prev)


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def compile_template(source: str) -> Any:
    """Compile a chat template the way transformers does (sandboxed, trim_blocks, lstrip_blocks, loopcontrols,
    ``raise_exception``, ``tojson``, ``{% generation %}`` blocks), without needing transformers."""
    try:
        import jinja2
        from jinja2 import nodes
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ConfigError("chat formats need jinja2: pip install jinja2") from e

    class _Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers' assistant marker): rendered as its body."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        @staticmethod
        def _body(caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any,
        ensure_ascii: bool = False,
        indent: Any = None,
        separators: Any = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt: str) -> str:
        # a fixed date keeps prepared data reproducible (a live clock would change tokens between runs)
        import datetime

        return datetime.datetime(2025, 1, 1).strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateError as e:
        raise ConfigError(f"the chat template does not compile: {e}") from e
