"""The worker's gptlib: the course's library without the finished answer to the exercise being graded.

A student grading lesson 04 may build their Block from gptlib's attention and
MLP: that is how the course is built. They may not hand in gptlib's own Block.
So the sandbox does not show the worker the real gptlib: it shows a copy made
here for one exercise, in which the objects that are that exercise's finished
answer (`ANSWERS`) are stubs that say so when used, and which has no
`gptlib.checks` (but the learner boundary's own side, which holds no answer),
none of the grader (but the worker), and only code and the offline corpora:
no notebook (a wheel installs the solutions inside the package, as
gptlib/solutions) and no hint. The originals are not in the copy at all, not
even compiled: withholding them is a boundary of the file system, not a rule
the student's code could walk around. What the check itself hands the
student (a GPT whose `configure_optimizers` is lesson 06's answer, an attention
module whose cache path is lesson 08's) cannot be withheld; `ANSWERS` says so.
"""

from __future__ import annotations

import ast
import compileall
import shutil
from pathlib import Path

import gptlib

MOUNT = "/opt/gptlib-view"  # where the sandbox shows it (the folder that holds `gptlib/`)
WORKER_MODULES = (
    "__init__.py",
    "wire.py",
    "worker.py",
    "confine.py",
    "forks.py",
)  # gptlib.course's part in the sandbox
BOUNDARY_MODULES = ("learner.py", "builders.py")  # gptlib.checks' part: the learner side of the boundary
DATA = ("corpora",)  # the only folders whose files other than modules the worker sees (the offline corpora)
# A wheel carries the course's notebooks inside the package (gptlib/solutions, gptlib/lessons): never copied.
NOTEBOOKS = ("solutions", "lessons")

_GENERATE = ("gptlib.generate.next_token", "gptlib.generate.top_k_filter", "gptlib.generate.top_p_filter")
_GPT2 = ("gptlib.gpt2.state_dict_from_hf", "gptlib.gpt2.state_dict_to_hf", "gptlib.gpt2.from_hf_gpt2",
         "gptlib.gpt2.to_hf_gpt2", "gptlib.gpt2.from_pretrained")  # fmt: skip
ANSWERS: dict[str, tuple[str, ...]] = {  # exercise -> the gptlib objects that are its finished answer
    "char_tokenizer": ("gptlib.tokenizer.CharTokenizer",),
    "get_batch": ("gptlib.data.get_batch",),
    "unigram_entropy": (),
    "one_hot_embedding": (),
    "token_position_embedding": ("gptlib.embeddings.Embeddings",),
    "position_similarity": (),
    "causal_average": (),
    "masked_softmax": (),
    "head": (),
    "attention": ("gptlib.attention.CausalSelfAttention",),
    "gelu": (),
    "mlp": ("gptlib.mlp.MLP",),
    "layer_norm": (),
    "block": ("gptlib.block.Block",),
    "cross_entropy": (),
    "gpt": ("gptlib.model.GPT", "gptlib.head.LMHead"),
    "count_parameters": ("gptlib.model.GPT",),
    "optimizer_groups": (),  # GPT.configure_optimizers: a method of the GPT the check hands the learner
    "train_step": ("gptlib.train.Trainer",),
    "sample": (*_GENERATE, "gptlib.generate.generate"),
    "attention_weights_by_hand": ("gptlib.viz.maps.model_attention",),
    "previous_token_score": ("gptlib.viz.maps.model_attention",),
    "induction_score": ("gptlib.viz.maps.model_attention",),
    "top_p_filter": (*_GENERATE, "gptlib.generate.generate"),
    "sampling_strategies": (*_GENERATE, "gptlib.generate.generate"),
    "kv_cache_attention": (),  # the cache path of the attention module the check hands the learner
    "kv_cache_generate": ("gptlib.generate.generate",),  # next_token and KVCache are the lesson's tools
    "split_c_attn": _GPT2,
    "convert_block": _GPT2,
    "convert_gpt2": _GPT2,
}


