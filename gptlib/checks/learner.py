"""The learner boundary: the one way a check reaches the learner's code and objects.

A check never touches a learner's object itself (no call, no attribute, no isinstance, no
hook). It holds a `Ref`, a handle, and asks the active `Backend` to call it, read one of
its attributes, list a module's parameters, run a backward pass, ... Every value that
comes back is plain data: a tensor of exactly `torch.Tensor` (a copy), an int, float, bool,
str, bytes or None of exactly that type, a numeric numpy array, or a list, tuple, dict or
set of those. Anything else stays behind the boundary and comes back as another Ref,
which says what it is (`Ref.info`: its type, its name, its repr cut short). So a tensor
subclass with a lying __torch_function__, or an int whose == always agrees, never reaches
a comparison.

Objects the check trusts and the learner's code receives (a gptlib GPT with given
weights, a seeded generator, an optimizer, Hugging Face's GPT-2) cross as a `Spec`: a
name from an allow-list (`BUILDERS`), plain arguments and state tensors. The learner side
builds the object; what the learner's code did to it is read back through its Ref.

The learner's code draws from a torch RNG stream of its own (a check seeds it with `seed`
when it needs the same dropout masks as a reference); what the check draws never depends on
what the learner's code did. Each request carries the check's grad mode. Two backends
implement the operations:

- `InProcess` (the default: a notebook, plain Python, pytest): the objects live here.
- the grader's remote backend (gptlib.course): the same operations as requests to a
  sandboxed worker process that holds the learner's code. `using(backend)` selects it.

The design, with every operation's arguments and results, is in the project's
coordination notes (learner_api.md); this module is its reference implementation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import sysconfig
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

# ---- what crosses --------------------------------------------------------------------------------

SCALARS = (type(None), bool, int, float, complex, str, bytes)
MAX_ITEMS = 200_000  # list/tuple/dict/set items in one value
MAX_DEPTH = 32
MAX_TENSOR_BYTES = 1 << 28
MAX_TEXT = 4000  # characters of a message or repr


def qualified(cls: type) -> str:
    """A class's full name as `Info.classes` holds it: 'torch.nn.modules.linear.Linear'."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Info:
    """What a learner-side object is, in plain data.

    kind: "class", "function" (anything else callable), "module" (an nn.Module instance) or "object".
    classes: the full names of its class and that class's bases (of the class itself, for a class).
    training: an nn.Module's mode (None for anything else)."""

    type_name: str
    name: str | None
    kind: str
    callable: bool
    classes: tuple[str, ...]
    repr: str
    training: bool | None = None

    def isa(self, cls: type) -> bool:
        """isinstance for an object, issubclass for a class: judged by the names in `classes`."""
        return qualified(cls) in self.classes


class Ref:
    """A handle on an object on the learner's side of the boundary. Its repr is the object's (cut short)."""

    __slots__ = ("id", "info", "__weakref__")

    def __init__(self, id: int, info: Info) -> None:
        self.id, self.info = id, info

    def __repr__(self) -> str:
        return self.info.repr

    def isa(self, cls: type) -> bool:
        return self.info.isa(cls)


@dataclass(frozen=True)
class Spec:
    """A trusted object for the learner side to build: `BUILDERS[kind](*args, **kwargs)`, then (for a
    module) the `state` tensors copied in by name and train(`train`). args/kwargs: plain data, Refs, Specs."""

    kind: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None
    train: bool | None = None


@dataclass(frozen=True)
class Frame:
    """One frame of the learner's own code in a traceback. place: 'Cell In[5]' in Jupyter, else the file."""

    place: str
    line: int
    function: str
    code: str


class Crash(Exception):
    """The learner's code raised. types: the exception's class and its bases, by name ('ValueError',
    'Exception', ...); frames: the learner's own frames, outermost first; stage: what the boundary was
    doing ('call', 'backward', 'attribute', 'modules', 'train')."""

    def __init__(self, types: tuple[str, ...], message: str, frames: tuple[Frame, ...], stage: str) -> None:
        super().__init__(f"{types[0]}: {message}")
        self.types, self.message, self.frames, self.stage = types, message, frames, stage

    @property
    def name(self) -> str:
        return self.types[0]

    def isa(self, name: str) -> bool:
        return name in self.types

    @property
    def where(self) -> str:
        """' (at `code`, line N of your code)' for the innermost learner frame, or ''."""
        if not self.frames:
            return ""
        f = self.frames[-1]
        return f" (at `{f.code}`, line {f.line} of your code)" if f.code else f" (line {f.line} of your code)"


