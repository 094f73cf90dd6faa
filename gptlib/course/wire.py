"""The grader's wire format: plain data between the trusted check and the sandboxed worker, never pickles.

What crosses is a tree of exact-type values: None, bool, int, float, str,
bytes, list, tuple, dict (keys: hashable plain values), and `torch.Tensor`
(sent as dtype + shape + raw bytes). A `Ref` names an object that stays in the
worker (a learner's class, a module it built): the trusted side only ever sees
its id and a short description the worker wrote. `Opaque` is a value the worker
could not send (a str subclass, a generator): its type name and a short repr.

Encoding is strict about types (`type(x) is int`, not isinstance): a subclass of
int with a lying `__eq__` or a tensor subclass with a lying `__torch_function__`
never becomes a plain value, so the trusted side compares only objects it made
itself. Decoding is strict about everything: lengths are checked against the
bytes actually there before anything is allocated, nesting depth, item count and
message size are capped, and any malformed input is a `WireError`, nothing else.

One frame on a stream: a 4-byte big-endian length, then the encoded value.
"""

from __future__ import annotations

import math
import os
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_MESSAGE = 256 << 20  # bytes in one frame
MAX_DEPTH = 32  # nesting of lists, tuples and dicts
MAX_ITEMS = 1 << 20  # values in one frame
MAX_INT_BYTES = 64  # an int of more than 512 bits is not a plain answer
MAX_DIMS = 16

DTYPES = (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
)  # fmt: skip
_DTYPE_CODE = {d: i for i, d in enumerate(DTYPES)}
_LEN = struct.Struct(">I")
_DIM = struct.Struct(">Q")
_F64 = struct.Struct(">d")


class WireError(ValueError):
    """Bytes that are not a well-formed message, or a value that cannot be sent."""


@dataclass(frozen=True)
class Ref:
    """An object that stays in the worker, by id, with what the worker says about it (untrusted words)."""

    id: int
    info: dict = field(default_factory=dict, compare=False)

    @property
    def type_name(self) -> str:
        name = self.info.get("type")
        return name if isinstance(name, str) else "object"


@dataclass(frozen=True)
class Spec:
    """A trusted object for the worker to build (trusted side to worker only): an allow-listed constructor
    (`build`, e.g. "torch.nn.Linear", "torch.Generator", "gptlib.model.GPT"), its arguments (plain data,
    `Ref`s, other `Spec`s), a state dict to load, children to attach (a container built from parts), and
    methods to call on it afterwards (("manual_seed", (0,)), ("eval", ()))."""

    build: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    state: dict | None = None
    children: dict = field(default_factory=dict)
    then: tuple = ()


@dataclass(frozen=True)
class Opaque:
    """A value the worker could not send as plain data: its type's name and a short repr (untrusted words)."""

    type_name: str
    text: str = ""


def plain_tensor(t: object) -> bool:
    """A tensor the wire can carry: exactly torch.Tensor or nn.Parameter (torch's own), dense, on the CPU."""
    return (
        (type(t) is torch.Tensor or type(t) is torch.nn.Parameter)
        and t.layout == torch.strided
        and t.device.type == "cpu"
        and t.dtype in _DTYPE_CODE
        and not t.is_quantized
    )


# --- encoding ----------------------------------------------------------------------------------------


