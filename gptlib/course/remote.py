"""The remote side of the learner boundary: a check's requests to the sandboxed worker, and its answers.

When a notebook runs a check, the learner's objects live in the same process
and the check calls them directly (the in-process backend). When the grader
runs a check, the learner's code lives in a worker process in the sandbox
(`gptlib.course.worker`), and the check holds `Handle`s: every operation on one
is a request over the worker's channel, and what comes back is plain data
(`gptlib.course.wire`): numbers, strings, tensors the trusted process makes
itself, and further handles. Nothing the worker sends is ever executed or
unpickled here.

How a request can end, besides an answer:

- `LearnerError`: the learner's code raised (the worker sends the exception's
  type name, the builtin classes it derives from, its message and the
  learner's lines; never the exception object);
- `LearnerTimeout`: no answer before the exercise's deadline;
- `WorkerGone`: the worker's channel closed (it died: its code ended the process,
  a limit killed it, or something outside did; the grader tells which);
- `WorkerRefused`: the worker refused a request or sent something that is not a
  well-formed answer.
"""

from __future__ import annotations

import time
from typing import Any

from gptlib.course import wire


class BoundaryError(Exception):
    """A learner object could not be used as asked."""


class LearnerError(BoundaryError):
    """The learner's code raised. `type_name`: its exception's type; `builtin`: the builtin exception classes it
    derives from (e.g. ["NotImplementedError", "RuntimeError", ...]); `frames`: [(cell, line, code)] of the
    learner's own code, innermost last."""

    def __init__(self, type_name: str, builtin: list[str], message: str, frames: list):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name, self.builtin, self.message, self.frames = type_name, builtin, message, frames

    def is_a(self, name: str) -> bool:
        """Whether the learner's exception is an instance of the builtin exception class `name`."""
        return name in self.builtin

    def where(self) -> str:
        """' (at `code`, line N of your cell M)' for the innermost learner frame, or ''."""
        if not self.frames:
            return ""
        cell, line, code = self.frames[-1]
        return f" (at `{code}`, line {line} of cell {cell})" if code else f" (line {line} of cell {cell})"

    @classmethod
    def from_reply(cls, err: dict) -> LearnerError:
        def text(v: object, n: int) -> str:
            return v[:n] if type(v) is str else ""

        builtin = [b for b in err.get("builtin", []) if type(b) is str][:20]
        frames = [
            (f[0], f[1], text(f[2], 300))
            for f in err.get("frames", [])
            if type(f) is list and len(f) == 3 and type(f[0]) is int and type(f[1]) is int
        ][-5:]
        return cls(text(err.get("type"), 200) or "Exception", builtin, text(err.get("message"), 2000), frames)


class LearnerTimeout(BoundaryError):
    """The learner's code did not answer before the deadline."""


class WorkerGone(BoundaryError):
    """The worker process is gone (its channel closed)."""


class WorkerRefused(BoundaryError):
    """The worker refused a request, or answered with something that is not an answer."""


class Remote:
    """One worker's channel, with the exercise's deadline (time.monotonic())."""

    def __init__(self, fd: int, deadline: float):
        import os

        os.set_blocking(fd, False)
        self.fd, self.deadline = fd, deadline
        self.hello: dict | None = None

    def _receive(self) -> Any:
        try:
            return wire.receive(self.fd, self.deadline)
        except wire.ChannelTimeout:
            raise LearnerTimeout("no answer from the learner's code in time") from None
        except wire.ChannelClosed:
            raise WorkerGone("the worker process ended") from None
        except wire.WireError as e:
            raise WorkerRefused(f"the worker sent malformed data: {e}") from None

    def start(self) -> dict:
        """The worker's greeting, sent once its sandbox is set up."""
        hello = self._receive()
        if type(hello) is not dict or hello.get("ready") is not True:
            why = hello.get("setup_failed") if type(hello) is dict else None
            raise WorkerRefused(
                f"the worker could not be set up: {why}" if why else "the worker did not start"
            )
        self.hello = hello
        return hello

    def request(self, op: str, **fields: Any) -> Any:
        """Send one request, return what the worker answered (plain data and `wire.Ref`s)."""
        try:
            wire.send(self.fd, {"op": op, **fields}, deadline=self.deadline)
        except wire.ChannelTimeout:
            raise LearnerTimeout("the learner's code did not take the request in time") from None
        except wire.ChannelClosed:
            raise WorkerGone("the worker process ended") from None
        reply = self._receive()
        if type(reply) is not dict or len(reply) != 1 or not ({"ok", "error"} & set(reply)):
            raise WorkerRefused("the worker's answer is not an answer")
        if "ok" in reply:
            return reply["ok"]
        err = reply["error"]
        if type(err) is not dict:
            raise WorkerRefused("the worker's error is not an error")
        if err.get("refused"):
            raise WorkerRefused(f"the worker refused: {err.get('message')!s:.300}")
        raise LearnerError.from_reply(err)

    def load(self, cells: dict, segments: list, future: bool, names: list[str]) -> dict[str, Handle]:
        """Define the learner's names in the worker; their handles (plain values are wrapped too)."""
        found = self.request("load", cells=cells, segments=segments, future=future, names=names)
        if type(found) is not dict:
            raise WorkerRefused("the worker's answer to load is not a dict")
        return {n: self.wrap(v) for n, v in found.items() if type(n) is str}

    def wrap(self, value: Any) -> Any:
        """Refs in a value become Handles."""
        t = type(value)
        if t is wire.Ref:
            return Handle(self, value)
        if t is list or t is tuple:
            return t(self.wrap(v) for v in value)
        if t is dict:
            return {k: self.wrap(v) for k, v in value.items()}
        return value