class LearnerLost(Exception):
    """A remote backend lost the learner's side (the worker died or stopped answering): the grader's
    problem, never the learner's mistake."""


class LearnerTimeout(LearnerLost):
    """The learner's code ran longer than the grader allows."""


@dataclass(frozen=True)
class Backward:
    """Differentiate a call: the positional tensor args `wrt` get requires_grad; the loss is
    (value[output] if output is not None else value) summed, or multiplied by `cotangent` first."""

    wrt: tuple[int, ...] = ()
    output: int | None = None
    cotangent: torch.Tensor | None = None


@dataclass(frozen=True)
class Grads:
    """Gradients after a Backward. inputs: arg position -> grad (None: none reached it); params: the called
    module's parameters by name -> grad (empty for a function); connected: the loss depended on anything
    differentiable at all (False: no backward pass ran)."""

    inputs: dict[int, torch.Tensor | None]
    params: dict[str, torch.Tensor | None]
    connected: bool


@dataclass(frozen=True)
class Call:
    """What a call gave: its value (plain data and Refs), the tensor args it changed in place (positions
    and keyword names), the gradients (with a Backward), and the watched sub-modules' calls in order:
    (path, inputs, output)."""

    value: Any
    changed: tuple[int | str, ...] = ()
    grads: Grads | None = None
    trace: tuple[tuple[str, Any, Any], ...] = ()


@dataclass(frozen=True)
class Sub:
    """One module of a learner's module tree (named_modules order; path '' is the root). params: its own
    parameters' names -> their names in the root's named_parameters() (a shared one has its first name)."""

    path: str
    info: Info
    params: dict[str, str]
    buffers: tuple[str, ...]


# ---- trusted objects the learner side may build --------------------------------------------------


BUILDERS: dict[str, Callable[..., Any]] = {}  # filled by gptlib/checks/builders.py


def register(kind: str, builder: Callable[..., Any]) -> None:
    """Add a builder to the allow-list (gptlib/checks/builders.py does, at import: it holds every one)."""
    BUILDERS[kind] = builder


def config_spec(config: Any) -> Spec:
    """A GPTConfig as a Spec."""
    return Spec("GPTConfig", kwargs=dataclasses.asdict(config))


def module_spec(kind: str, module: nn.Module, *args: Any) -> Spec:
    """A trusted module (built by BUILDERS[kind](*args)) with `module`'s weights, buffers and mode."""
    state = {n: t.detach().clone() for n, t in [*module.named_parameters(), *module.named_buffers()]}
    return Spec(kind, args=args, state=state, train=module.training)


# ---- the operations ------------------------------------------------------------------------------


class Backend:
    """The operations a check may ask for. Every method may raise Crash (the learner's code raised) and,
    for a remote backend, LearnerLost; a misuse by the check raises TypeError or ValueError."""

    def adopt(self, obj: Any) -> Ref:
        """A Ref for an object of this process (the notebook's class or function): in-process only."""
        raise TypeError(f"{type(self).__name__} takes Refs, not objects of the checking process.")

    def call(
        self,
        fn: Ref,
        args: tuple = (),
        kwargs: dict | None = None,
        backward: Backward | None = None,
        watch: tuple[str, ...] = (),
    ) -> Call:
        """fn(*args, **kwargs) on the learner's side. watch: sub-module paths of fn (a module) whose calls
        to record. args and kwargs: plain data (the learner gets copies), Refs and Specs."""
        raise NotImplementedError

    def attribute(self, obj: Ref, name: str) -> Any:
        """getattr(obj, name): plain data or a Ref. A missing attribute is a Crash of type AttributeError."""
        raise NotImplementedError

    def modules(self, obj: Ref) -> list[Sub]:
        """An nn.Module's tree: every module in named_modules() order, with its own parameter names."""
        raise NotImplementedError

    def parameters(self, obj: Ref, grads: bool = False) -> dict[str, torch.Tensor | None]:
        """named_parameters() as copies (requires_grad kept), or with grads=True their .grad (None if none)."""
        raise NotImplementedError

    def buffers(self, obj: Ref) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_parameters(self, obj: Ref, values: dict[str, torch.Tensor]) -> None:
        """Copy tensors into parameters or buffers, by their names in named_parameters()/named_buffers()."""
        raise NotImplementedError

    def train(self, obj: Ref, mode: bool) -> None:
        """module.train(mode)."""
        raise NotImplementedError

    def build(self, spec: Spec) -> Ref:
        raise NotImplementedError

    def fetch(self, obj: Ref) -> Any:
        """The object itself as plain data, where it is plain data (a dict the learner's code filled)."""
        raise NotImplementedError

    def parameter_name(self, module: Ref, value: torch.Tensor) -> str | None:
        """If `value` came back from the learner's side as a copy of one of `module`'s parameters, its name."""
        raise NotImplementedError

    def seed(self, seed: int) -> None:
        """Seed the learner side's torch RNG (global) stream: the learner's code draws from it alone."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop every Ref (at the end of a check) and seed the learner's stream 0 again."""


