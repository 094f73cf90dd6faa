"""Find a learner's definitions in a submitted notebook, and the code that grading an exercise runs.

The grader trusts nothing a notebook did: not its outputs, not its check cells,
not the order its cells ran in. It reads the source of every code cell with
`ast` (cells that do not parse are skipped; IPython magics and `!` lines are
neutralised first), and keeps only four kinds of top-level statement:

- imports,
- ``def`` and ``class`` definitions,
- simple constant assignments (``n_embd = 32``, ``SIZES = (1, 2)``, ``dtype = torch.float32``),

the last binding of a name winning, as when a notebook runs top to bottom. Every
other top-level statement (training loops, prints, ``sys.exit()``, monkeypatching
from a cell) is never run. For one exercise, the code is the names it defines
plus whatever top-level names they use, found transitively: helper functions,
constants, imports. That choice is about running the notebook's definitions
without its script, not about safety: whatever runs, runs in the sandboxed
worker (`gptlib.course.worker`), where it can reach nothing of the grader's.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from dataclasses import dataclass, field

import nbformat

_PY_BODY_MAGICS = frozenset({"time", "timeit", "capture", "prun"})


def cell_python(source: str) -> str | None:
    """A code cell's source as plain Python, line numbers kept; None for a cell magic that is not Python.

    Source that parses as it is stays untouched; otherwise each IPython line (``%magic``,
    ``!shell``, ``x = %time f()``, ``obj?``) becomes ``pass`` at its indentation."""
    try:
        ast.parse(source)
        return source
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    lines = source.split("\n")
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].strip()[2:].split(" ")[0]
        if magic not in _PY_BODY_MAGICS:
            return None
        lines[first] = ""
    magic_line = re.compile(r"^(\s*)(?:[%!]|[\w.,\s]+=\s*[%!]|[\w.]+\?{1,2}\s*$)")
    out = []
    for line in lines:
        m = magic_line.match(line)
        out.append(f"{m.group(1)}pass" if m else line)
    return "\n".join(out)


@dataclass
class Binding:
    """A top-level name the grader may run: where it is bound, what it is, which names it uses."""

    name: str
    cell: int  # index of the code cell in the notebook (0-based, over all cells)
    index: int  # statement index in that cell
    kind: str  # "import", "def", "class" or "const"
    refs: frozenset[str]
    alias: str | None = None  # for an import: the bound name to keep of that statement
    target: str | None = None  # for an import: what it imports, e.g. "torch.nn.functional"

    @property
    def position(self) -> tuple[int, int]:
        return (self.cell, self.index)


@dataclass
class Parsed:
    """What the grader found in a submission's code cells."""

    sources: dict[int, str] = field(default_factory=dict)  # cell index -> plain-Python source
    trees: dict[int, ast.Module] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    star_imports: list[Binding] = field(default_factory=list)
    unparsable: dict[int, str] = field(default_factory=dict)  # cell index -> the syntax error
    not_run: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # name -> (cell, line) of a skipped binding
    future_annotations: bool = False

    @property
    def defined(self) -> set[str]:
        return {n for n, b in self.bindings.items() if b.kind in ("def", "class")}


def _names_in(node: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))


