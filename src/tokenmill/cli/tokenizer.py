"""``tokenmill tokenizer``: train a byte-level BPE on your sources, or show what a tokenizer spec loads."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from tokenmill.cli._common import add_engine_argument, parse_key_values, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train or describe a tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    t = tsub.add_parser("train", help="train a byte-level BPE with `tokenizers` on SOURCEs")
    t.add_argument("sources", nargs="+", metavar="SOURCE")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--output", "-o", required=True, help="where to write tokenizer.json")
    t.add_argument("--text-key", default="text")
    t.add_argument("--input-format", choices=["jsonl", "parquet", "csv", "cbor", "text"])
    t.add_argument("--text-split", choices=["document", "lines"], default="document")
    t.add_argument("--max-documents", type=int, help="train on at most N documents")
    t.add_argument("--storage-option", action="append", metavar="KEY=VALUE")
    t.set_defaults(run=run_train)
    i = tsub.add_parser(
        "info", help="load a tokenizer spec and show its vocabulary, specials and fingerprint"
    )
    i.add_argument("spec")
    add_engine_argument(i)
    i.set_defaults(run=run_info)


def _texts(args: argparse.Namespace) -> Iterator[str]:
    from tokenmill.sources import expand_urls, read_records

    options = parse_key_values(args.storage_option, "--storage-option") or None
    n = 0
    for url in expand_urls(args.sources, storage_options=options):
        for rec in read_records(url, args.input_format, text_split=args.text_split, storage_options=options):
            text = rec.record.get(args.text_key)
            if isinstance(text, str) and text:
                yield text
                n += 1
                if args.max_documents is not None and n >= args.max_documents:
                    return


def run_train(args: argparse.Namespace) -> int:
    import os

    from tokenmill.tokenizer import train_tokenizer

    tok = train_tokenizer(_texts(args), args.vocab_size)
    out = args.output
    if out.endswith(".json"):  # one tokenizer.json file; EOS is found again by name when it is loaded
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            f.write(tok.backend.to_str())
    else:
        tok.save(out)
    print(
        f"trained a byte-level BPE with {tok.vocab_size} tokens -> {out} (fingerprint {tok.fingerprint[:16]})"
    )
    return 0


def run_info(args: argparse.Namespace) -> int:
    from tokenmill.tokenizer import load_tokenizer

    tok = load_tokenizer(args.spec, engine=args.engine)
    print_json({**tok.to_json_meta(), "engine_reason": tok.engine_reason})
    return 0