_LIBRARY = tuple(
    Path(p).as_posix().rstrip("/") + "/"
    for p in {
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
        str(Path(torch.__file__).parent),
    }
) + (Path(__file__).resolve().parents[1].as_posix() + "/",)


def _is_learner_file(filename: str) -> bool:
    name = filename.replace("\\", "/")
    if name.startswith("<frozen") or "site-packages/" in name or "dist-packages/" in name:
        return False
    return not name.startswith(_LIBRARY)


def _place(filename: str) -> str:
    """'Cell In[5]' for a Jupyter cell, else the file's name."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    with contextlib.suppress(Exception):
        label = shell.compile.format_code_name(filename)  # type: ignore[union-attr]
        if label:
            return " ".join(label)
    return Path(filename).name


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def crash_of(e: BaseException, stage: str) -> Crash:
    """The plain-data Crash for an exception the learner's code raised."""
    types = tuple(c.__name__ for c in type(e).__mro__)
    try:
        message = _short(str(e))
    except Exception:  # noqa: BLE001  (a learner's __str__ may raise too)
        message = f"<{types[0]} that cannot be printed>"
    frames = tuple(
        Frame(_place(f.filename), f.lineno or 0, f.name, (f.line or "").strip())
        for f in traceback.extract_tb(e.__traceback__)
        if _is_learner_file(f.filename)
    )
    return Crash(types, message, frames, stage)


def _repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as e:  # noqa: BLE001
        text = f"<{type(obj).__name__} whose repr raised {type(e).__name__}>"
    if not isinstance(text, str):
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def describe(obj: Any) -> Info:
    """Info for an object of this process. Judged by its real type (a learner's __class__ cannot lie);
    of its own code only __repr__ runs (and a metaclass's __name__)."""
    cls = type(obj)
    if type in cls.__mro__:
        kind, mro = "class", obj.__mro__
    else:
        kind = "module" if nn.Module in cls.__mro__ else ("function" if callable(obj) else "object")
        mro = cls.__mro__
    name = training = None
    with contextlib.suppress(Exception):
        name = getattr(obj, "__name__", None) if kind in ("class", "function") else None
    with contextlib.suppress(Exception):
        training = obj.__dict__.get("training") if kind == "module" else None
    return Info(
        type_name=cls.__name__,
        name=name if type(name) is str else None,
        kind=kind,
        callable=callable(obj),
        classes=tuple(qualified(c) for c in mro),
        repr=_repr(obj),
        training=training if type(training) is bool else None,
    )


