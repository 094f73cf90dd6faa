"""Lesson 03's checks: correct GELUs and MLPs pass; each classic mistake gets its diagnosis."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.mlp import check_gelu, check_mlp
from gptlib.mlp import MLP as GptlibMLP

# --- gelu -------------------------------------------------------------------------------------


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_special(x):
    return x * torch.special.ndtr(x)


def gelu_erfc(x):
    return 0.5 * x * torch.erfc(-x / math.sqrt(2.0))


def gelu_normal_cdf(x):  # the Gaussian CDF from torch.distributions
    return x * torch.distributions.Normal(0.0, 1.0).cdf(x)


def gelu_float64(x):  # computed in float64, handed back in the input's dtype
    y = x.double()
    return (y * (1 + torch.erf(y * 2**-0.5)) / 2).to(x.dtype)


@pytest.mark.parametrize("fn", [gelu_erf, gelu_special, gelu_erfc, F.gelu, gelu_normal_cdf, gelu_float64])
def test_correct_gelus_pass(fn, capsys):
    threads = torch.get_num_threads()
    check_gelu(fn)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_sigmoid(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_no_half(x):
    return x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_no_sqrt(x):
    return 0.5 * x * (1.0 + torch.erf(x))


def gelu_times_sqrt(x):
    return 0.5 * x * (1.0 + torch.erf(x * math.sqrt(2.0)))


def gelu_half(x):
    return 0.5 * x * (1.0 + torch.erf(x / 2))


def gelu_cdf_only(x):
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_math_erf(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def gelu_in_place(x):
    return x.mul_(0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))))


def gelu_in_place_no_grad(x):
    with torch.no_grad():
        return x.mul_(0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))))


def gelu_detached(x):
    return gelu_erf(x.detach())


def gelu_none(x):
    gelu_erf(x)


def gelu_tuple(x):
    return gelu_erf(x), x


def gelu_stub(x):
    raise NotImplementedError()


def gelu_overflow(x):
    return gelu_erf(x) * torch.where(x.abs() > 20, torch.nan, 1.0)


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (gelu_tanh, "tanh-approximation"),
        (lambda x: F.gelu(x, approximate="tanh"), "tanh-approximation"),
        (gelu_sigmoid, "sigmoid-approximation"),
        (F.relu, "relu"),
        (torch.relu, "relu"),
        (gelu_no_half, "missing-half"),
        (gelu_no_sqrt, "erf-argument"),
        (gelu_times_sqrt, "erf-argument"),
        (gelu_half, "erf-argument"),
        (gelu_cdf_only, "missing-x"),
        (gelu_math_erf, "math-erf"),
        (gelu_in_place, "in-place"),
        (gelu_in_place_no_grad, "in-place"),
        (gelu_detached, "no-grad"),
        (gelu_none, "returned-none"),
        (gelu_tuple, "returned-tuple"),
        (gelu_overflow, "nan"),
        (torch.tanh, "wrong-values"),
    ],
)
def test_gelu_mistakes_are_diagnosed(fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check_gelu(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)


def test_tanh_is_named_in_the_message():
    with pytest.raises(CheckFailure) as excinfo:
        check_gelu(gelu_tanh)
    assert "tanh approximation" in str(excinfo.value) and "torch.erf" in str(excinfo.value)


def test_gelu_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_gelu(gelu_stub)


# --- mlp --------------------------------------------------------------------------------------


class SeedMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.drop(self.proj(self.gelu(self.fc(x))))


class SequentialMLP(nn.Module):
    """nn.Sequential with the learner's own erf GELU as a module; other names."""

    class Gelu(nn.Module):
        def forward(self, x):
            return gelu_erf(x)

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.net = nn.Sequential(
            nn.Linear(C, 4 * C), self.Gelu(), nn.Linear(4 * C, C), nn.Dropout(config.resid_pdrop)
        )

    def forward(self, x):
        return self.net(x)


class FunctionalMLP(nn.Module):
    """Bias-less layers, the config's GELU flavour, F.dropout with the training flag."""

    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.down = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.p = config.resid_pdrop
        self.approximate = config.gelu_approximate

    def forward(self, x):
        h = F.gelu(self.up(x), approximate=self.approximate)
        return F.dropout(self.down(h), self.p, self.training)


class MatmulMLP(nn.Module):
    """Raw weight matrices used with @, ARENA style."""

    def __init__(self, config):
        super().__init__()
        C, H = config.n_embd, 4 * config.n_embd
        self.W_in = nn.Parameter(torch.randn(C, H) * 0.02)
        self.b_in = nn.Parameter(torch.zeros(H))
        self.W_out = nn.Parameter(torch.randn(H, C) * 0.02)
        self.b_out = nn.Parameter(torch.zeros(C))
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        h = gelu_erf(x @ self.W_in + self.b_in)
        return self.drop(h @ self.W_out + self.b_out)


class LinearLayoutParams(nn.Module):
    """Raw parameters in nn.Linear's (out, in) layout, used with F.linear; defined in the 'wrong' order."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.w2 = nn.Parameter(torch.randn(C, 4 * C))
        self.w1 = nn.Parameter(torch.randn(4 * C, C))
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.drop(F.linear(F.gelu(F.linear(x, self.w1)), self.w2))


class DictMLP(nn.Module):
    """The layers in an nn.ModuleDict, the dropout as a function of the config's rate."""

    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.layers = nn.ModuleDict({"c_fc": nn.Linear(C, 4 * C), "c_proj": nn.Linear(4 * C, C)})
        self.rate = config.resid_pdrop

    def forward(self, x):
        h = self.layers["c_fc"](x)
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        return F.dropout(self.layers["c_proj"](h), p=self.rate, training=self.training)


