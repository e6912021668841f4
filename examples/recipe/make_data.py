"""Write the three sources of the example recipe, offline, from the Python standard library on this machine.

    web/web-{0..3}.jsonl    prose: module, class and function docstrings, one paragraph per record ("text"), with
                            some records copied into another shard with different spacing (for dedup: exact)
    code/code-{0,1}.parquet source files, one per row ("content", "path")
    chat/train.jsonl        conversations ("messages"): a user asks what a function does, the assistant answers
    chat/val.jsonl          the same for other modules: the chat source's validation files

Usage: python examples/recipe/make_data.py [OUT_DIR] [--max-files N]   (default: examples/recipe/data)
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def stdlib_files(max_files: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not {"site-packages", "dist-packages", "test", "tests", "idlelib"} & set(p.parts)
    )
    return files[:max_files]


def docstrings(tree: ast.Module, module: str) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the module and its top-level functions and classes."""
    out = []
    doc = ast.get_docstring(tree)
    if doc:
        out.append((module, doc))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if doc and not node.name.startswith("_"):
                out.append((f"{module}.{node.name}", doc))
    return out


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=str(Path(__file__).parent / "data"))
    ap.add_argument("--max-files", type=int, default=400)
    args = ap.parse_args(argv)
    out = Path(args.out)
    root = Path(sysconfig.get_paths()["stdlib"])

    web: list[list[dict]] = [[], [], [], []]
    code: list[dict] = []
    chat_train: list[dict] = []
    chat_val: list[dict] = []
    n_par = 0
    for path in stdlib_files(args.max_files):
        rel = str(path.relative_to(root))
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError, OSError):
            continue
        if source.strip():
            code.append({"content": source, "path": rel})
        module = rel[:-3].replace("/", ".").removesuffix(".__init__")
        for name, doc in docstrings(tree, module):
            paragraphs = [p.strip() for p in doc.split("\n\n") if len(p.strip()) > 80]
            for p in paragraphs:
                web[n_par % 4].append({"text": p, "id": f"{name}#{n_par}", "url": f"stdlib://{rel}"})
                n_par += 1
            if name != module and paragraphs:
                conversation = {
                    "messages": [
                        {"role": "user", "content": f"What does `{name}` do?"},
                        {"role": "assistant", "content": paragraphs[0]},
                    ]
                }
                held_out = hashlib.sha1(module.encode()).digest()[0] < 40  # about 15% of modules
                (chat_val if held_out else chat_train).append(conversation)
    # documents repeated across shards, as web crawls have them: every 15th paragraph again in the next
    # shard, with its spacing changed (dedup: exact drops these copies; normalization makes them match)
    for s in range(4):
        for r in web[s][::15]:
            web[(s + 1) % 4].append(
                {**r, "text": "  " + r["text"].replace(" ", "  ") + "\n", "id": r["id"] + "+"}
            )
    for s, records in enumerate(web):
        write_jsonl(out / "web" / f"web-{s}.jsonl", records)
    (out / "code").mkdir(parents=True, exist_ok=True)
    half = len(code) // 2
    for i, part in enumerate((code[:half], code[half:])):
        pq.write_table(pa.Table.from_pylist(part), out / "code" / f"code-{i}.parquet", row_group_size=64)
    write_jsonl(out / "chat" / "train.jsonl", chat_train)
    write_jsonl(out / "chat" / "val.jsonl", chat_val)
    planted = sum(len(w[::15]) for w in web)
    print(
        f"wrote {out}: web {sum(map(len, web))} paragraphs in 4 shards ({planted} planted copies), "
        f"code {len(code)} files in 2 parquet files, chat {len(chat_train)} train + {len(chat_val)} validation "
        "conversations"
    )


if __name__ == "__main__":
    main()
