"""The grader's backend of the learner boundary: each operation is a request to the sandboxed worker.

A check holds `Ref`s and calls `learner.backend()`; in a notebook that is the
in-process backend, in the grader's check process it is `Remote`, selected with
`learner.using(...)`. Every method sends the operation over the worker's channel
(`gptlib.course.wire`) with the check's grad mode, and turns the answer back into
the boundary's types (`Call`, `Grads`, `Sub`, `Crash`), checking the type of
every field: nothing the worker sends is executed or unpickled, and a malformed
answer is the worker's failure, never a crash of the check.

Besides the boundary's `Crash` (the learner's code raised), a request ends with
`learner.LearnerTimeout` when the exercise's deadline passes, `WorkerGone` (a
`LearnerLost`) when the worker's channel closes, and `WorkerGarbage` (also a
`LearnerLost`) when the worker refuses a request or answers with something
that is not an answer. The grader tells these apart for the teacher.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

import torch

from gptlib.checks import learner
from gptlib.checks.learner import Backward, Call, Crash, Frame, Grads, Info, Ref, Spec, Sub
from gptlib.config import GPTConfig
from gptlib.course import wire


class WorkerGone(learner.LearnerLost):
    """The worker's channel closed: it ended (its own code, a limit, or something outside)."""


class WorkerGarbage(learner.LearnerLost):
    """The worker refused a request or sent something that is not an answer."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise WorkerGarbage(f"the worker's answer is not valid: {what}")


def _is_tensor_or_none(v: Any) -> bool:
    return v is None or type(v) is torch.Tensor


class Remote(learner.Backend):
    """The learner's objects live in the worker at the other end of `fd`; requests must be answered by
    `deadline` (time.monotonic())."""

    def __init__(self, fd: int, deadline: float):
        os.set_blocking(fd, False)
        self.fd, self.deadline = fd, deadline
        self.hello: dict | None = None
        self._origins: dict[int, int] = {}  # id(a tensor that came back) -> the worker's origin token
        self.last_crash: Crash | None = (
            None  # what the learner's code raised last (the grader's honest words)
        )

    # -- the channel --

    def _note_origin(self, t: torch.Tensor, token: int) -> None:
        self._origins[id(t)] = token
        weakref.finalize(t, self._origins.pop, id(t), None)

    @contextlib.contextmanager
    def _channel(self, sending: bool = False) -> Iterator[None]:
        """The channel's failures as the boundary's: a timeout, a worker gone, data that is not plain."""
        try:
            yield
        except wire.ChannelTimeout:
            raise learner.LearnerTimeout("the learner's code did not answer in time") from None
        except wire.ChannelClosed:
            raise WorkerGone("the worker process ended") from None
        except wire.WireError as e:
            if sending:
                raise TypeError(f"the check sent something that is not plain data: {e}") from None
            raise WorkerGarbage(f"the worker sent malformed data: {e}") from None

    def _receive(self) -> Any:
        with self._channel():
            return wire.receive(self.fd, self.deadline, self._note_origin)

    def start(self) -> dict:
        """The worker's greeting, sent once its sandbox is set up."""
        hello = self._receive()
        if type(hello) is not dict or hello.get("ready") is not True:
            why = hello.get("setup_failed") if type(hello) is dict else None
            raise WorkerGarbage(
                f"the worker could not be set up: {why!s:.300}" if why else "the worker did not start"
            )
        self.hello = hello
        return hello

    def request(self, op: str, *args: Any) -> Any:
        """One operation, answered: its result (plain data and Refs). Raises Crash, LearnerTimeout, WorkerGone,
        WorkerGarbage. The worker runs it with this process's grad mode; its RNG stream is its own."""
        if time.monotonic() >= self.deadline:
            raise learner.LearnerTimeout("the learner's code ran out of time")
        msg = {"op": op, "args": [_outgoing(a) for a in args], "grad": torch.is_grad_enabled()}
        with self._channel(sending=True):
            wire.send(self.fd, msg, deadline=self.deadline)
        reply = self._receive()
        _check(type(reply) is dict, "not a dict")
        if "refused" in reply:
            raise WorkerGarbage(f"the worker refused {op}: {reply['refused']!s:.300}")
        if "crash" in reply:
            raise _crash(reply["crash"])
        _check("ok" in reply, "no result")
        return reply["ok"]

    # -- the boundary's operations --

    def adopt(self, obj: Any) -> Ref:
        if type(obj) is Ref:
            return obj
        raise TypeError(f"the grader's backend takes Refs from its worker, not {type(obj).__name__} objects")

    def load(self, cells: dict, segments: list, future: bool, names: list[str]) -> dict[str, Ref]:
        """Define the learner's names in the worker: a Ref for each one it defines."""
        found = self.request("load", cells, segments, future, names)
        _check(
            type(found) is dict and all(type(k) is str and type(v) is Ref for k, v in found.items()), "load"
        )
        return found

    def call(
        self,
        fn: Ref,
        args: tuple = (),
        kwargs: dict | None = None,
        backward: Backward | None = None,
        watch: tuple[str, ...] = (),
    ) -> Call:
        out = self.request("call", fn, tuple(args), dict(kwargs or {}), backward, tuple(watch))
        return _call(out)

    def attribute(self, obj: Ref, name: str) -> Any:
        return self.request("attribute", obj, name)

    def modules(self, obj: Ref) -> list[Sub]:
        out = self.request("modules", obj)
        _check(type(out) is list, "modules")
        return [_sub(s) for s in out]

    def parameters(self, obj: Ref, grads: bool = False) -> dict[str, torch.Tensor | None]:
        out = self.request("parameters", obj, grads)
        _check(
            type(out) is dict and all(type(k) is str and _is_tensor_or_none(v) for k, v in out.items()),
            "parameters",
        )
        return out

    def buffers(self, obj: Ref) -> dict[str, torch.Tensor]:
        out = self.request("buffers", obj)
        _check(
            type(out) is dict and all(type(k) is str and type(v) is torch.Tensor for k, v in out.items()),
            "buffers",
        )
        return out

    def set_parameters(self, obj: Ref, values: dict[str, torch.Tensor]) -> None:
        self.request("set_parameters", obj, dict(values))

    def train(self, obj: Ref, mode: bool) -> None:
        self.request("train", obj, mode)

    def build(self, spec: Spec) -> Ref:
        out = self.request("build", spec)
        _check(type(out) is Ref, "build")
        return out

    def fetch(self, obj: Ref) -> Any:
        return self.request("fetch", obj)

    def parameter_name(self, module: Ref, value: torch.Tensor) -> str | None:
        token = self._origins.get(id(value))
        if token is None:
            return None
        out = self.request("parameter_with_origin", module, token)
        _check(out is None or type(out) is str, "parameter name")
        return out

    def seed(self, seed: int) -> None:
        self.request("seed", seed)

    def forget(self) -> None:
        try:
            self.request("forget")
        except (learner.LearnerLost, Crash):
            pass  # the check is over; a worker that cannot forget is ended by the grader anyway