@pytest.mark.parametrize(
    "cls", [SeedMLP, SequentialMLP, FunctionalMLP, MatmulMLP, LinearLayoutParams, GptlibMLP, DictMLP]
)
def test_correct_mlps_pass(cls, capsys):
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    check_mlp(cls)
    assert torch.get_num_threads() == threads
    assert "passed" in capsys.readouterr().out
    assert torch.equal(torch.random.get_rng_state(), state)


class Stub(nn.Module):
    def __init__(self, config):
        super().__init__()
        raise NotImplementedError()


class ForwardStub(SeedMLP):
    def forward(self, x):
        raise NotImplementedError()


class Width2(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.n_embd, 2 * config.n_embd)
        self.proj = nn.Linear(2 * config.n_embd, config.n_embd)


class WidthC(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.n_embd, config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)


class TanhGelu(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.gelu = nn.GELU(approximate="tanh")


class Relu(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.gelu = nn.ReLU()


class NoActivation(SeedMLP):
    def forward(self, x):
        return self.drop(self.proj(self.fc(x)))


class ActivationLast(SeedMLP):
    def forward(self, x):
        return self.drop(self.gelu(self.proj(self.fc(x))))


class ResidualInside(SeedMLP):
    def forward(self, x):
        return x + self.drop(self.proj(self.gelu(self.fc(x))))


class OneLinear(SeedMLP):
    def forward(self, x):
        return self.drop(self.gelu(self.fc(x)))


class ThreeLinears(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.extra = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        return self.extra(super().forward(x))


class NoDropout(SeedMLP):
    def forward(self, x):
        return self.proj(self.gelu(self.fc(x)))


class DropoutHidden(SeedMLP):
    def forward(self, x):
        return self.proj(self.drop(self.gelu(self.fc(x))))


class DropoutFirst(SeedMLP):
    def forward(self, x):
        return self.proj(self.gelu(self.fc(self.drop(x))))


class DropoutAlwaysOn(SeedMLP):
    def forward(self, x):
        return F.dropout(self.proj(self.gelu(self.fc(x))), 0.5)


class EmbdRate(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(config.embd_pdrop)


class ReturnsTuple(SeedMLP):
    def forward(self, x):
        return super().forward(x), None


class ReturnsNone(SeedMLP):
    def forward(self, x):
        super().forward(x)


class MixesPositions(SeedMLP):
    def forward(self, x):
        return super().forward(x + x.mean(dim=1, keepdim=True))


class DetachedProj(SeedMLP):
    def forward(self, x):
        h = self.gelu(self.fc(x)).detach()
        return self.drop(self.proj(h))


class InPlace(SeedMLP):
    def forward(self, x):
        x.mul_(1.0)
        x += 0.0
        x[:, 0] = 0.0
        return super().forward(x)


class WrongShapes(SeedMLP):
    def __init__(self, config):
        super().__init__(config)
        self.proj = nn.Linear(config.n_embd, config.n_embd)


class NoSuperInit(nn.Module):
    def __init__(self, config):
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)


@pytest.mark.parametrize(
    "cls, diagnosis",
    [
        (Width2, "hidden-width"),
        (WidthC, "hidden-width"),
        (TanhGelu, "tanh-approximation"),
        (Relu, "relu"),
        (NoActivation, "no-activation"),
        (ActivationLast, "activation-after-proj"),
        (ResidualInside, "residual-inside"),
        (OneLinear, "missing-second-linear"),
        (ThreeLinears, "extra-linear"),
        (NoDropout, "no-dropout"),
        (DropoutHidden, "dropout-wrong-place"),
        (DropoutFirst, "dropout-wrong-place"),
        (DropoutAlwaysOn, "dropout-in-eval"),
        (EmbdRate, "dropout-rate"),
        (ReturnsTuple, "returned-tuple"),
        (ReturnsNone, "returned-none"),
        (MixesPositions, "mixes-positions"),
        (DetachedProj, "no-grad"),
        (InPlace, "in-place"),
        (WrongShapes, "crashed"),
        (NoSuperInit, "no-super-init"),
        (SeedMLP.__init__, "not-a-class"),
    ],
)
def test_mlp_mistakes_are_diagnosed(cls, diagnosis):
    state = torch.random.get_rng_state()
    with pytest.raises(CheckFailure) as excinfo:
        check_mlp(cls)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_hidden_width_is_reported():
    with pytest.raises(CheckFailure) as excinfo:
        check_mlp(Width2)
    assert "16 units = 2 x n_embd" in str(excinfo.value)


def test_crash_lists_the_layers():
    with pytest.raises(CheckFailure) as excinfo:
        check_mlp(WrongShapes)
    assert "proj (8 -> 8)" in str(excinfo.value) and "8 -> 32 then 32 -> 8" in str(excinfo.value)


@pytest.mark.parametrize("cls", [Stub, ForwardStub])
def test_mlp_stub_is_not_done_yet(cls):
    with pytest.raises(NotDoneYet):
        check_mlp(cls)
