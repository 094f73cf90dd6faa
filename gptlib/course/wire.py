"""The grader's wire format: plain data between the trusted check and the sandboxed worker, never pickles.

What crosses is what the learner boundary calls plain data (`gptlib.checks.learner`),
by exact type: None, bool, int, float, complex, str, bytes; `torch.Tensor` (dtype,
shape, raw bytes, the requires_grad flag, and the origin token of a copied
parameter); numeric numpy arrays (dtype, shape, bytes); list, tuple, dict, set,
frozenset of those; the boundary's `Ref` (an id and its `Info`, all plain) and `Info` and
`Spec` (a trusted object for the worker to build).

Encoding is strict about types (`type(x) is int`, never isinstance): an int
subclass with a lying `__eq__` or a tensor subclass with a lying
`__torch_function__` is not plain data, so it can only cross as a `Ref` (the
worker's encoder is given a hook that makes one). Decoding is strict about
everything: each length is checked against the bytes actually there before
anything is allocated; nesting depth, item count and message size are capped;
every `Info` field has its type checked; anything malformed is a `WireError`,
nothing else. Decoding builds only values of the types above.

One frame on a stream: a 4-byte big-endian length, then one encoded value.
"""

from __future__ import annotations

import math
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gptlib.checks.learner import Info, Ref, Spec

MAX_MESSAGE = 300 << 20  # bytes in one frame (a learner's tensor may be 256 MB)
MAX_DEPTH = 40  # nesting of containers (plain data: 32, plus the answer's own wrapping)
MAX_ITEMS = 1 << 20  # values in one frame
MAX_INT_BYTES = 64  # an int of more than 511 bits is not a plain answer
MAX_DIMS = 16

DTYPES = (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
)  # fmt: skip
_DTYPE_CODE = {d: i for i, d in enumerate(DTYPES)}
NUMPY_DTYPES = tuple(sorted({np.dtype(c).str for c in "?bBhHiIlLqQefdFD"}))
_NUMPY_CODE = {s: i for i, s in enumerate(NUMPY_DTYPES)}
SCALARS = (type(None), bool, int, float, complex, str, bytes)
KINDS = ("class", "function", "module", "object")
_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")


class WireError(ValueError):
    """Bytes that are not a well-formed message, or a value that cannot be sent."""


def plain_tensor(t: object) -> bool:
    """A tensor the wire carries: exactly torch.Tensor or nn.Parameter, dense, on the CPU, a known dtype."""
    return (
        (type(t) is torch.Tensor or type(t) is torch.nn.Parameter)
        and t.layout == torch.strided
        and t.device.type == "cpu"
        and t.dtype in _DTYPE_CODE
        and not t.is_quantized
    )


def _hashable(key: object) -> bool:
    return type(key) in SCALARS or (type(key) is tuple and all(_hashable(k) for k in key))


# --- encoding ----------------------------------------------------------------------------------------


