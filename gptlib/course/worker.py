"""The worker: the one process that runs a student's code, answering the trusted check with plain data.

It runs inside the sandbox (`gptlib.course.confine` sets it up) and holds no
check code, no reference implementation, no verdict and no key: only torch, the
parts of gptlib the lesson may use, and the student's definitions. The trusted
check (`gptlib.course.remote`) sends requests over one socket (`gptlib.course.wire`);
each request runs some of the student's code and the answer is plain data:
values, or `Ref`s to objects that stay here (a class, a module the student's
code built) in a table of handles. A request the worker cannot honour, or code
that raises, gives an error answer with the exception's type name, message and
the student's line. What the worker says is never trusted: a worker that lies
can only lose its own student's points.

Requests: {"op": ..., fields}, answered {"ok": value} or {"error": {...}}.

    load        cells, segments, future: define the student's names; their values
    call        target, args, kwargs[, return_args]: target(*args, **kwargs)
    method      target, name, args, kwargs[, return_args]: target.name(*args, **kwargs)
    getattr     target, name                  setattr  target, name, value
    describe    target: type, kind, name, short repr
    parameters  target[, buffers]: [(name, tensor)]
    set_parameters  target, values[, buffers]: copy tensors in by name
    modules     target: [(path, type, module, own parameter names, written by the student)]
    submodule   target, path              mode  target, train
    backward    target, args, kwargs, grad_output, inputs: output, gradients of inputs and parameters
    capture     target, args, kwargs, paths: output, and each sub-module's inputs and output
    build       spec: a trusted object built from an allow-listed constructor
    release     refs

Every request may carry "seed" (torch.manual_seed before it runs) and "grad"
(True/False: autograd on or off while it runs).
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import importlib
import linecache
import os
import sys
import traceback
import types
from typing import Any

import torch

from gptlib.course import wire

LEARNER_FILE = "<cell "  # the student's code is compiled under "<cell N>"
MAX_TEXT = 2000  # characters of a message kept in an answer
MAX_REFS = 10000


class Refused(Exception):
    """A request the worker will not carry out (not the student's code failing)."""


class Table:
    """Objects that stay in the worker, by id; the trusted side holds only the ids."""

    def __init__(self) -> None:
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> ref id, so one object keeps one id
        self.encoder = wire.Encoder(other=self.stand_in)

    def stand_in(self, obj: object) -> wire.Ref | wire.Opaque:
        known = self.ids.get(id(obj))
        if known is not None and self.objects.get(known) is obj:
            return wire.Ref(known, describe(obj))
        if len(self.objects) >= MAX_REFS:
            return wire.Opaque(_type_name(obj), "(too many objects)")
        ref = len(self.objects) + 1
        while ref in self.objects:
            ref += 1
        self.objects[ref], self.ids[id(obj)] = obj, ref
        return wire.Ref(ref, describe(obj))

    def get(self, ref: object) -> object:
        if type(ref) is not wire.Ref or ref.id not in self.objects:
            raise Refused(f"no object {ref!r} in this worker")
        return self.objects[ref.id]

    def resolve(self, value: object) -> Any:
        """Arguments as the student's code receives them: refs become their objects, specs are built."""
        t = type(value)
        if t is wire.Ref:
            return self.get(value)
        if t is wire.Spec:
            return build(self, value)
        if t is list or t is tuple:
            return t(self.resolve(v) for v in value)
        if t is dict:
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def release(self, refs: list) -> None:
        for ref in refs:
            obj = self.objects.pop(getattr(ref, "id", None), None)
            if obj is not None:
                self.ids.pop(id(obj), None)


def _type_name(obj: object) -> str:
    try:
        return str(type(obj).__qualname__)[:200]
    except Exception:
        return "object"


def _short(text: object, n: int = MAX_TEXT) -> str:
    try:
        s = str(text)
    except BaseException:
        return "(a message that could not be printed)"
    return s if len(s) <= n else s[: n - 3] + "..."


def describe(obj: object) -> dict:
    """What the trusted side may know about an object that stays here (the student's code answers some of it)."""
    info: dict[str, Any] = {"type": _type_name(obj)}
    with contextlib.suppress(Exception):
        info["module"] = str(type(obj).__module__)[:200]
    with contextlib.suppress(Exception):
        is_class = isinstance(obj, type)
        info["is_class"] = is_class
        info["is_module"] = isinstance(obj, torch.nn.Module)
        info["module_class"] = is_class and issubclass(obj, torch.nn.Module)
        info["callable"] = callable(obj)
        info["function"] = isinstance(obj, types.FunctionType | types.MethodType | types.BuiltinFunctionType)
        info["tensor"] = isinstance(obj, torch.Tensor)
        own = obj if is_class or info["function"] else type(obj)
        info["learner"] = getattr(own, "__module__", None) == "submission"
    with contextlib.suppress(Exception):
        name = getattr(obj, "__name__", None)
        if type(name) is str:
            info["name"] = name[:200]
    with contextlib.suppress(BaseException):
        info["repr"] = _short(repr(obj), 200)
    return info


def describe_error(e: BaseException) -> dict:
    """An exception raised by the student's code, as words: its type, message and the student's lines."""
    frames = []
    with contextlib.suppress(Exception):
        for fr in traceback.extract_tb(e.__traceback__):
            if fr.filename.startswith(LEARNER_FILE):
                frames.append(
                    [int(fr.filename[len(LEARNER_FILE) : -1]), fr.lineno, (fr.line or "").strip()[:300]]
                )
    builtin = [c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins"]
    return {
        "type": _type_name(e),
        "builtin": builtin,  # the builtin exception classes it is an instance of: NotImplementedError, ...
        "message": _short(e),
        "frames": frames[-5:],
    }


# --- the student's code ----------------------------------------------------------------------------------------


def load(cells: dict, segments: list, future: bool) -> dict:
    """Run the chosen top-level statements (cell, statement index, aliases to keep for an import) in a module
    of their own, "submission", each compiled under "<cell N>" so tracebacks name the student's cell."""
    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    ns = module.__dict__
    trees = {}
    for cell, source in cells.items():
        filename = f"{LEARNER_FILE}{int(cell) + 1}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        trees[int(cell)] = ast.parse(source, filename)
    flags = __future__.annotations.compiler_flag if future else 0
    for cell, index, keep in segments:
        stmt = trees[cell].body[index]
        if keep is not None and isinstance(stmt, ast.Import | ast.ImportFrom):
            names = [stmt.names[i] for i in keep]
            stmt = ast.copy_location(
                type(stmt)(**{**{f: getattr(stmt, f) for f in stmt._fields}, "names": names}), stmt
            )
        code = compile(
            ast.Module(body=[stmt], type_ignores=[]), f"{LEARNER_FILE}{cell + 1}>", "exec", flags, True
        )
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            with contextlib.suppress(Exception):  # a constant that fails stays undefined, as its name says
                exec(code, ns)
        else:
            exec(code, ns)
    return ns


# --- trusted objects built here -----------------------------------------------------------------------------------

_BUILDERS = ("torch.nn.", "torch.optim.", "gptlib.")
_EXACT = frozenset({"torch.Generator", "torch.nn.Module", "torch.nn.Parameter", "torch.tensor"})


def _constructor(path: str) -> Any:
    if path not in _EXACT and not path.startswith(_BUILDERS):
        raise Refused(f"{path} is not a constructor the worker builds")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError as e:
            if cut == 1:
                raise Refused(f"cannot build {path}: {e}") from None
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise Refused(f"cannot build {path}")


def build(table: Table, spec: wire.Spec) -> object:
    if spec.build in ("parameters", "named_parameters"):
        (module,) = table.resolve(spec.args)
        return list(getattr(module, spec.build)())
    obj = _constructor(spec.build)(*table.resolve(spec.args), **table.resolve(spec.kwargs))
    for name, child in spec.children.items():
        setattr(obj, name, table.resolve(child))
    if spec.state is not None:
        obj.load_state_dict(spec.state)
    for name, args in spec.then:
        getattr(obj, name)(*table.resolve(args))
    return obj


# --- requests ------------------------------------------------------------------------------------------------------


def _module(obj: object) -> torch.nn.Module:
    if not isinstance(obj, torch.nn.Module):
        raise Refused(f"a {_type_name(obj)} is not an nn.Module")
    return obj


def _call(table: Table, fn: Any, req: dict) -> dict:
    args = table.resolve(req.get("args", ()))
    kwargs = table.resolve(req.get("kwargs", {}))
    value = fn(*args, **kwargs)
    return {"value": value, "args": list(args)} if req.get("return_args") else {"value": value}


def _set_parameters(module: torch.nn.Module, values: dict, buffers: bool) -> dict:
    own = dict(module.named_parameters())
    if buffers:
        own.update(module.named_buffers())
    missing = sorted(n for n in values if n not in own)
    mismatched = [
        [n, list(v.shape), list(own[n].shape)]
        for n, v in values.items()
        if n in own and own[n].shape != v.shape
    ]
    if not missing and not mismatched:
        with torch.no_grad():
            for n, v in values.items():
                own[n].copy_(v)
    return {"missing": missing, "mismatched": mismatched}


def _backward(table: Table, req: dict) -> dict:
    target = table.get(req["target"])
    args = list(table.resolve(req.get("args", ())))
    kwargs = table.resolve(req.get("kwargs", {}))
    for i in req.get("inputs", ()):
        args[i] = args[i].detach().clone().requires_grad_(True)
    params = list(target.named_parameters()) if isinstance(target, torch.nn.Module) else []
    for _, p in params:
        p.grad = None
    with torch.enable_grad():
        out = target(*args, **kwargs)
        if not wire.plain_tensor(out):
            return {"output": out}
        out.backward(req["grad_output"])
    return {
        "output": out.detach(),
        "input_grads": [args[i].grad for i in req.get("inputs", ())],
        "param_grads": {n: p.grad for n, p in params},
    }


def _capture(table: Table, req: dict) -> dict:
    target = _module(table.get(req["target"]))
    calls: dict[str, list] = {p: [] for p in req["paths"]}

    def record(path: str) -> Any:
        def hook(_mod: object, inputs: tuple, output: object) -> None:
            calls[path].append([_detached(inputs), _detached(output)])

        return hook

    handles = [target.get_submodule(p).register_forward_hook(record(p)) for p in req["paths"]]
    try:
        out = target(*table.resolve(req.get("args", ())), **table.resolve(req.get("kwargs", {})))
    finally:
        for h in handles:
            h.remove()
    return {"output": out, "calls": calls}


def _detached(value: object) -> object:
    if wire.plain_tensor(value):
        return value.detach().clone()
    if type(value) in (list, tuple):
        return type(value)(_detached(v) for v in value)
    return value


_OPS = {
    "call": lambda t, r: _call(t, t.get(r["target"]), r),
    "method": lambda t, r: _call(t, getattr(t.get(r["target"]), r["name"]), r),
    "getattr": lambda t, r: getattr(t.get(r["target"]), r["name"]),
    "setattr": lambda t, r: setattr(t.get(r["target"]), r["name"], t.resolve(r["value"])),
    "describe": lambda t, r: describe(t.get(r["target"])),
    "parameters": lambda t, r: [
        [n, p]
        for n, p in (
            list(_module(t.get(r["target"])).named_parameters())
            + (list(_module(t.get(r["target"])).named_buffers()) if r.get("buffers") else [])
        )
    ],
    "set_parameters": lambda t, r: _set_parameters(
        _module(t.get(r["target"])), r["values"], r.get("buffers", False)
    ),
    "modules": lambda t, r: [
        [
            path,
            _type_name(m),
            str(type(m).__module__),
            [n for n, _ in m.named_parameters(recurse=False)],
            type(m).__module__ == "submission",
        ]
        for path, m in _module(t.get(r["target"])).named_modules()
    ],  # fmt: skip
    "submodule": lambda t, r: _module(t.get(r["target"])).get_submodule(r["path"]),
    "mode": lambda t, r: _module(t.get(r["target"])).train(r["train"]) and None,
    "backward": _backward,
    "capture": _capture,
    "build": lambda t, r: build(t, r["spec"]),
    "release": lambda t, r: t.release(r["refs"]),
    "ping": lambda t, r: "pong",
}


_FIELDS = {  # what each request must carry
    "load": ("cells", "segments"), "call": ("target",), "method": ("target", "name"),
    "getattr": ("target", "name"), "setattr": ("target", "name", "value"), "describe": ("target",),
    "parameters": ("target",), "set_parameters": ("target", "values"), "modules": ("target",),
    "submodule": ("target", "path"), "mode": ("target", "train"),
    "backward": ("target", "grad_output"), "capture": ("target", "paths"), "build": ("spec",),
    "release": ("refs",), "ping": (),
}  # fmt: skip


def answer(table: Table, req: object) -> dict:
    """One request's answer: {"ok": value} or {"error": {...}} (with "refused": True for a bad request)."""
    op = req.get("op") if type(req) is dict else None
    if op not in _FIELDS or any(f not in req for f in _FIELDS[op]):
        return {"error": {"type": "Refused", "message": f"not a request: {req!r:.100}", "refused": True}}
    seed, grad = req.get("seed"), req.get("grad")
    try:
        if type(seed) is int:
            torch.manual_seed(seed)
        with torch.set_grad_enabled(grad) if type(grad) is bool else contextlib.nullcontext():
            if op == "load":
                ns = load(req["cells"], req["segments"], req.get("future", False))
                return {"ok": {n: ns[n] for n in req.get("names", ()) if n in ns}}
            return {"ok": _OPS[op](table, req)}
    except Refused as e:
        return {"error": {"type": "Refused", "message": _short(e), "refused": True}}
    except BaseException as e:  # the student's code raised (SystemExit included): its words, for the check
        return {"error": describe_error(e)}


def serve(channel: int, notes: dict) -> None:
    """Answer requests on `channel` until it closes."""
    table = Table()
    wire.send(channel, {"ready": True, **notes})
    while True:
        try:
            req = wire.receive(channel)
        except (wire.ChannelClosed, wire.WireError, OSError):
            os._exit(0)
        reply = answer(table, req)
        try:
            wire.send(channel, reply, table.encoder)
        except wire.WireError as e:
            value = reply.get("ok")
            why = f"could not be sent: {e}"
            wire.send(channel, {"ok": wire.Opaque(_type_name(value), why)}, table.encoder)
        except (wire.ChannelClosed, OSError):
            os._exit(0)


def serve_plain(channel: int, limits_json: str) -> None:
    """--unsafe: serve without the sandbox, with what limits this system has (rlimits; seccomp on Linux)."""
    import json

    notes = {"unsafe": True}
    try:
        from gptlib.course import confine

        confine.set_limits(json.loads(limits_json))
        notes["seccomp"] = confine.install_seccomp()
    except Exception as e:  # not Linux: fewer limits (see docs/teachers.md, Platforms)
        notes["limits"] = f"{type(e).__name__}: {e}"
    serve(channel, notes)
