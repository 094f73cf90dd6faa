"""Imports point one way: from the tools (cli, course, checks, viz, bench) down to the model parts, in no circle.

The graph is read from the source with `ast`: every import in a module counts,
those inside functions too (they run, only later), except those under
`if TYPE_CHECKING:` (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gptlib"

# The tools: they may import anything in gptlib; nothing below them may import them.
TOOLS = ("gptlib.cli", "gptlib.__main__", "gptlib.course", "gptlib.checks", "gptlib.viz")
# The model and what it is made of: these import only each other and the plain foundations.
MODEL_PARTS = (
    "gptlib.config",
    "gptlib.embeddings",
    "gptlib.attention",
    "gptlib.mlp",
    "gptlib.block",
    "gptlib.head",
    "gptlib.model",
    "gptlib.kvcache",
    "gptlib.generate",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The gptlib modules that `module` imports, outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def target(name: str) -> str | None:
        # the longest known module that `name` is or lies inside ("gptlib.checks.base.x" -> "gptlib.checks.base")
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(target(alias.name) or "")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in (or is)
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # `from gptlib import data` imports the module gptlib.data; `from gptlib import GPT` the package
                found.add(target(f"{source}.{alias.name}") or "")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard("")
    found.discard(module)
    return {m for m in found if m.startswith("gptlib")}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = _imports(tree, name, path.name == "__init__.py")
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    graph = import_graph()
    assert {"gptlib.block", "gptlib.model", "gptlib.checks.engine"} <= set(graph)
    assert {"gptlib.attention", "gptlib.mlp", "gptlib.config"} <= graph["gptlib.block"]
    assert "gptlib.model" in graph["gptlib.checks.gpt"]


def test_the_walk_skips_type_checking_blocks_and_sees_imports_in_functions():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gptlib.model import GPT\n"
        "def f():\n    from gptlib.block import Block\n"
        "from gptlib import config\n"
    )
    found = _imports(ast.parse(source), "gptlib.x", is_package=False)
    assert found == {"gptlib.block", "gptlib.config"}


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_gptlib_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "gptlib's modules import each other in a circle: " + " -> ".join(cycle or [])


def test_lower_layers_never_import_the_tools():
    bad = [
        f"{module} imports {imported}"
        for module, imports in import_graph().items()
        if not _within(module, TOOLS)
        for imported in sorted(imports)
        if _within(imported, TOOLS)
    ]
    assert bad == [], "modules below the tools (cli, course, checks, viz) import them:\n" + "\n".join(bad)


def test_the_model_parts_import_only_model_parts_and_foundations():
    # precision.py (number formats: what a device can compute in) is, like device.py, a leaf: it imports no gptlib.
    foundations = ("gptlib.device", "gptlib.tokenizer", "gptlib.files", "gptlib.precision")
    graph = import_graph()
    assert all(graph[f] == set() for f in ("gptlib.device", "gptlib.precision"))
    bad = [
        f"{module} imports {imported}"
        for module, imports in graph.items()
        if _within(module, MODEL_PARTS)
        for imported in sorted(imports)
        if not _within(imported, MODEL_PARTS + foundations)
    ]
    assert bad == [], "the model parts reach up into other layers:\n" + "\n".join(bad)


def _raw_imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, TYPE_CHECKING blocks included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_nothing_in_gptlib_imports_bench():
    # bench/ races gptlib against other models; the library never depends on it
    users = [
        name for name, path in MODULES.items() if any(m.split(".")[0] == "bench" for m in _raw_imports(path))
    ]
    assert users == []


def test_the_file_layer_knows_nothing_of_the_trainer():
    # checkpoint.py stores the plain state the Trainer hands it: it imports no train.py, not even for type hints
    assert "gptlib.train" not in _raw_imports(PACKAGE / "checkpoint.py")
