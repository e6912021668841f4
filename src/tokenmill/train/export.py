"""Export a checkpoint to a Hugging Face folder: ``save_pretrained`` for the model and for the tokenizer.

The result loads with ``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)``
and nothing of tokenmill. The model is rebuilt from the checkpoint's ``config.json`` and ``model.pt`` (read with
``weights_only=True``); the tokenizer is a ``PreTrainedTokenizerFast`` over the cache's ``tokenizer.json`` (the run
keeps a copy in ``RUN/tokenizer/``) with its BOS/EOS/PAD tokens and nothing else, so it produces the cache's ids
(``load_tokenizer`` gives it the cache's fingerprint); the model's config and generation config get the same special
ids so ``generate()`` stops at EOS (and pads with EOS when the tokenizer has no PAD).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenmill.errors import StateError, TokenizerError
from tokenmill.train import checkpoint as ckpt


def load_checkpoint_model(checkpoint: str | Path):
    """The checkpoint's model as an ``AutoModelForCausalLM`` on the CPU, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise StateError(f"{checkpoint} has no config.json; is it a tokenmill checkpoint?")
    config = AutoConfig.from_pretrained(str(checkpoint), local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(ckpt.load_torch(checkpoint / "model.pt"))
    return model.eval()


def hf_tokenizer(tokenizer_dir: str | Path):
    """A ``PreTrainedTokenizerFast`` for a tokenmill tokenizer folder (one that holds a ``tokenizer.json``)."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(tokenizer_dir)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(
            f"{folder} has no tokenizer.json (a tiktoken or byte tokenizer); the model is exported without one"
        )
    meta_path = folder / "tokenmill_tokenizer.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    # exactly the cache's special tokens, so the exported tokenizer has the cache's fingerprint (no pad is invented)
    specials = {k: meta.get(k) for k in ("bos_token", "eos_token", "pad_token") if meta.get(k)}
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path), **specials)
    if meta.get("chat_template"):
        tok.chat_template = meta["chat_template"]
    return tok


def find_tokenizer_dir(checkpoint: Path) -> Path | None:
    """The run's tokenizer copy (``RUN/tokenizer``), or the cache's, as recorded in the checkpoint."""
    run_dir = checkpoint.parent.parent
    if (run_dir / "tokenizer").is_dir():
        return run_dir / "tokenizer"
    state = ckpt.read_trainer_state(checkpoint)
    data = state.get("config", {}).get("data")
    if isinstance(data, list):
        data = data[0].get("cache") if data else None
    if isinstance(data, str) and (Path(data) / "tokenizer").is_dir():
        return Path(data) / "tokenizer"
    return None


def export_checkpoint(
    checkpoint: str | Path, output: str | Path, tokenizer_dir: str | Path | None = None
) -> Path:
    """Write ``output/`` (model weights as safetensors, config, generation config, tokenizer files)."""
    checkpoint = Path(checkpoint)
    output = Path(output)
    model = load_checkpoint_model(checkpoint)
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else find_tokenizer_dir(checkpoint)
    tok = None
    if tokenizer_dir is not None:
        try:
            tok = hf_tokenizer(tokenizer_dir)
        except TokenizerError:
            tok = None
    if tok is not None:
        for name in ("bos", "eos", "pad"):
            tid = getattr(tok, f"{name}_token_id")
            if tid is not None:
                setattr(model.config, f"{name}_token_id", tid)
                if model.generation_config is not None:
                    setattr(model.generation_config, f"{name}_token_id", tid)
        if tok.pad_token_id is None and tok.eos_token_id is not None and model.generation_config is not None:
            model.generation_config.pad_token_id = tok.eos_token_id  # generate() pads with EOS, GPT-2's habit
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output), safe_serialization=True)
    if tok is not None:
        tok.save_pretrained(str(output))
    return output