def answers(exercise: str) -> tuple[str, ...]:
    """The gptlib objects withheld while `exercise` is graded (an exercise the table does not know: none)."""
    return tuple(sorted(ANSWERS.get(exercise, ())))


def _message(name: str) -> str:
    return (
        f"{name} is not available while this exercise is graded: it is gptlib's finished answer to it. "
        "Write your own; the rest of gptlib is yours to use"
    )  # no full stop: a crash report adds its own


def _stub(node: ast.stmt, message: str) -> ast.stmt:
    """A class or function of the same name that raises ImportError(message) when it is used."""
    if isinstance(node, ast.ClassDef):
        source = (
            f"class {node.name}(metaclass=_Withheld):\n"
            f"    _withheld = {message!r}\n\n"
            "    def __init__(self, *args, **kwargs):\n        raise ImportError(self._withheld)\n"
        )
    else:
        source = f"def {node.name}(*args, **kwargs):\n    raise ImportError({message!r})\n"
    return ast.parse(source).body[0]


_WITHHELD_META = (
    "class _Withheld(type):\n"
    '    """The class of a withheld class: any attribute it does not have says why."""\n\n'
    "    def __getattr__(cls, name):\n        raise ImportError(cls.__dict__['_withheld'])\n"
)


def _without(source: str, names: set[str], module: str) -> str:
    """A module's source with its top-level classes and functions in `names` replaced by stubs."""
    tree = ast.parse(source)
    body = [
        _stub(node, _message(f"{module}.{node.name}"))
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names
        else node
        for node in tree.body
    ]
    head = 0  # the stubs' metaclass goes after the docstring and `from __future__` imports
    while head < len(body) and (
        (isinstance(body[head], ast.Expr) and isinstance(getattr(body[head], "value", None), ast.Constant))
        or (isinstance(body[head], ast.ImportFrom) and body[head].module == "__future__")
    ):
        head += 1
    tree.body = body[:head] + ast.parse(_WITHHELD_META).body + body[head:]
    return ast.unparse(tree) + "\n"


def build_view(dest: Path, withheld: tuple[str, ...], package: Path | None = None) -> Path:
    """Write into `dest` (which gets `gptlib/`) the worker's gptlib without the `withheld` objects (an
    exercise's `answers`), compiled; return `dest`."""
    package = Path(package or Path(gptlib.__file__).resolve().parent)
    hidden: dict[str, set[str]] = {}
    for dotted in withheld:
        module, name = dotted.rsplit(".", 1)
        hidden.setdefault(module, set()).add(name)
    root = Path(dest) / "gptlib"
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(package)
        target = root / rel
        module = ".".join(("gptlib", *rel.with_suffix("").parts)).removesuffix(".__init__")
        if rel.parts[0] in NOTEBOOKS or (path.suffix != ".py" and rel.parts[0] not in DATA):
            continue  # the solutions (a wheel's gptlib/solutions), the hints, anything else that is not code
        if rel.parts[0] == "course":  # of the grader, only what runs in the sandbox
            if len(rel.parts) == 2 and rel.name in WORKER_MODULES:
                _copy(path, target)
        elif rel.parts[0] == "checks":  # of the checks, only the learner side of the boundary
            if rel.as_posix() == "checks/__init__.py":
                _write(
                    target,
                    '"""The checks are not part of graded code; only the learner boundary is here."""\n',
                )
            elif len(rel.parts) == 2 and rel.name in BOUNDARY_MODULES:
                _copy(path, target)
        elif path.suffix == ".py" and module in hidden:
            _write(target, _without(path.read_text(encoding="utf-8"), hidden[module], module))
        else:
            _copy(path, target)
    compileall.compile_dir(root, ddir=f"{MOUNT}/gptlib", quiet=1)
    return Path(dest)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _copy(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
