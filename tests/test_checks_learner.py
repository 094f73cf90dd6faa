"""The learner boundary (gptlib/checks/learner.py): plain data out, copies in, crashes as plain data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from gptlib.checks import learner
from gptlib.checks.learner import Backward, Crash, InProcess, Ref, Spec, config_spec, module_spec
from gptlib.config import GPTConfig


class LyingTensor(torch.Tensor):
    """Says yes to every comparison."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.equal, torch.allclose, torch.Tensor.__eq__):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


@pytest.fixture
def b() -> InProcess:
    return InProcess()


def test_values_come_back_as_exact_plain_copies(b):
    t = torch.arange(3.0, requires_grad=True)
    out = b.call(b.adopt(lambda: (t * 2, [1, 2.5, "s", None, b"x"], {"k": np.float64(1.5)}))).value
    tensor, items, mapping = out
    assert type(tensor) is torch.Tensor and not tensor.requires_grad
    assert items == [1, 2.5, "s", None, b"x"] and type(mapping["k"]) is float
    p = nn.Parameter(torch.ones(2))
    copy = b.call(b.adopt(lambda: p)).value
    assert type(copy) is torch.Tensor and copy is not p


def test_lying_objects_stay_behind_refs(b):
    sub = torch.zeros(2).as_subclass(LyingTensor)
    out = b.call(b.adopt(lambda: (sub, LyingInt(3), (1, 2).__class__))).value
    lying_tensor, lying_int, _ = out
    assert isinstance(lying_tensor, Ref) and lying_tensor.info.type_name == "LyingTensor"
    assert isinstance(lying_int, Ref) and not isinstance(lying_int, int) and lying_int != 3
    assert repr(lying_int) == "3"


def test_info_judges_the_real_type():
    class Liar:
        @property
        def __class__(self):
            return nn.Module

    info = learner.describe(Liar())
    assert info.kind == "object" and not info.isa(nn.Module)
    assert learner.describe(nn.Linear).kind == "class" and learner.describe(nn.Linear).isa(nn.Module)
    module = learner.describe(nn.Linear(2, 3).eval())
    assert module.kind == "module" and module.training is False and module.isa(nn.Linear)


def test_the_learner_gets_copies_and_changes_are_reported(b):
    x = torch.ones(3)

    def double_in_place(t, *, k):
        t.mul_(2)
        return k

    call = b.call(b.adopt(double_in_place), (x,), {"k": torch.ones(1)})
    assert call.changed == (0,) and torch.equal(x, torch.ones(3))
    call = b.call(b.adopt(lambda t: t + 1), (x,))
    assert call.changed == ()
    same_values = b.call(b.adopt(lambda t: t.add_(0)), (x,))  # values unchanged, but written in place
    assert same_values.changed == (0,)


def test_a_crash_is_plain_data_with_the_learners_frames(b):
    def forward(x):
        return x @ torch.ones(5, 5)  # the learner's line

    with pytest.raises(Crash) as info:
        b.call(b.adopt(forward), (torch.ones(2, 3),))
    crash = info.value
    assert crash.isa("RuntimeError") and crash.stage == "call" and "cannot be multiplied" in crash.message
    assert [f.function for f in crash.frames] == ["forward"]
    assert crash.frames[-1].code == "return x @ torch.ones(5, 5)  # the learner's line"
    assert "line" in crash.where and "of your code" in crash.where

    class Stub(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    with pytest.raises(Crash) as info:
        b.call(b.call(b.adopt(Stub)).value, (torch.ones(1),))
    assert info.value.isa("NotImplementedError")


def test_backward_gives_the_gradients_of_inputs_and_parameters(b):
    lin = b.call(b.adopt(nn.Linear), (3, 2)).value
    cot = torch.tensor([[1.0, 2.0]])
    call = b.call(lin, (torch.ones(1, 3),), backward=Backward(wrt=(0,), cotangent=cot))
    weight = b.parameters(lin)["weight"]
    assert torch.allclose(call.grads.inputs[0], cot @ weight)
    assert torch.allclose(call.grads.params["bias"], cot[0]) and call.grads.connected
    assert all(g is None for g in b.parameters(lin, grads=True).values()), "grads are cleared after"
    detached = b.call(b.adopt(lambda x: x.detach() * 2), (torch.ones(2),), backward=Backward(wrt=(0,)))
    assert not detached.grads.connected and detached.grads.inputs == {0: None}


def test_modules_parameters_and_trace(b):
    net = b.call(b.adopt(lambda: nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)))).value
    subs = b.modules(net)
    assert [s.path for s in subs] == ["", "0", "1", "2"]
    assert subs[1].params == {"weight": "0.weight", "bias": "0.bias"} and subs[1].info.isa(nn.Linear)
    b.set_parameters(net, {"0.bias": torch.tensor([5.0, 6.0])})
    assert torch.equal(b.parameters(net)["0.bias"], torch.tensor([5.0, 6.0]))
    call = b.call(net, (torch.ones(1, 2),), watch=("2", "0"))
    assert [p for p, _, _ in call.trace] == ["0", "2"]
    b.train(net, False)
    assert b.modules(net)[0].info.training is False