class InProcess(Backend):
    """The learner's objects live in this process; values are copied and normalised all the same."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._next = 0
        self._origins: dict[int, int] = {}  # id(a returned copy) -> id(the parameter it copies)
        self.seed(0)

    def seed(self, seed: int) -> None:
        self._rng = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def _their_rng(self) -> Iterator[None]:
        """Run the learner's code on their own RNG stream; the check's stream is as it was afterwards."""
        mine = torch.get_rng_state()
        torch.set_rng_state(self._rng)
        try:
            yield
        finally:
            self._rng = torch.get_rng_state()
            torch.set_rng_state(mine)

    # -- handles and values --

    def _ref(self, obj: Any) -> Ref:
        self._next += 1
        self._objects[self._next] = obj
        return Ref(self._next, describe(obj))

    def _obj(self, ref: Ref) -> Any:
        if not isinstance(ref, Ref) or ref.id not in self._objects:
            raise TypeError(f"not a live Ref of this backend: {ref!r}")
        return self._objects[ref.id]

    def adopt(self, obj: Any) -> Ref:
        return obj if isinstance(obj, Ref) else self._ref(obj)

    def plain(self, value: Any) -> Any:
        """A learner-side value as plain data (copies), with Refs for everything else."""
        budget = [MAX_ITEMS]
        return self._plain(value, 0, budget)

    def _plain(self, v: Any, depth: int, budget: list[int]) -> Any:
        t = type(v)
        if t in SCALARS:
            return v
        if t is torch.Tensor or t is nn.Parameter:
            if v.layout is not torch.strided or v.device.type == "meta" or v.nbytes > MAX_TENSOR_BYTES:
                return self._ref(v)
            copy = v.detach().to("cpu", copy=True)
            if t is nn.Parameter:
                self._origins[id(copy)] = id(v)
                weakref.finalize(copy, self._origins.pop, id(copy), None)
            return copy
        if t is torch.Size:
            return tuple(int(n) for n in v)
        np = sys.modules.get("numpy")
        if np is not None:
            if t is np.ndarray and v.dtype.kind in "biufc" and v.nbytes <= MAX_TENSOR_BYTES:
                return np.array(v, copy=True)
            if t in _numpy_scalars(np):
                return v.item()
        if depth >= MAX_DEPTH or t not in (list, tuple, dict, set, frozenset):
            return self._ref(v)
        budget[0] -= len(v)
        if budget[0] < 0:
            return self._ref(v)
        if t is dict:
            if not all(type(k) in SCALARS for k in v):
                return self._ref(v)
            return {k: self._plain(x, depth + 1, budget) for k, x in v.items()}
        return t(self._plain(x, depth + 1, budget) for x in v)

    def _learner(self, value: Any) -> Any:
        """A value for the learner's code: copies of plain data; Refs resolved; Specs built."""
        if isinstance(value, Ref):
            return self._obj(value)
        if isinstance(value, Spec):
            return self._build(value)
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if type(value) in (list, tuple, set, frozenset):
            return type(value)(self._learner(x) for x in value)
        if type(value) is dict:
            return {k: self._learner(x) for k, x in value.items()}
        return value

    def _build(self, spec: Spec) -> Any:
        if spec.kind not in BUILDERS:
            raise ValueError(f"no builder for {spec.kind!r}; known: {sorted(BUILDERS)}")
        obj = BUILDERS[spec.kind](*self._learner(spec.args), **self._learner(spec.kwargs))
        if spec.state is not None:
            _load(obj, spec.state)
        if spec.train is not None:
            obj.train(spec.train)
        return obj

    # -- the operations --

    def call(
        self,
        fn: Ref,
        args: tuple = (),
        kwargs: dict | None = None,
        backward: Backward | None = None,
        watch: tuple[str, ...] = (),
    ) -> Call:
        target = self._obj(fn)
        a, kw = list(self._learner(tuple(args))), self._learner(dict(kwargs or {}))
        given = {i: x for i, x in enumerate(a) if type(x) is torch.Tensor}
        given.update({k: x for k, x in kw.items() if type(x) is torch.Tensor})
        before = {k: (x.clone(), x._version) for k, x in given.items()}
        if backward is not None:
            for i in backward.wrt:
                a[i].requires_grad_(True)
            if isinstance(target, nn.Module):
                target.zero_grad(set_to_none=True)
        trace: list[tuple[str, Any, Any]] = []
        hooks = []
        if watch:
            for path in watch:
                sub = target.get_submodule(path)
                hooks.append(sub.register_forward_hook(lambda m, i, o, p=path: trace.append((p, i, o))))
        try:
            with self._their_rng(), torch.set_grad_enabled(backward is not None or torch.is_grad_enabled()):
                out = target(*a, **kw)
        except Exception as e:  # the learner's code raised: plain data about it
            raise crash_of(e, "call") from None
        finally:
            for h in hooks:
                h.remove()
        changed = tuple(
            k
            for k, x in given.items()
            if type(x) is not torch.Tensor or x._version != before[k][1] or not _same(x, before[k][0])
        )
        grads = self._backward(target, a, out, backward) if backward is not None else None
        return Call(
            self.plain(out),
            changed,
            grads,
            tuple((p, self.plain(tuple(i)), self.plain(o)) for p, i, o in trace),
        )

    def _backward(self, target: Any, a: list[Any], out: Any, backward: Backward) -> Grads:
        loss = out[backward.output] if backward.output is not None and type(out) in (tuple, list) else out
        module = target if isinstance(target, nn.Module) else None
        connected = type(loss) is torch.Tensor and loss.requires_grad
        if connected:
            try:
                with self._their_rng():
                    (loss if backward.cotangent is None else loss * backward.cotangent).sum().backward()
            except Exception as e:  # noqa: BLE001
                raise crash_of(e, "backward") from None
        inputs = {i: _grad(a[i]) for i in backward.wrt}
        params = {}
        if module is not None:
            params = {n: _grad(p) for n, p in module.named_parameters()}
            module.zero_grad(set_to_none=True)
        return Grads(inputs, params, connected)

    def attribute(self, obj: Ref, name: str) -> Any:
        try:
            with self._their_rng():
                return self.plain(getattr(self._obj(obj), name))
        except Exception as e:
            raise crash_of(e, "attribute") from None

    def modules(self, obj: Ref) -> list[Sub]:
        root = self._module(obj)
        try:
            canonical = {id(p): n for n, p in nn.Module.named_parameters(root)}
            return [
                Sub(
                    path,
                    describe(m),
                    {n: canonical.get(id(p), n) for n, p in nn.Module.named_parameters(m, recurse=False)},
                    tuple(n for n, _ in nn.Module.named_buffers(m, recurse=False)),
                )
                for path, m in nn.Module.named_modules(root)
            ]
        except Exception as e:
            raise crash_of(e, "modules") from None

    def parameters(self, obj: Ref, grads: bool = False) -> dict[str, torch.Tensor | None]:
        module = self._module(obj)
        try:
            named = list(nn.Module.named_parameters(module))
        except Exception as e:
            raise crash_of(e, "modules") from None
        if grads:
            return {n: _grad(p) for n, p in named}
        return {n: p.detach().clone().requires_grad_(p.requires_grad) for n, p in named}

    def buffers(self, obj: Ref) -> dict[str, torch.Tensor]:
        module = self._module(obj)
        try:
            return {n: b.detach().clone() for n, b in nn.Module.named_buffers(module)}
        except Exception as e:
            raise crash_of(e, "modules") from None

    def set_parameters(self, obj: Ref, values: dict[str, torch.Tensor]) -> None:
        _load(self._module(obj), values)

    def train(self, obj: Ref, mode: bool) -> None:
        try:
            with self._their_rng():
                self._module(obj).train(mode)
        except Exception as e:
            raise crash_of(e, "train") from None

    def build(self, spec: Spec) -> Ref:
        with self._their_rng():
            return self._ref(self._build(spec))

    def fetch(self, obj: Ref) -> Any:
        return self.plain(self._obj(obj))

    def parameter_name(self, module: Ref, value: torch.Tensor) -> str | None:
        return self.parameter_with_origin(module, self.origin_of(value))

    def origin_of(self, value: Any) -> int | None:
        """The token of the parameter a returned tensor copies (a remote worker sends it with the tensor)."""
        return self._origins.get(id(value))

    def parameter_with_origin(self, module: Ref, origin: int | None) -> str | None:
        """The name in `module` of the parameter with that token, if any."""
        named = nn.Module.named_parameters(self._module(module))
        return next((n for n, p in named if id(p) == origin), None) if origin is not None else None

    def forget(self) -> None:
        self._objects.clear()
        self.seed(0)

    def _module(self, obj: Ref) -> nn.Module:
        module = self._obj(obj)
        if not isinstance(module, nn.Module):
            raise TypeError(f"{obj!r} is not an nn.Module")
        return module