class Encoder:
    """Turn a value into bytes. `other(obj)` decides what an object that is not plain data becomes: a `Ref`
    or an `Opaque` (the worker's handle table), or None to refuse it with a WireError."""

    def __init__(self, other: Any = None, max_message: int = MAX_MESSAGE):
        self.other = other
        self.max_message = max_message

    def encode(self, value: object) -> bytes:
        out: list[bytes] = []
        self._size, self._items = 0, 0
        self._value(value, out, 0)
        return b"".join(out)

    def _put(self, out: list[bytes], data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_message:
            raise WireError(f"the value is larger than {self.max_message >> 20} MB")
        out.append(data)

    def _value(self, v: object, out: list[bytes], depth: int) -> None:
        self._items += 1
        if self._items > MAX_ITEMS:
            raise WireError(f"the value holds more than {MAX_ITEMS} items")
        if depth > MAX_DEPTH:
            raise WireError(f"the value is nested more than {MAX_DEPTH} deep")
        t = type(v)
        if v is None:
            self._put(out, b"N")
        elif v is True or v is False:
            self._put(out, b"T" if v else b"F")
        elif t is int:
            n = (v.bit_length() + 8) // 8
            if n > MAX_INT_BYTES:
                raise WireError(f"an int of {v.bit_length()} bits is too large")
            self._put(out, b"i" + bytes([n]) + v.to_bytes(n, "big", signed=True))
        elif t is float:
            self._put(out, b"f" + _F64.pack(v))
        elif t is str:
            data = v.encode("utf-8", "surrogatepass")
            self._put(out, b"s" + _LEN.pack(len(data)))
            self._put(out, data)
        elif t is bytes:
            self._put(out, b"b" + _LEN.pack(len(v)))
            self._put(out, v)
        elif t is list or t is tuple:
            self._put(out, (b"l" if t is list else b"t") + _LEN.pack(len(v)))
            for item in list(v):
                self._value(item, out, depth + 1)
        elif t is dict:
            items = list(v.items())
            self._put(out, b"d" + _LEN.pack(len(items)))
            for key, item in items:
                if not _hashable_plain(key):
                    raise WireError(f"a dict key of type {type(key).__name__} is not plain data")
                self._value(key, out, depth + 1)
                self._value(item, out, depth + 1)
        elif plain_tensor(v):
            self._tensor(v, out)
        elif t is Ref:
            self._put(out, b"R" + _LEN.pack(v.id))
            self._value(dict(v.info), out, depth + 1)
        elif t is Spec:
            self._put(out, b"S")
            self._value(
                {"build": v.build, "args": tuple(v.args), "kwargs": dict(v.kwargs), "state": v.state,
                 "children": dict(v.children), "then": tuple(v.then)},
                out, depth + 1,
            )  # fmt: skip
        elif t is Opaque:
            self._put(out, b"O")
            self._value(v.type_name, out, depth + 1)
            self._value(v.text, out, depth + 1)
        else:
            stand_in = self.other(v) if self.other is not None else None
            if type(stand_in) not in (Ref, Opaque):
                raise WireError(f"a {type(v).__name__} is not plain data")
            self._value(stand_in, out, depth)

    def _tensor(self, t: torch.Tensor, out: list[bytes]) -> None:
        data = t.detach()
        if data.dim() > MAX_DIMS:
            raise WireError(f"a tensor of {data.dim()} dimensions is too many")
        flags = int(bool(t.requires_grad))
        head = b"X" + bytes([_DTYPE_CODE[data.dtype], data.dim(), flags])
        head += b"".join(_DIM.pack(s) for s in data.shape)
        raw = _tensor_bytes(data)
        self._put(out, head + _DIM.pack(len(raw)))
        self._put(out, raw)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.resolve_conj().resolve_neg().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _hashable_plain(key: object) -> bool:
    t = type(key)
    if key is None or t in (bool, int, float, str, bytes):
        return True
    return t is tuple and all(_hashable_plain(k) for k in key)


# --- decoding ----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0
        self.items = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError("the message ends early (a length that is not there)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def length(self) -> int:
        return _LEN.unpack(self.take(4))[0]


def decode(data: bytes) -> Any:
    """The value in `data` (one encoded value, nothing after it). Raises WireError, never anything else."""
    reader = _Reader(data)
    try:
        value = _read(reader, 0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RuntimeError, MemoryError, struct.error) as e:
        raise WireError(f"malformed message ({type(e).__name__})") from None
    if reader.pos != len(reader.data):
        raise WireError("extra bytes after the value")
    return value


def _read(r: _Reader, depth: int) -> Any:
    r.items += 1
    if r.items > MAX_ITEMS:
        raise WireError(f"more than {MAX_ITEMS} items")
    if depth > MAX_DEPTH + 1:
        raise WireError(f"nested more than {MAX_DEPTH} deep")
    tag = bytes(r.take(1))
    if tag == b"N":
        return None
    if tag in (b"T", b"F"):
        return tag == b"T"
    if tag == b"i":
        n = r.take(1)[0]
        if not 1 <= n <= MAX_INT_BYTES:
            raise WireError("an int of a bad size")
        return int.from_bytes(r.take(n), "big", signed=True)
    if tag == b"f":
        return _F64.unpack(r.take(8))[0]
    if tag == b"s":
        raw = bytes(r.take(r.length()))
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise WireError("a string that is not UTF-8") from None
    if tag == b"b":
        return bytes(r.take(r.length()))
    if tag in (b"l", b"t"):
        n = r.length()
        if n > len(r.data) - r.pos:  # every item takes at least one byte
            raise WireError("a list longer than the message")
        items = [_read(r, depth + 1) for _ in range(n)]
        return items if tag == b"l" else tuple(items)
    if tag == b"d":
        n = r.length()
        if 2 * n > len(r.data) - r.pos:
            raise WireError("a dict longer than the message")
        out = {}
        for _ in range(n):
            key = _read(r, depth + 1)
            if not _hashable_plain(key):
                raise WireError("a dict key that is not a plain value")
            out[key] = _read(r, depth + 1)
        return out
    if tag == b"X":
        return _read_tensor(r)
    if tag == b"R":
        ident = r.length()
        info = _read(r, depth + 1)
        if type(info) is not dict:
            raise WireError("a reference without its description")
        return Ref(ident, info)
    if tag == b"S":
        fields = _read(r, depth + 1)
        if type(fields) is not dict or set(fields) != set(Spec.__dataclass_fields__):
            raise WireError("a spec that is not valid")
        return _spec(fields)
    if tag == b"O":
        name, text = _read(r, depth + 1), _read(r, depth + 1)
        if type(name) is not str or type(text) is not str:
            raise WireError("an opaque value without its description")
        return Opaque(name[:200], text[:500])
    raise WireError(f"unknown tag {tag!r}")


def _spec(f: dict) -> Spec:
    ok = (
        type(f["build"]) is str and type(f["args"]) is tuple and type(f["kwargs"]) is dict
        and (f["state"] is None or type(f["state"]) is dict) and type(f["children"]) is dict
        and type(f["then"]) is tuple
    )  # fmt: skip
    if not ok:
        raise WireError("a spec with fields of the wrong type")
    return Spec(**f)


def _read_tensor(r: _Reader) -> torch.Tensor:
    code, ndim, flags = r.take(3)
    if code >= len(DTYPES) or ndim > MAX_DIMS or flags > 1:
        raise WireError("a tensor header that is not valid")
    dtype = DTYPES[code]
    shape = [_DIM.unpack(r.take(8))[0] for _ in range(ndim)]
    nbytes = _DIM.unpack(r.take(8))[0]
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = math.prod(shape)
    if numel * itemsize != nbytes:
        raise WireError("a tensor whose bytes do not match its shape")
    raw = r.take(nbytes)  # checked against the message before anything is allocated
    if nbytes == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
    if flags and (t.is_floating_point() or t.is_complex()):
        t.requires_grad_(True)
    return t


# --- frames on a file descriptor -----------------------------------------------------------------------


class ChannelClosed(EOFError):
    """The other end closed the channel (or died)."""


class ChannelTimeout(TimeoutError):
    """No complete frame arrived before the deadline."""


def _wait(fd: int, write: bool, deadline: float | None) -> None:
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        raise ChannelTimeout("no answer in time")
    ready = select.select([] if write else [fd], [fd] if write else [], [], left)
    if not (ready[0] or ready[1]):
        raise ChannelTimeout("no answer in time")


def send(fd: int, value: object, encoder: Encoder | None = None, deadline: float | None = None) -> None:
    """Write one frame; ChannelTimeout if the other end does not take it before `deadline`."""
    body = (encoder or Encoder()).encode(value)
    data = memoryview(_LEN.pack(len(body)) + body)
    while data:
        _wait(fd, True, deadline)
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:  # a non-blocking descriptor that filled up: wait again
            continue
        except (BrokenPipeError, ConnectionResetError):
            raise ChannelClosed("the other end is gone") from None


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        _wait(fd, False, deadline)
        try:
            chunk = os.read(fd, min(n - got, 1 << 20))
        except BlockingIOError:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ChannelClosed("the other end closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None, max_message: int = MAX_MESSAGE) -> Any:
    """Read one frame and decode it; ChannelTimeout after `deadline` (time.monotonic()), ChannelClosed at
    end of stream, WireError for anything malformed or too large."""
    (size,) = _LEN.unpack(_read_exact(fd, 4, deadline))
    if size > max_message:
        raise WireError(f"a message of {size} bytes is larger than the limit")
    return decode(_read_exact(fd, size, deadline))