class Encoder:
    """Turn a value into bytes. `other(obj)` gives the Ref an object that is not plain data stands for (the
    worker's handle table), or is None: refuse it with a WireError. `origin(tensor)` gives the origin token of
    a tensor that copies a parameter, or None."""

    def __init__(
        self,
        other: Callable[[object], Ref] | None = None,
        origin: Callable[[torch.Tensor], int | None] | None = None,
        max_message: int = MAX_MESSAGE,
    ):
        self.other, self.origin, self.max_message = other, origin, max_message

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
                return self._other(v, out, depth)
            self._put(out, b"i" + bytes([n]) + v.to_bytes(n, "big", signed=True))
        elif t is float:
            self._put(out, b"f" + _F64.pack(v))
        elif t is complex:
            self._put(out, b"c" + _F64.pack(v.real) + _F64.pack(v.imag))
        elif t is str or t is bytes:
            data = v.encode("utf-8", "surrogatepass") if t is str else v
            self._put(out, (b"s" if t is str else b"b") + _LEN.pack(len(data)))
            self._put(out, data)
        elif t in (list, tuple, set, frozenset):
            items = list(v)
            self._put(out, {list: b"l", tuple: b"t", set: b"e", frozenset: b"z"}[t] + _LEN.pack(len(items)))
            for item in items:
                self._value(item, out, depth + 1)
        elif t is dict:
            items = list(v.items())
            if not all(type(k) in SCALARS for k, _ in items):
                return self._other(v, out, depth)
            self._put(out, b"d" + _LEN.pack(len(items)))
            for key, item in items:
                self._value(key, out, depth + 1)
                self._value(item, out, depth + 1)
        elif plain_tensor(v):
            self._tensor(v, out)
        elif t is np.ndarray and v.dtype.str in _NUMPY_CODE and v.ndim <= MAX_DIMS:
            raw = np.ascontiguousarray(v).tobytes()
            head = b"A" + bytes([_NUMPY_CODE[v.dtype.str], v.ndim]) + b"".join(_U64.pack(s) for s in v.shape)
            self._put(out, head + _U64.pack(len(raw)))
            self._put(out, raw)
        elif t is Ref:
            self._put(out, b"R" + _U64.pack(v.id))
            self._value(v.info, out, depth + 1)
        elif t is Info:
            self._put(out, b"I")
            self._value(
                (v.type_name, v.name, v.kind, v.callable, tuple(v.classes), v.repr, v.training),
                out,
                depth + 1,
            )
        elif t is Spec:
            self._put(out, b"S")
            self._value((v.kind, tuple(v.args), dict(v.kwargs), v.state, v.train), out, depth + 1)
        else:
            self._other(v, out, depth)

    def _other(self, v: object, out: list[bytes], depth: int) -> None:
        stand_in = self.other(v) if self.other is not None else None
        if type(stand_in) is not Ref:
            raise WireError(f"a {type(v).__name__} is not plain data")
        self._value(stand_in, out, depth)

    def _tensor(self, t: torch.Tensor, out: list[bytes]) -> None:
        data = t.detach()
        if data.dim() > MAX_DIMS:
            raise WireError(f"a tensor of {data.dim()} dimensions is too many")
        origin = self.origin(t) if self.origin is not None else None
        flags = int(bool(t.requires_grad)) | (2 if type(origin) is int and 0 <= origin < 1 << 64 else 0)
        head = b"X" + bytes([_DTYPE_CODE[data.dtype], data.dim(), flags])
        head += b"".join(_U64.pack(s) for s in data.shape)
        if flags & 2:
            head += _U64.pack(origin)
        raw = _tensor_bytes(data)
        self._put(out, head + _U64.pack(len(raw)))
        self._put(out, raw)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.resolve_conj().resolve_neg().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


# --- decoding ----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, on_origin: Callable[[torch.Tensor, int], None] | None):
        self.data = memoryview(data)
        self.pos = 0
        self.items = 0
        self.on_origin = on_origin

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError("the message ends early (a length that is not there)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def length(self) -> int:
        return _LEN.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]


def decode(data: bytes, on_origin: Callable[[torch.Tensor, int], None] | None = None) -> Any:
    """The value in `data` (one encoded value, nothing after it). Raises WireError, never anything else.
    `on_origin(tensor, token)` is told the origin token of each tensor that carries one."""
    reader = _Reader(data, on_origin)
    try:
        value = _read(reader, 0)
    except WireError:
        raise
    except (
        ValueError,
        TypeError,
        OverflowError,
        RuntimeError,
        MemoryError,
        RecursionError,
        struct.error,
    ) as e:
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
    if tag == b"c":
        return complex(_F64.unpack(r.take(8))[0], _F64.unpack(r.take(8))[0])
    if tag == b"s":
        try:
            return bytes(r.take(r.length())).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise WireError("a string that is not UTF-8") from None
    if tag == b"b":
        return bytes(r.take(r.length()))
    if tag in (b"l", b"t", b"e", b"z"):
        n = r.length()
        if n > len(r.data) - r.pos:  # every item takes at least one byte
            raise WireError("a container longer than the message")
        items = [_read(r, depth + 1) for _ in range(n)]
        if tag in (b"e", b"z"):
            if not all(_hashable(i) for i in items):
                raise WireError("a set holding something that is not a plain hashable value")
            return set(items) if tag == b"e" else frozenset(items)
        return items if tag == b"l" else tuple(items)
    if tag == b"d":
        n = r.length()
        if 2 * n > len(r.data) - r.pos:
            raise WireError("a dict longer than the message")
        out = {}
        for _ in range(n):
            key = _read(r, depth + 1)
            if type(key) not in SCALARS:
                raise WireError("a dict key that is not a plain scalar")
            out[key] = _read(r, depth + 1)
        return out
    if tag == b"X":
        return _read_tensor(r)
    if tag == b"A":
        return _read_array(r)
    if tag == b"R":
        ident = r.u64()
        info = _read(r, depth + 1)
        if type(info) is not Info:
            raise WireError("a reference without its description")
        return Ref(ident, info)
    if tag == b"I":
        return _info(_read(r, depth + 1))
    if tag == b"S":
        fields = _read(r, depth + 1)
        return _spec(fields)
    raise WireError(f"unknown tag {tag!r}")


