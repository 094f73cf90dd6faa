"""The worker: the one process that runs a student's code. It answers the trusted check with plain data.

It runs inside the sandbox (`gptlib.course.confine` sets it up) and holds no
check, no reference implementation, no verdict and no key: only torch, the
parts of gptlib the lesson may use, the learner boundary's in-process backend
(`gptlib.checks.learner.InProcess`, which keeps the student's objects in a table
and makes every value plain data) and the student's definitions. The trusted
check (`gptlib.course.remote`) sends the boundary's operations over one socket
(`gptlib.course.wire`); the worker runs them on its `InProcess` backend and
answers. What the worker says is never trusted: a worker that lies can only lose
its own student's points.

A request is a dict: {"op": name, "args": [...], "grad": the check's grad
mode}; the op is one of the `Backend` methods (call, attribute,
modules, parameters, buffers, set_parameters, train, build, fetch,
parameter_with_origin, seed, forget) or "load" (define the student's names: cells,
the statements to run, the names to hand back as Refs). The answer:
{"ok": result}, {"crash": the Crash's fields}, or
{"refused": why} for a request the worker cannot carry out.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import dataclasses
import linecache
import os
import sys
import types
from typing import Any

import torch

from gptlib.checks import learner
from gptlib.course import wire

LEARNER_FILE = "<cell "  # the student's code is compiled under "<cell N>"

with contextlib.suppress(ImportError):  # a lesson's own trusted objects (fixtures, no answers), if any
    import gptlib.checks.builders  # noqa: F401


def load(cells: dict, segments: list, future: bool) -> dict:
    """Run the chosen top-level statements (cell, statement index, which aliases of an import to keep) in a
    module of their own, "submission", each compiled under "<cell N>" so tracebacks name the student's cell."""
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
            kept = type(stmt)(
                **{**{f: getattr(stmt, f) for f in stmt._fields}, "names": [stmt.names[i] for i in keep]}
            )
            stmt = ast.copy_location(kept, stmt)
        code = compile(
            ast.Module(body=[stmt], type_ignores=[]), f"{LEARNER_FILE}{cell + 1}>", "exec", flags, True
        )
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            with contextlib.suppress(Exception):  # a constant that fails stays undefined, as its name says
                exec(code, ns)
        else:
            exec(code, ns)
    return ns


def _to_wire(value: Any) -> Any:
    """The boundary's result types as plain data (Refs, tensors and plain values go as they are)."""
    if isinstance(value, learner.Call | learner.Grads | learner.Sub):
        return {f.name: _to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if type(value) in (list, tuple):
        return type(value)(_to_wire(v) for v in value)
    return value


class Worker:
    """The student's objects (in an InProcess backend) and the requests it answers."""

    def __init__(self) -> None:
        self.backend = learner.InProcess()
        self.encoder = wire.Encoder(other=self.backend.adopt, origin=self.backend.origin_of)

    def _args(self, value: Any) -> Any:
        """Arguments as the backend takes them: Backward, made again from its plain fields."""
        if type(value) is dict and value.get("$backward") is True:
            return learner.Backward(tuple(value["wrt"]), value["output"], value["cotangent"])
        return value

    def answer(self, req: object) -> dict:
        op = req.get("op") if type(req) is dict else None
        args = req.get("args", []) if type(req) is dict else None
        if type(op) is not str or type(args) is not list:
            return {"refused": f"not a request: {req!r:.100}"}
        try:
            grad = req.get("grad")
            with torch.set_grad_enabled(grad) if type(grad) is bool else contextlib.nullcontext():
                result = self._run(op, [self._args(a) for a in args])
        except learner.Crash as crash:
            fields = [
                crash.types,
                crash.message,
                [list(dataclasses.astuple(f)) for f in crash.frames],
                crash.stage,
            ]
            return {"crash": fields}
        except (TypeError, ValueError, KeyError) as e:  # a request the backend cannot carry out
            return {"refused": f"{type(e).__name__}: {e}"[:1000]}
        except BaseException as e:  # SystemExit, KeyboardInterrupt, ... raised by the student's code
            return {"crash": _crash_fields(e)}
        return {"ok": _to_wire(result)}

    def _run(self, op: str, args: list) -> Any:
        if op == "load":
            cells, segments, future, names = args
            try:
                ns = load(cells, segments, future)
            except Exception as e:
                raise learner.crash_of(e, "load") from None
            return {n: self.backend.adopt(ns[n]) for n in names if n in ns}
        if op not in _OPS:
            raise ValueError(f"no operation {op!r}")
        return getattr(self.backend, op)(*args)


_OPS = frozenset(
    {"call", "attribute", "modules", "parameters", "buffers", "set_parameters", "train", "build", "fetch",
     "parameter_with_origin", "seed", "forget"}
)  # fmt: skip


def _crash_fields(e: BaseException) -> list:
    crash = learner.crash_of(e, "call")
    return [crash.types, crash.message, [list(dataclasses.astuple(f)) for f in crash.frames], crash.stage]


def serve(channel: int, notes: dict) -> None:
    """Answer requests on `channel` until it closes."""
    worker = Worker()
    wire.send(channel, {"ready": True, **notes})
    while True:
        try:
            req = wire.receive(channel)
        except (wire.ChannelClosed, wire.WireError, OSError):
            os._exit(0)
        reply = worker.answer(req)
        try:
            wire.send(channel, reply, worker.encoder)
        except wire.WireError as e:
            wire.send(channel, {"refused": f"the answer could not be sent: {e}"})
        except (wire.ChannelClosed, OSError):
            os._exit(0)