def test_shared_parameters_have_one_name(b):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(4, 2)
            self.head = nn.Linear(2, 4, bias=False)
            self.head.weight = self.emb.weight

    tied = b.call(b.adopt(Tied)).value
    assert list(b.parameters(tied)) == ["emb.weight"]
    assert {s.path: s.params for s in b.modules(tied)}["head"] == {"weight": "emb.weight"}


def test_specs_build_trusted_objects_on_the_learner_side(b):
    config = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4)
    from gptlib.attention import CausalSelfAttention

    attn = CausalSelfAttention(config).eval()
    ref = b.build(module_spec("CausalSelfAttention", attn, config_spec(config)))
    assert ref.isa(CausalSelfAttention) and ref.info.training is False
    assert torch.equal(b.parameters(ref)["query.weight"], attn.query.weight)
    gen = b.build(Spec("Generator", (3,)))
    draw = b.call(b.adopt(lambda g: torch.randint(100, (3,), generator=g)), (gen,)).value
    assert torch.equal(draw, torch.randint(100, (3,), generator=torch.Generator().manual_seed(3)))
    cache = b.build(Spec("dict"))
    b.call(b.adopt(lambda c: c.update(k=torch.ones(1))), (cache,))
    assert b.fetch(cache) == {"k": torch.ones(1)}
    with pytest.raises(ValueError, match="no builder"):
        b.build(Spec("os.system"))


def test_a_returned_parameter_is_named_by_its_module(b):
    lin = b.call(b.adopt(nn.Linear), (2, 2)).value
    weight = b.call(b.adopt(lambda m: [m.weight]), (lin,)).value[0]
    assert b.parameter_name(lin, weight) == "weight"
    assert b.parameter_name(lin, torch.ones(2, 2)) is None


def test_refs_die_with_forget(b):
    ref = b.adopt(len)
    b.forget()
    with pytest.raises(TypeError, match="not a live Ref"):
        b.call(ref, ([1],))


def test_using_selects_the_backend():
    other = InProcess()
    with learner.using(other) as active:
        assert learner.backend() is active is other
    assert learner.backend() is not other


def test_the_learners_code_has_its_own_rng_stream(b):
    draw = b.adopt(lambda: torch.rand(3))
    torch.manual_seed(5)
    mine = torch.rand(3)
    torch.manual_seed(5)
    b.seed(1)
    first = b.call(draw).value
    assert torch.equal(torch.rand(3), mine), "the learner's draws leave the check's stream alone"
    assert not torch.equal(b.call(draw).value, first), "the learner's stream goes on between calls"
    b.seed(1)
    assert torch.equal(b.call(draw).value, first) and torch.equal(
        first, torch.rand(3, generator=torch.Generator().manual_seed(1))
    )


def test_builders_are_registered_by_their_own_module():
    import gptlib.checks.builders as builders

    assert set(learner.BUILDERS) >= {
        "dict",
        "Generator",
        "GPT",
        "SGD",
        "lesson06:OddNames",
        "lesson08:RecordingGPT",
    }
    assert all(
        not name.startswith("gptlib.checks.") or name in ("gptlib.checks.learner",)
        for name in (
            getattr(v, "__name__", "") for v in vars(builders).values() if type(v).__name__ == "module"
        )
    )
