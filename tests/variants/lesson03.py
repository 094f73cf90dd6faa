"""Lesson 03, the MLP: gelu (3.1), MLP (3.2)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 3.1 gelu


@V.correct("3.1", "ndtr")
def gelu_ndtr(x):
    return x * torch.special.ndtr(x)  # Phi(x), the standard normal CDF


@V.correct("3.1", "constant-one-over-sqrt2")
def gelu_const(x):
    return 0.5 * x * (1 + torch.erf(x * 0.7071067811865476))


@V.correct("3.1", "erfc")
def gelu_erfc(x):
    return 0.5 * x * torch.erfc(-x / math.sqrt(2))  # 1 + erf(z) == erfc(-z)


@V.correct("3.1", "phi-variable")
def gelu_phi(x):
    phi = (1.0 + torch.erf(x / 2**0.5)) / 2.0
    return x * phi


@V.mistake(
    "3.1",
    "tanh-approximation",
    ["tanh"],
    "That is the tanh approximation; the exercise is the exact erf form.",
)
def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


@V.mistake("3.1", "relu", ["relu"], "That is ReLU, max(x, 0); GELU is x * Phi(x).")
def gelu_relu(x):
    return torch.clamp(x, min=0)


@V.mistake(
    "3.1",
    "missing-half",
    ["0.5", "half", "factor of 2", "twice"],
    "The 0.5 is missing: the result is twice GELU.",
)
def gelu_no_half(x):
    return x * (1 + torch.erf(x / math.sqrt(2)))


@V.mistake(
    "3.1",
    "divided-by-2-not-sqrt2",
    ["sqrt(2)", "sqrt 2", "sqrt2", "x / 2"],
    "x / 2 inside the erf: it is x / sqrt(2).",
)
def gelu_by_two(x):
    return 0.5 * x * (1 + torch.erf(x / 2))


@V.mistake(
    "3.1",
    "math-erf",
    ["math.erf", "torch.erf", "single number", "one number"],
    "math.erf takes one number, not a tensor: use torch.erf.",
)
def gelu_math_erf(x):
    return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))


@V.mistake(
    "3.1",
    "sigmoid-approximation",
    ["sigmoid", "1.702"],
    "x * sigmoid(1.702 x) is another approximation; the exercise is the exact erf form.",
)
def gelu_sigmoid(x):
    return x * torch.sigmoid(1.702 * x)


@V.mistake("3.1", "in-place", W.IN_PLACE, "x.mul_ changes the caller's tensor.")
def gelu_inplace(x):
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return x.mul_(cdf)


@V.mistake(
    "3.1",
    "cdf-only",
    ["cdf", "phi", "times x", "multiply by x", "x *", "x times"],
    "You return Phi(x), the CDF; GELU is x * Phi(x).",
)
def gelu_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@V.mistake("3.1", "silu", ["silu", "swish", "sigmoid"], "x * sigmoid(x) is SiLU (swish), not GELU.")
def gelu_silu(x):
    return x * torch.sigmoid(x)


@V.mistake(
    "3.1",
    "detached",
    ["gradient", "detach", "autograd"],
    "x.detach() inside the erf cuts half of the gradient.",
)
def gelu_detached(x):
    return 0.5 * x * (1 + torch.erf(x.detach() / math.sqrt(2)))


# ---------------------------------------------------------------- 3.2 MLP


@V.correct("3.2", "sequential")
class MLPSequential(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.resid_pdrop),
        )

    def forward(self, x):
        return self.net(x)


@V.correct("3.2", "functional-nanogpt-names")
class MLPFunctional(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.p = config.resid_pdrop

    def forward(self, x):
        x = self.c_fc(x)
        x = F.gelu(x)
        x = self.c_proj(x)
        return F.dropout(x, p=self.p, training=self.training)


@V.correct("3.2", "own-gelu")
class MLPOwnGelu(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = 4 * config.n_embd
        self.up = nn.Linear(config.n_embd, hidden)
        self.down = nn.Linear(hidden, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        h = self.up(x)
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        return self.dropout(self.down(h))


@V.correct("3.2", "layers-declared-in-other-order")
class MLPOrder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.act = nn.GELU(approximate="none")
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)

    def forward(self, x):
        return self.drop(self.proj(self.act(self.fc(x))))


class _MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.drop(self.proj(self.gelu(self.fc(x))))


@V.mistake(
    "3.2", "tanh-gelu", ["tanh"], "nn.GELU(approximate='tanh') is GPT-2's approximation; use the exact GELU."
)
class MLPTanh(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.gelu = nn.GELU(approximate="tanh")


@V.mistake("3.2", "relu", ["relu"], "nn.ReLU is not GELU.")
class MLPRelu(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.gelu = nn.ReLU()


@V.mistake(
    "3.2",
    "no-activation",
    [
        "activation",
        "no gelu",
        "without the gelu",
        "without gelu",
        "gelu is missing",
        "missing gelu",
        "linear",
    ],
    "Without the GELU, two Linear layers are one Linear layer: put nn.GELU() between them.",
)
class MLPNoAct(_MLP):
    def forward(self, x):
        return self.drop(self.proj(self.fc(x)))


@V.mistake(
    "3.2",
    "gelu-after-second-layer",
    ["after the second", "after proj", "after the proj", "second layer", "order"],
    "The GELU goes between the two layers, not after the second.",
)
class MLPGeluLast(_MLP):
    def forward(self, x):
        return self.drop(self.gelu(self.proj(self.fc(x))))


@V.mistake(
    "3.2",
    "hidden-width-2c",
    ["4c", "4 *", "4 x", "four times", "hidden width", "width"],
    "The hidden layer is 4 * n_embd wide; yours is 2 * n_embd.",
)
class MLPTwoC(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.n_embd, 2 * config.n_embd)
        self.proj = nn.Linear(2 * config.n_embd, config.n_embd)


@V.mistake(
    "3.2",
    "dropout-first",
    ["last", "end", "input", "first"],
    "Dropout goes last, on the MLP's output; yours drops the input.",
)
class MLPDropFirst(_MLP):
    def forward(self, x):
        return self.proj(self.gelu(self.fc(self.drop(x))))


@V.mistake(
    "3.2",
    "dropout-on-hidden",
    ["last", "hidden", "end", "after the proj", "between"],
    "Dropout sits on the hidden layer; it goes last, after proj.",
)
class MLPDropHidden(_MLP):
    def forward(self, x):
        return self.proj(self.drop(self.gelu(self.fc(x))))


@V.mistake("3.2", "no-dropout", ["dropout"], "There is no dropout: end with nn.Dropout(resid_pdrop).")
class MLPNoDrop(_MLP):
    def forward(self, x):
        return self.proj(self.gelu(self.fc(x)))


@V.mistake(
    "3.2",
    "dropout-rate-attn",
    ["resid_pdrop", "rate"],
    "The MLP's dropout rate is resid_pdrop, not attn_pdrop.",
)
class MLPAttnRate(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.drop = nn.Dropout(config.attn_pdrop)


@V.mistake(
    "3.2",
    "dropout-in-eval",
    W.EVAL_DROPOUT,
    "F.dropout(..., training=True) drops in eval mode too.",
)
class MLPDropEval(_MLP):
    def forward(self, x):
        return F.dropout(self.proj(self.gelu(self.fc(x))), self.drop.p, training=True)


@V.mistake(
    "3.2",
    "no-bias",
    ["bias"],
    "nn.Linear(..., bias=False) leaves out the biases the exercise's layers have.",
)
class MLPNoBias(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)


@V.mistake(
    "3.2",
    "residual-inside",
    ["residual", "x +", "adds x", "adds the input"],
    "The MLP adds its input back; the residual belongs in the block.",
)
class MLPResidual(_MLP):
    def forward(self, x):
        return x + self.drop(self.proj(self.gelu(self.fc(x))))


@V.mistake(
    "3.2",
    "no-second-layer",
    ["proj", "second layer", "4c", "back to"],
    "You return the 4C-wide hidden layer: project it back to C with the second Linear.",
)
class MLPNoProj(_MLP):
    def forward(self, x):
        return self.drop(self.gelu(self.fc(x)))


@V.mistake(
    "3.2",
    "hard-coded-width",
    ["n_embd", "config", "hard"],
    "nn.Linear(32, 128) is fixed: use config.n_embd.",
)
class MLPFixed(_MLP):
    def __init__(self, config):
        super().__init__(config)
        self.fc = nn.Linear(32, 128)
        self.proj = nn.Linear(128, 32)


@V.mistake(
    "3.2",
    "mixes-positions",
    ["position", "mix", "across t", "time"],
    "Your layer mixes the positions: the MLP must treat every position on its own.",
)
class MLPMixes(_MLP):
    def forward(self, x):
        h = self.gelu(self.fc(x))
        h = h.cumsum(dim=1) / torch.arange(1, x.size(1) + 1).view(1, -1, 1)  # "smooths" over time
        return self.drop(self.proj(h))