@functools.cache
def _numpy_scalars(np: Any) -> frozenset[type]:
    return frozenset(np.dtype(c).type for c in "?bBhHiIlLqQefdgFD")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same type, shape, dtype and values, NaN equal to NaN."""
    if type(a) is not torch.Tensor or a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        nan = a.isnan()
        return bool(torch.equal(nan, b.isnan()) and torch.equal(a.masked_fill(nan, 0), b.masked_fill(nan, 0)))
    return bool(torch.equal(a, b))


def _grad(t: Any) -> torch.Tensor | None:
    g = getattr(t, "grad", None)
    return g.detach().clone() if type(g) is torch.Tensor else None


def _load(obj: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy tensors into a module's parameters and buffers by name."""
    if not isinstance(obj, nn.Module):
        raise TypeError(f"a state needs an nn.Module, not {type(obj).__name__}")
    targets = dict(nn.Module.named_parameters(obj)) | dict(nn.Module.named_buffers(obj))
    unknown = sorted(set(state) - set(targets))
    if unknown:
        raise ValueError(f"no parameter or buffer named {unknown} in {type(obj).__name__}")
    with torch.no_grad():
        for name, value in state.items():
            targets[name].copy_(value)


# ---- the active backend --------------------------------------------------------------------------

_active: list[Backend] = [InProcess()]


def backend() -> Backend:
    """The backend checks use now (InProcess unless a grader selected another with `using`)."""
    return _active[-1]


@contextlib.contextmanager
def using(b: Backend) -> Iterator[Backend]:
    """Run checks against `b` (the grader's remote backend) inside this block."""
    _active.append(b)
    try:
        yield b
    finally:
        _active.pop()