def _global_refs(stmt: ast.stmt) -> frozenset[str]:
    """The module-level names a def or class uses: its decorators, defaults, bases and annotations, and the
    names its bodies read that are not their own locals (Python's own scoping rules, from `symtable`)."""
    try:
        top = symtable.symtable(ast.unparse(stmt), "<definition>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # code nested too deeply: its names
        return _names_in(stmt)
    names = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        names |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
        tables += table.get_children()
    return frozenset(names)


def _is_simple(value: ast.expr) -> bool:
    """A constant expression: literals, containers and arithmetic of them, names, attributes of names."""
    if isinstance(value, ast.Constant | ast.Name):
        return True
    if isinstance(value, ast.Attribute):
        return _is_simple(value.value) and isinstance(value.value, ast.Name | ast.Attribute)
    if isinstance(value, ast.Tuple | ast.List | ast.Set):
        return all(_is_simple(e) for e in value.elts)
    if isinstance(value, ast.Dict):
        return all(k is None or _is_simple(k) for k in value.keys) and all(
            _is_simple(v) for v in value.values
        )
    if isinstance(value, ast.UnaryOp):
        return _is_simple(value.operand)
    if isinstance(value, ast.BinOp):
        return _is_simple(value.left) and _is_simple(value.right)
    return False


def _target_names(target: ast.expr) -> list[str] | None:
    """Names bound by an assignment target made only of names (a, or a, b); None for anything else."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        names = []
        for t in target.elts:
            sub = _target_names(t)
            if sub is None:
                return None
            names += sub
        return names
    return None


def _bound_by(stmt: ast.stmt) -> list[str]:
    """Every name a top-level statement binds (for the ones the grader does not run)."""
    names = []
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.alias):
            names.append((node.asname or node.name).split(".")[0])
    return names


def import_bound(alias: ast.alias, is_from: bool) -> str:
    """The name an import alias binds: `import a.b` binds a, `import a.b as c` and `from m import b as c` bind c."""
    if alias.asname:
        return alias.asname
    return alias.name if is_from else alias.name.split(".")[0]


def parse_notebook(nb: nbformat.NotebookNode) -> Parsed:
    """Collect the runnable top-level bindings of every code cell, the last binding of a name winning."""
    parsed = Parsed()
    for ci, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell_python(cell.get("source", ""))
        if source is None:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError as e:
            parsed.unparsable[ci] = f"line {e.lineno}: {e.msg}"
            continue
        except (ValueError, RecursionError, MemoryError) as e:  # null bytes, code nested too deeply
            parsed.unparsable[ci] = f"{type(e).__name__}: {str(e)[:100]}"
            continue
        parsed.sources[ci], parsed.trees[ci] = source, tree
        for si, stmt in enumerate(tree.body):
            for name, binding in _bindings_of(stmt, ci, si, parsed):
                parsed.bindings[name] = binding
                parsed.not_run.pop(name, None)
    return parsed


def _bindings_of(stmt: ast.stmt, ci: int, si: int, parsed: Parsed) -> list[tuple[str, Binding]]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        is_from = isinstance(stmt, ast.ImportFrom)
        if is_from and stmt.module == "__future__":
            parsed.future_annotations |= any(a.name == "annotations" for a in stmt.names)
            return []
        if is_from and stmt.level:
            return []  # relative imports mean nothing outside a package
        out = []
        for alias in stmt.names:
            if alias.name == "*":
                parsed.star_imports.append(Binding("*", ci, si, "import", frozenset(), "*"))
                continue
            name = import_bound(alias, is_from)
            target = f"{stmt.module}.{alias.name}" if is_from else alias.name
            out.append((name, Binding(name, ci, si, "import", frozenset(), name, target)))
        return out
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        kind = "class" if isinstance(stmt, ast.ClassDef) else "def"
        return [(stmt.name, Binding(stmt.name, ci, si, kind, _global_refs(stmt)))]
    value, targets = None, None
    if isinstance(stmt, ast.Assign):
        value, targets = stmt.value, [_target_names(t) for t in stmt.targets]
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        value, targets = stmt.value, [_target_names(stmt.target)]
    if value is not None and targets and all(t is not None for t in targets) and _is_simple(value):
        refs = _names_in(value)
        return [(n, Binding(n, ci, si, "const", refs)) for t in targets for n in t]
    for name in _bound_by(stmt):
        parsed.bindings.pop(name, None)  # a later statement the grader skips shadows an earlier binding
        parsed.not_run[name] = (ci, getattr(stmt, "lineno", 0))
    return []


@dataclass
class ExerciseCode:
    """The code that grading one exercise runs, or why it cannot run."""

    # (cell, statement index, for an import the positions of the aliases to keep, else None), in run order
    segments: list[tuple[int, int, list[int] | None]]
    missing: list[str]  # defined names the notebook does not define
    not_run: dict[str, tuple[int, int]]  # names it uses that only a skipped statement binds


def _runnable(parsed: Parsed, b: Binding, seen: set[str] | None = None) -> bool:
    """A constant runs only if every name in its value is bound by something the grader runs (or a builtin):
    `V = tokenizer.vocab_size` after `tokenizer = CharTokenizer(text)` is skipped, as that statement is."""
    if b.kind != "const":
        return True
    seen = (seen or set()) | {b.name}
    for r in b.refs:
        if r in seen:
            continue
        if r in parsed.bindings:
            if not _runnable(parsed, parsed.bindings[r], seen):
                return False
        elif not hasattr(builtins, r):
            return False
    return True


def _needed(parsed: Parsed, roots: tuple[str, ...]) -> list[Binding]:
    seen: dict[str, Binding] = {}
    queue = [n for n in roots if n in parsed.bindings]
    while queue:
        name = queue.pop()
        if name in seen or not _runnable(parsed, parsed.bindings[name]):
            continue
        b = seen[name] = parsed.bindings[name]
        queue += [r for r in b.refs if r in parsed.bindings and r not in seen]
    return list(seen.values())


def _run_order(bindings: list[Binding]) -> list[Binding]:
    """Definitions before the ones that use them (class bases, decorators, constants), else notebook order.

    Students run cells out of order; a helper moved below its user still works."""
    by_name = {b.name: b for b in bindings}
    pending = sorted(bindings, key=lambda b: b.position)
    done: set[str] = set()
    order = []
    while pending:
        ready = next(
            (b for b in pending if all(r in done or r == b.name or r not in by_name for r in b.refs)),
            pending[0],
        )
        order.append(ready)
        done.add(ready.name)
        pending.remove(ready)
    return order


def _kept(stmt: ast.stmt, alias: str | None) -> list[int] | None:
    """Which aliases of an import statement to run: the ones binding `alias` ("*": a star import)."""
    if alias is None or not isinstance(stmt, ast.Import | ast.ImportFrom):
        return None
    is_from = isinstance(stmt, ast.ImportFrom)
    return [
        i
        for i, a in enumerate(stmt.names)
        if (a.name == "*" if alias == "*" else import_bound(a, is_from) == alias)
    ]


def exercise_code(parsed: Parsed, defines: tuple[str, ...]) -> ExerciseCode:
    """The bindings one exercise needs, in run order."""
    missing = [n for n in defines if n not in parsed.bindings]
    chosen = _run_order(_needed(parsed, defines))
    segments = [(b.cell, b.index, "*") for b in parsed.star_imports] + [
        (b.cell, b.index, b.alias) for b in chosen
    ]
    segments = [(c, i, _kept(parsed.trees[c].body[i], alias)) for c, i, alias in segments]
    used = set().union(*(b.refs for b in chosen)) if chosen else set()
    not_run = {n: where for n, where in parsed.not_run.items() if n in used}
    for n in used - {b.name for b in chosen}:
        b = parsed.bindings.get(n)
        if b is not None and not _runnable(parsed, b):  # a constant built from something that is not run
            not_run[n] = (b.cell, parsed.trees[b.cell].body[b.index].lineno)
    return ExerciseCode(segments, missing, not_run)
