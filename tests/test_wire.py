"""The grader's wire format: exact plain data both ways, and nothing but a WireError for malformed bytes."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import numpy as np
import pytest
import torch

from gptlib.checks.learner import Info, Ref, Spec
from gptlib.course import wire
from gptlib.course.wire import Encoder, WireError, decode

INFO = Info("Foo", "Foo", "class", True, ("submission.Foo", "builtins.object"), "<class 'submission.Foo'>")


def roundtrip(value, **kw):
    return decode(Encoder(**kw).encode(value))


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is torch.Tensor:
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a, b))
            and a.requires_grad == b.requires_grad
        )
    if type(a) is np.ndarray:
        return a.dtype == b.dtype and np.array_equal(a, b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is float and a != a:
        return b != b
    return a == b


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -1, 2**200, -(2**300), 1.5, float("inf"), float("nan"), 1 + 2j, "", "héllo ☃",
        "\ud800", b"\x00\xff", [], (), {}, [1, (2, [3.0, "x"]), {"k": None}], {1: "a", 2.5: "b", None: 1, b"k": 2},
        {1, "a", (1, 2)}, frozenset({3}),
    ],
)  # fmt: skip
def test_plain_values_come_back_the_same_and_of_the_same_type(value):
    assert same(roundtrip(value), value)


@pytest.mark.parametrize("dtype", wire.DTYPES)
def test_tensors_come_back_with_dtype_shape_values_and_grad_flag(dtype):
    t = (torch.arange(24) % 5).to(dtype).reshape(2, 3, 4)
    assert same(roundtrip(t), t)
    assert same(roundtrip(t[:, 1]), t[:, 1].contiguous())  # a strided view travels as its values
    assert same(roundtrip(torch.empty(0, 3, dtype=dtype)), torch.empty(0, 3, dtype=dtype))
    assert same(roundtrip(torch.tensor(7).to(dtype)), torch.tensor(7).to(dtype))
    if dtype.is_floating_point:
        g = torch.ones(2, dtype=dtype, requires_grad=True)
        back = roundtrip(g)
        assert back.requires_grad and type(back) is torch.Tensor and back is not g


def test_a_parameter_becomes_a_plain_tensor_with_its_origin_token():
    p = torch.nn.Parameter(torch.ones(3))
    seen = {}
    back = decode(Encoder(origin=lambda t: 1234).encode(p), on_origin=lambda t, tok: seen.update(tok=tok))
    assert type(back) is torch.Tensor and back.requires_grad and seen == {"tok": 1234}


def test_numeric_numpy_arrays_travel_object_arrays_do_not():
    a = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert same(roundtrip(a), a)
    with pytest.raises(WireError):
        Encoder().encode(np.array([object()]))


def test_refs_infos_and_specs_travel_as_plain_fields():
    ref = roundtrip(Ref(7, INFO))
    assert type(ref) is Ref and ref.id == 7 and ref.info == INFO
    spec = roundtrip(Spec("GPTConfig", kwargs={"n_embd": 8}, state={"w": torch.ones(2)}, train=False))
    assert (
        type(spec) is Spec
        and spec.kind == "GPTConfig"
        and spec.kwargs == {"n_embd": 8}
        and spec.train is False
    )


class LyingTensor(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.equal, torch.allclose):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class LyingStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


@pytest.mark.parametrize(
    "liar",
    [torch.zeros(2).as_subclass(LyingTensor), LyingInt(3), LyingStr("x"), [LyingInt(1)], {"k": LyingStr("v")},
     {LyingInt(1): 2}, object(), torch.zeros(2, device="meta")],
)  # fmt: skip
def test_anything_not_exactly_plain_is_refused_or_becomes_a_ref(liar):
    with pytest.raises(WireError):
        Encoder().encode(liar)
    stood_in = []
    back = roundtrip(liar, other=lambda obj: stood_in.append(obj) or Ref(len(stood_in), INFO))
    kinds = _types_in(back)
    assert stood_in and Ref in kinds
    assert not kinds & {LyingTensor, LyingInt, LyingStr, object}


def _types_in(value) -> set:
    if type(value) in (list, tuple):
        return {type(value)}.union(*(_types_in(v) for v in value))
    if type(value) is dict:
        return {dict}.union(*(_types_in(k) | _types_in(v) for k, v in value.items()))
    return {type(value)}


def test_size_depth_and_int_limits():
    nested: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        nested = [nested]
    with pytest.raises(WireError, match="nested"):
        Encoder().encode(nested)
    with pytest.raises(WireError, match="larger"):
        Encoder(max_message=1000).encode(b"x" * 2000)
    with pytest.raises(WireError):
        Encoder().encode(2**1000)  # too large to be a plain answer (the worker makes it a Ref)


MALFORMED = [
    b"", b"Q", b"i", b"i\x00", b"i\x41" + b"\x00" * 65, b"s\x00\x00\x00\x05ab", b"s\x00\x00\x00\x02\xff\xfe",
    b"l\xff\xff\xff\xff", b"d\x00\x00\x00\x01l\x00\x00\x00\x00N",  # a list as a dict key
    b"e\x00\x00\x00\x01l\x00\x00\x00\x00",  # a list in a set
    b"X\x00\x01\x00" + struct.pack(">Q", 3) + struct.pack(">Q", 4) + b"\x00" * 4,  # 3 float32 need 12 bytes
    b"X\x63\x00\x00" + struct.pack(">Q", 0),  # unknown dtype
    b"X\x00\x11\x00",  # 17 dimensions
    b"X\x00\x01\x00" + struct.pack(">Q", 2**62) + struct.pack(">Q", 2**64 - 1),  # a huge tensor that is not there
    b"R" + struct.pack(">Q", 1) + b"N",  # a ref without its Info
    b"I" + b"t\x00\x00\x00\x01N",  # an Info with one field
    b"S" + b"t\x00\x00\x00\x05s\x00\x00\x00\x01xNNNN",  # a spec whose args are not a tuple
    b"NN",  # extra bytes
    b"l\x00\x00\x00\x01" * 100 + b"N",  # nested deeper than the limit
]  # fmt: skip


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_bytes_are_a_wire_error(data):
    with pytest.raises(WireError):
        decode(data)


def test_random_bytes_never_raise_anything_but_a_wire_error():
    rng = random.Random(0)
    good = Encoder().encode([1, "two", torch.ones(2, 3), {"k": (3.0, None)}, Ref(1, INFO)])
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        try:
            decode(cut)
        except WireError:
            pass


def test_frames_on_a_socket_and_their_deadlines():
    a, b = socket.socketpair()
    try:
        wire.send(a.fileno(), {"x": torch.arange(3)})
        assert same(wire.receive(b.fileno(), time.monotonic() + 5), {"x": torch.arange(3)})
        with pytest.raises(wire.ChannelTimeout):
            wire.receive(b.fileno(), time.monotonic() + 0.05)
        a.sendall(struct.pack(">I", wire.MAX_MESSAGE + 1))
        with pytest.raises(WireError, match="larger than the limit"):
            wire.receive(b.fileno(), time.monotonic() + 5)
        os.set_blocking(a.fileno(), False)
        with pytest.raises(wire.ChannelTimeout):  # nobody reads: a big frame cannot be sent in time
            wire.send(a.fileno(), b"x" * (64 << 20), deadline=time.monotonic() + 0.2)
    finally:
        a.close()
    with pytest.raises(wire.ChannelClosed):
        wire.receive(b.fileno(), time.monotonic() + 5)
    b.close()