def _outgoing(value: Any) -> Any:
    """An argument as the wire carries it: a Backward as its fields, a GPTConfig as its `config_spec` (the
    engine converts configs too; a check that calls the backend some other way still works)."""
    t = type(value)
    if t is Backward:
        return {
            "$backward": True,
            "wrt": tuple(value.wrt),
            "output": value.output,
            "cotangent": value.cotangent,
        }
    if t is GPTConfig:
        return learner.config_spec(value)
    if t in (list, tuple):
        return t(_outgoing(v) for v in value)
    if t is dict:
        return {k: _outgoing(v) for k, v in value.items()}
    return value


def _crash(fields: Any) -> Crash:
    _check(type(fields) is list and len(fields) == 4, "crash")
    types, message, frames, stage = fields
    _check(type(types) is tuple and len(types) > 0 and all(type(t) is str for t in types), "crash types")
    _check(type(message) is str and type(stage) is str and type(frames) is list, "crash fields")
    out = []
    for f in frames[-20:]:
        _check(type(f) is list and len(f) == 4, "frame")
        place, line, function, code = f
        _check(
            type(place) is str and type(line) is int and type(function) is str and type(code) is str, "frame"
        )
        out.append(Frame(place[:200], line, function[:200], code[:300]))
    return Crash(tuple(t[:200] for t in types[:50]), message[: learner.MAX_TEXT], tuple(out), stage[:40])


def _call(out: Any) -> Call:
    _check(type(out) is dict and set(out) == {"value", "changed", "grads", "trace"}, "call")
    changed = out["changed"]
    _check(type(changed) is tuple and all(type(c) in (int, str) for c in changed), "changed")
    trace = out["trace"]
    _check(
        type(trace) is tuple and all(type(t) is tuple and len(t) == 3 and type(t[0]) is str for t in trace),
        "trace",
    )
    grads = out["grads"]
    if grads is not None:
        _check(type(grads) is dict and set(grads) == {"inputs", "params", "connected"}, "grads")
        inputs, params, connected = grads["inputs"], grads["params"], grads["connected"]
        _check(
            type(inputs) is dict and all(type(k) is int and _is_tensor_or_none(v) for k, v in inputs.items()),
            "grads",
        )
        _check(
            type(params) is dict and all(type(k) is str and _is_tensor_or_none(v) for k, v in params.items()),
            "grads",
        )
        _check(type(connected) is bool, "grads")
        grads = Grads(inputs, params, connected)
    return Call(out["value"], changed, grads, trace)


def _sub(s: Any) -> Sub:
    _check(type(s) is dict and set(s) == {"path", "info", "params", "buffers"}, "sub-module")
    _check(type(s["path"]) is str and type(s["info"]) is Info, "sub-module")
    params, buffers = s["params"], s["buffers"]
    _check(
        type(params) is dict and all(type(k) is str and type(v) is str for k, v in params.items()),
        "sub-module",
    )
    _check(type(buffers) is tuple and all(type(b) is str for b in buffers), "sub-module")
    return Sub(s["path"], s["info"], params, buffers)