def _unwrap(value: Any) -> Any:
    t = type(value)
    if t is Handle:
        return value.ref
    if t is list or t is tuple:
        return t(_unwrap(v) for v in value)
    if t is dict:
        return {k: _unwrap(v) for k, v in value.items()}
    return value


class Handle:
    """A learner object, as a check holds it while grading: every operation is a request to the worker."""

    def __init__(self, remote: Remote, ref: wire.Ref):
        self.remote, self.ref = remote, ref

    def __repr__(self) -> str:
        return f"<learner {self.type_name} #{self.ref.id}>"

    @property
    def info(self) -> dict:
        return self.ref.info

    @property
    def type_name(self) -> str:
        return self.ref.type_name

    def _ask(self, op: str, seed: int | None = None, grad: bool | None = None, **fields: Any) -> Any:
        extra = {k: v for k, v in (("seed", seed), ("grad", grad)) if v is not None}
        return self.remote.wrap(self.remote.request(op, target=self.ref, **_unwrap(fields), **extra))

    def call(self, *args: Any, seed: int | None = None, grad: bool | None = None, **kwargs: Any) -> Any:
        return self._ask("call", seed, grad, args=list(args), kwargs=kwargs)["value"]

    def call_returning_args(
        self, *args: Any, seed: int | None = None, grad: bool | None = None, **kwargs: Any
    ):
        """(result, the arguments as they are after the call): did the call change its inputs in place?"""
        out = self._ask("call", seed, grad, args=list(args), kwargs=kwargs, return_args=True)
        return out["value"], out["args"]

    def method(
        self, name: str, *args: Any, seed: int | None = None, grad: bool | None = None, **kwargs: Any
    ) -> Any:
        return self._ask("method", seed, grad, name=name, args=list(args), kwargs=kwargs)["value"]

    def get(self, name: str) -> Any:
        return self._ask("getattr", name=name)

    def set(self, name: str, value: Any) -> None:
        self._ask("setattr", name=name, value=value)

    def describe(self) -> dict:
        return self._ask("describe")

    def parameters(self, buffers: bool = False) -> dict[str, Any]:
        return dict(tuple(p) for p in self._ask("parameters", buffers=buffers))

    def set_parameters(self, values: dict, buffers: bool = False) -> dict:
        return self._ask("set_parameters", values=values, buffers=buffers)

    def modules(self) -> list:
        return self._ask("modules")

    def submodule(self, path: str) -> Handle:
        return self._ask("submodule", path=path)

    def train(self, mode: bool = True) -> None:
        self._ask("mode", train=mode)

    def backward(
        self, args: list, grad_output: Any, inputs: list[int], seed: int | None = None, **kwargs: Any
    ) -> dict:
        return self._ask("backward", seed, args=args, kwargs=kwargs, grad_output=grad_output, inputs=inputs)

    def capture(self, args: list, paths: list[str], seed: int | None = None, **kwargs: Any) -> dict:
        return self._ask("capture", seed, args=args, kwargs=kwargs, paths=paths)

    def release(self) -> None:
        self.remote.request("release", refs=[self.ref])


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds
