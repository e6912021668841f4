"""The layer order of docs/architecture.md, enforced: each module imports only its own layer and the layers below,
and no two modules import each other, directly or through others.

Imports are read with ``ast`` from the source (nothing is imported), including the ones inside functions (a lazy
import is still a dependency) and excluding those under ``if TYPE_CHECKING:`` (annotations only).
``from package import name`` depends on ``package.name`` when that is a module, else on the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Top to bottom, as docs/architecture.md draws them. A layer is a set of first names under ``tokenmill.``;
# "" is the package itself (``tokenmill/__init__.py``, whose own imports are only the errors).
LAYERS: list[set[str]] = [
    {"cli"},  # the command line, and every ``__main__`` (see _layer)
    {"train", "epochraft"},  # the reference trainer and the adapters (HF Trainer, epochraft's surface)
    {"recipe"},
    {"torch"},
    {"loader"},
    {"pipeline"},
    {"prepare", "ray_executor"},
    {"dedup"},
    {"cache"},
    {"formats"},
    {"tokenizer"},
    {"sources"},
    {"sampling"},
    {"", "config", "errors", "state", "testing", "labels"},  # the shared ground
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / "tokenmill").rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module of the library that ``name`` (a module, or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> dict[str, int]:
    """The library modules ``module`` imports, with the line of the first such import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(name: str | None, line: int) -> None:
        if name and name.startswith("tokenmill"):
            target = _resolve(name)
            if target and target != module:
                found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit_else(child)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[: len(up) - (child.level - 1)]
                    base = ".".join(up + ([child.module] if child.module else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in MODULES else base, child.lineno)
            visit(child)

    def visit_else(node: ast.If) -> None:
        for child in node.orelse:
            visit(ast.Module(body=[child], type_ignores=[]))

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "__main__":
        return 0  # an entry point sits with the command line
    first = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if first in names:
            return i
    raise AssertionError(
        f"{module} is in no layer of docs/architecture.md: add {first!r} to LAYERS and the page"
    )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_its_layer_and_below(module):
    mine = _layer(module)
    upward = [
        f"{module} (line {line}) imports {target}, a higher layer ({sorted(LAYERS[_layer(target)])})"
        for target, line in sorted(GRAPH[module].items())
        if _layer(target) < mine
    ]
    assert not upward, "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles():
    cycles = _cycles()
    lines = [" <-> ".join(c) for c in cycles]
    assert not cycles, "modules that import each other (directly or through others):\n" + "\n".join(lines)


def test_every_layer_of_the_test_is_on_the_architecture_page():
    page = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = sorted(n for layer in LAYERS for n in layer if n and n not in page)
    assert not missing, f"docs/architecture.md does not name these layers: {missing}"


def test_the_checker_sees_lazy_imports_and_skips_type_checking_ones():
    pipeline_imports = GRAPH["tokenmill.pipeline.pipeline"]
    assert "tokenmill.pipeline.torch" in pipeline_imports  # inside Pipeline.to_torch
    assert "tokenmill.pipeline.pipeline" not in GRAPH["tokenmill.pipeline.torch"]  # under TYPE_CHECKING only


def test_prepare_is_always_the_function():
    """``tokenmill.prepare`` is the function whatever was imported before (issue 11): a fresh interpreter each."""
    import subprocess
    import sys

    script = (
        "import tokenmill, tokenmill.prepare\n"
        "from tokenmill.prepare import PrepareConfig\n"
        "import tokenmill.prepare.config\n"
        "assert callable(tokenmill.prepare) and not isinstance(tokenmill.prepare, type(tokenmill)), tokenmill.prepare\n"
    )
    for first in ("", "import tokenmill.prepare.worker\n", "from tokenmill import prepare\n"):
        run = subprocess.run(
            [sys.executable, "-c", first + script], capture_output=True, text=True, env=_env(), timeout=120
        )
        assert run.returncode == 0, run.stderr[-2000:]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env