def _info(fields: object) -> Info:
    ok = (
        type(fields) is tuple and len(fields) == 7
        and type(fields[0]) is str and (fields[1] is None or type(fields[1]) is str)
        and fields[2] in KINDS and type(fields[3]) is bool
        and type(fields[4]) is tuple and all(type(c) is str for c in fields[4])
        and type(fields[5]) is str and (fields[6] is None or type(fields[6]) is bool)
    )  # fmt: skip
    if not ok:
        raise WireError("a reference whose description is not valid")
    type_name, name, kind, is_callable, classes, text, training = fields
    return Info(
        type_name[:200], name[:200] if name else name, kind, is_callable, classes[:100], text[:200], training
    )


def _spec(fields: object) -> Spec:
    ok = (
        type(fields) is tuple and len(fields) == 5 and type(fields[0]) is str and type(fields[1]) is tuple
        and type(fields[2]) is dict and all(type(k) is str for k in fields[2])
        and (fields[3] is None or type(fields[3]) is dict) and (fields[4] is None or type(fields[4]) is bool)
    )  # fmt: skip
    if not ok:
        raise WireError("a spec that is not valid")
    return Spec(*fields)


def _shape(r: _Reader, ndim: int) -> list[int]:
    if ndim > MAX_DIMS:
        raise WireError("too many dimensions")
    shape = [r.u64() for _ in range(ndim)]
    if any(s > MAX_MESSAGE for s in shape):
        raise WireError("a dimension larger than any message")
    return shape


def _read_tensor(r: _Reader) -> torch.Tensor:
    code, ndim, flags = r.take(3)
    if code >= len(DTYPES) or flags > 3:
        raise WireError("a tensor header that is not valid")
    dtype = DTYPES[code]
    shape = _shape(r, ndim)
    origin = r.u64() if flags & 2 else None
    nbytes = r.u64()
    if math.prod(shape) * torch.empty((), dtype=dtype).element_size() != nbytes:
        raise WireError("a tensor whose bytes do not match its shape")
    raw = r.take(nbytes)  # checked against the message before anything is allocated
    if nbytes == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
    if flags & 1 and (t.is_floating_point() or t.is_complex()):
        t.requires_grad_(True)
    if origin is not None and r.on_origin is not None:
        r.on_origin(t, origin)
    return t


def _read_array(r: _Reader) -> np.ndarray:
    code, ndim = r.take(2)
    if code >= len(NUMPY_DTYPES):
        raise WireError("an array of an unknown dtype")
    dtype = np.dtype(NUMPY_DTYPES[code])
    shape = _shape(r, ndim)
    nbytes = r.u64()
    if math.prod(shape) * dtype.itemsize != nbytes:
        raise WireError("an array whose bytes do not match its shape")
    return np.frombuffer(bytes(r.take(nbytes)), dtype=dtype).reshape(shape).copy()


# --- frames on a file descriptor -----------------------------------------------------------------------


class ChannelClosed(EOFError):
    """The other end closed the channel (or died)."""


class ChannelTimeout(TimeoutError):
    """No complete frame arrived (or could be sent) before the deadline."""


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


def receive(
    fd: int,
    deadline: float | None = None,
    on_origin: Callable[[torch.Tensor, int], None] | None = None,
    max_message: int = MAX_MESSAGE,
) -> Any:
    """Read one frame and decode it; ChannelTimeout after `deadline` (time.monotonic()), ChannelClosed at
    end of stream, WireError for anything malformed or too large."""
    (size,) = _LEN.unpack(_read_exact(fd, 4, deadline))
    if size > max_message:
        raise WireError(f"a message of {size} bytes is larger than the limit")
    return decode(_read_exact(fd, size, deadline), on_origin)
