"""Checks for lesson 05 (the softmax head and the full GPT): cross_entropy, GPT, count_parameters.

`check_cross_entropy` compares the learner's loss with F.cross_entropy on
ordinary and on huge logits (where exp() overflows unless the row maximum is
subtracted first), and names the usual mistakes: the softmax without the log,
a sum or a vector instead of the mean, the wrong axis, the wrong entries picked.

`check_gpt` builds the learner's GPT next to gptlib.GPT with the same config.
Before comparing values it checks what needs no weights: the (logits, loss)
return, the shapes, no loss without targets, the parameter shapes (listing
expected vs found), the minGPT init and the initial loss ~ ln(vocab_size),
causality. Then it copies the learner's weights into gptlib.GPT and compares
the logits.

`check_count_parameters` evaluates the learner's formula on several configs
(GPT-2's size among them) against GPT(config).num_parameters() and, when it is
off, says which part: per vocabulary token, per position, per layer, the rest.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.block import Block as _RefBlock
from gptlib.checks.base import (
    CheckFailure,
    build_module,
    call,
    expect_tensor,
    fraction_close,
    max_diff,
    passed,
    seeded,
    shape_str,
    tensors_close,
)
from gptlib.checks.hints import register_hints
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings as _RefEmbeddings
from gptlib.head import LMHead as _RefHead
from gptlib.model import GPT as _RefGPT

__all__ = ["check_cross_entropy", "check_gpt", "check_count_parameters"]


# ==== 5.1 cross_entropy =============================================================================

_CE = "cross_entropy"

register_hints(
    _CE,
    levels=[
        "Cross-entropy is the average, over the rows, of -log(probability the model gave to the right "
        "token). The probabilities are the softmax of each row of logits; work with their logarithm "
        "directly (log-softmax), which never overflows if you subtract the row's maximum first.",
        "log_softmax(z) = z - log(sum(exp(z))). exp(1000) is inf in float32, so shift each row first: "
        "z = logits - logits.max(dim=-1, keepdim=True).values (the softmax does not change). Then pick, in "
        "each row i, the entry of the target: logp[torch.arange(N), targets] or logp.gather(1, "
        "targets[:, None]). Negate and take the mean.",
        "z = logits - logits.max(dim=-1, keepdim=True).values        # (N, V), max of each row is 0\n"
        "logp = z - torch.log(torch.exp(z).sum(dim=-1, keepdim=True))  # (N, V) log-softmax\n"
        "picked = logp[torch.arange(logits.size(0)), targets]        # (N,) log p(target)\n"
        "return -picked.mean()",
    ],
    diagnoses={
        "no-log": "take the log of the probabilities: cross-entropy is -log p(target), not -p(target).",
        "sign": "the log of a probability is negative; the loss is its NEGATIVE mean: return -picked.mean().",
        "no-mean": "return one number: the mean of -log p(target) over the rows (.mean()).",
        "sum-not-mean": "average over the rows (.mean()), don't add them up: the loss should not grow with the "
        "batch size.",
        "wrong-axis": "each ROW is one prediction over the vocabulary: softmax and log-softmax over dim=-1.",
        "wrong-index": "pick one entry per row, the target's: logp[torch.arange(N), targets]. logp[:, targets] "
        "picks every target's column for every row (an (N, N) matrix).",
        "no-softmax": "turn the logits into log-probabilities first (log-softmax); the raw logits are not "
        "probabilities.",
        "overflow": "subtract each row's maximum before exp(): logits - logits.max(dim=-1, keepdim=True).values. "
        "The softmax is unchanged, and exp() never sees a number above 0.",
        "not-a-tensor": "return the tensor itself: .item() or float() cut the path the gradient takes back.",
        "no-grad": "compute the loss with torch operations on logits (no .detach(), .data, numpy or .item()).",
        "in-place": "don't change logits in place (logits -= ...): make a new tensor, z = logits - ...",
    },
)


def _ce_variants(logits: torch.Tensor, targets: torch.Tensor) -> list[tuple[str, str, torch.Tensor]]:
    """Known-wrong losses, computed in float64: (code, what it is, value)."""
    z = logits.detach().double()
    N = z.size(0)
    rows = torch.arange(N)
    logp = F.log_softmax(z, dim=-1)
    p = logp.exp()
    right = -logp[rows, targets].mean()
    out = [
        ("no-log", "-mean(p[target]): the softmax without the log", -p[rows, targets].mean()),
        ("no-log", "mean(p[target]): the softmax without the log", p[rows, targets].mean()),
        ("no-log", "-log(mean(p[target])): the log taken after the mean", -p[rows, targets].mean().log()),
        ("sign", "mean(log p[target]): the log-likelihood, without the minus sign", -right),
        ("sum-not-mean", "the SUM of -log p[target] over the rows instead of the mean", right * N),
        (
            "wrong-axis",
            "a (log-)softmax over dim 0 (down the rows) instead of over each row",
            -F.log_softmax(z, dim=0)[rows, targets].mean(),
        ),
        (
            "wrong-index",
            "-logp[:, targets].mean(): every target's column for every row",
            -logp[:, targets].mean(),
        ),
        (
            "wrong-index",
            "-log p of each row's MOST LIKELY token, not of its target",
            -logp.max(-1).values.mean(),
        ),
        ("wrong-index", "the mean of -log p over every entry, not only the targets'", -logp.mean()),
        (
            "no-softmax",
            "-logits[target] averaged: the raw logits, with no log-softmax",
            -z[rows, targets].mean(),
        ),
    ]
    return out


def _ce_run(fn: Callable, logits: torch.Tensor, targets: torch.Tensor, what: str) -> Any:
    before_l, before_t = logits.detach().clone(), targets.clone()
    out = call(_CE, what, fn, logits, targets)
    if not torch.equal(logits.detach(), before_l) or not torch.equal(targets, before_t):
        raise CheckFailure(
            _CE,
            "in-place",
            f"{what} changed its input in place (e.g. logits -= logits.max(...)): the caller still needs the "
            "logits. Make a new tensor: z = logits - ...",
        )
    return out


def _ce_scalar(out: Any, N: int, what: str) -> torch.Tensor:
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        raise CheckFailure(
            _CE,
            "not-a-tensor",
            f"{what} returned the Python number {out:.4g}, not a tensor: .item() or float() cut the gradient "
            "that training needs. Return the 0-dim tensor.",
        )
    if isinstance(out, torch.Tensor) and out.dim() == 1 and out.numel() == N:
        raise CheckFailure(
            _CE,
            "no-mean",
            f"{what} returned {N} values, one per row: the loss is their mean, one number (a 0-dim tensor).",
        )
    return expect_tensor(_CE, what, out, shape=(), shape_names="(a 0-dim tensor: one number)")


def check_cross_entropy(cross_entropy: Any) -> None:
    """Check `cross_entropy(logits (N, V), targets (N,))` -> the mean of -log softmax(logits)[i, targets[i]]."""
    ex = _CE
    if isinstance(cross_entropy, type) or not callable(cross_entropy):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {cross_entropy!r:.80}.")
    with seeded(0):
        cases = [
            (2 * torch.randn(12, 7), torch.randint(7, (12,))),
            (torch.randn(5, 11), torch.randint(11, (5,))),
            (3 * torch.randn(1, 2), torch.tensor([1])),
        ]
    done = []
    for logits, targets in cases:
        N, V = logits.shape
        what = f"cross_entropy(logits {shape_str(logits)}, targets {shape_str(targets)})"
        out = _ce_run(cross_entropy, logits, targets, what)
        if isinstance(out, torch.Tensor) and out.dim() == 0 and not torch.isfinite(out):
            raise CheckFailure(
                ex, "nan", f"{what} returned {out.item()} for ordinary logits (between -8 and 8)."
            )
        out = _ce_scalar(out, N, what)
        want = F.cross_entropy(logits, targets)
        if not tensors_close(out, want, atol=1e-5, rtol=1e-4):
            for code, says, value in _ce_variants(logits, targets):
                if tensors_close(out, value, atol=1e-5, rtol=1e-4):
                    raise CheckFailure(
                        ex,
                        code,
                        f"{what} = {out.item():.4f}, which is {says}. The loss is {want.item():.4f}.",
                    )
            raise CheckFailure(
                ex,
                "wrong-values",
                f"{what} = {out.item():.4f}; F.cross_entropy gives {want.item():.4f}, and yours matches none of "
                "the usual mistakes. The loss is the mean over the rows of -log softmax(row)[target].",
            )
        done.append(f"({N}, {V})")

    # Huge logits: exp() overflows (or underflows to 0) unless each row's maximum is subtracted.
    with seeded(1):
        base = 4 * torch.randn(6, 9)
        targets = torch.randint(9, (6,))
    for logits, words in (
        (base + 1000.0, "logits around +1000"),
        (base - 1000.0, "logits around -1000"),
        (base * 300.0, "logits spread over ±3000"),
    ):
        what = f"cross_entropy on {words}"
        out = _ce_run(cross_entropy, logits, targets, what)
        if isinstance(out, torch.Tensor) and out.dim() == 0 and not torch.isfinite(out):
            raise CheckFailure(
                ex,
                "overflow",
                f"{what} returned {out.item()}, although the loss is {F.cross_entropy(logits, targets).item():.4f}: "
                "exp() of a large logit overflows to inf (exp(89) already does in float32), and of a very "
                "negative one underflows to 0, so inf / inf or log(0) appears.",
            )
        out = _ce_scalar(out, logits.size(0), what)
        want = F.cross_entropy(logits, targets)
        if not tensors_close(out, want, atol=1e-3, rtol=1e-4):
            raise CheckFailure(
                ex,
                "overflow",
                f"{what} = {out.item():.4f}, but the loss is {want.item():.4f}: large logits lose precision in "
                "your computation. Subtract each row's maximum before exp().",
            )

    # Gradients flow back to the logits: (softmax - one_hot) / N.
    logits, targets = cases[0]
    lg = logits.clone().requires_grad_()
    out = _ce_run(cross_entropy, lg, targets, "cross_entropy(logits, targets)")
    if not out.requires_grad:
        raise CheckFailure(
            ex,
            "no-grad",
            "your loss does not depend on the logits through torch operations (no gradient can flow): "
            "avoid .detach(), .data, numpy and .item() inside.",
        )
    call(ex, "backpropagating through your loss", out.backward)
    want = (F.softmax(logits, -1) - F.one_hot(targets, logits.size(1))) / logits.size(0)
    if lg.grad is None or not tensors_close(lg.grad, want, atol=1e-5, rtol=1e-3):
        raise CheckFailure(
            ex, "no-grad", "the gradient of your loss with respect to the logits is not right."
        )
    passed(
        ex,
        f"equals F.cross_entropy for logits of shapes {', '.join(done)}; stable for logits of ±1000 and "
        "beyond; gradient (softmax - one_hot) / N reaches the logits; inputs left untouched.",
    )


# ==== 5.2 gpt ======================================================================================

_GPT = "gpt"

register_hints(
    _GPT,
    levels=[
        "GPT is the parts you have, in a row: the embeddings (token + position), n_layer Blocks, a "
        "final LayerNorm and a Linear head from n_embd channels to vocab_size scores. forward returns "
        "(logits, loss), with loss None when no targets are given. Then set the initial weights as minGPT "
        "does.",
        "In __init__: self.embeddings = Embeddings(config); self.blocks = nn.ModuleList of config.n_layer "
        "Block(config); then either LMHead(config), or nn.LayerNorm(config.n_embd) and "
        "nn.Linear(config.n_embd, config.vocab_size, bias=False). Finish with self.apply(self._init_weights), "
        "where _init_weights(module) draws Linear and Embedding weights from N(0, 0.02) and zeroes Linear "
        "biases. In forward: x = embeddings(idx), x = block(x) for each block, logits = head(ln_f(x)), and the "
        "loss F.cross_entropy(logits.view(-1, V), targets.view(-1)) when targets is not None.",
        "__init__(self, config):\n"
        "    super().__init__()\n"
        "    self.embeddings = Embeddings(config)\n"
        "    self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])\n"
        "    self.ln_f = nn.LayerNorm(config.n_embd)\n"
        "    self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)\n"
        "    self.apply(self._init_weights)\n"
        "_init_weights(self, module):\n"
        "    if isinstance(module, (nn.Linear, nn.Embedding)):\n"
        "        nn.init.normal_(module.weight, mean=0.0, std=0.02)\n"
        "    if isinstance(module, nn.Linear) and module.bias is not None:\n"
        "        nn.init.zeros_(module.bias)\n"
        "forward(self, idx, targets=None):\n"
        "    x = self.embeddings(idx)                       # (B, T, C)\n"
        "    for block in self.blocks:\n"
        "        x = block(x)                         # (B, T, C)\n"
        "    logits = self.head(self.ln_f(x))         # (B, T, V)\n"
        "    loss = None\n"
        "    if targets is not None:\n"
        "        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))\n"
        "    return logits, loss",
    ],
    diagnoses={
        "returns-tensor": "forward returns two things: `return logits, loss` (loss is None without targets).",
        "wrong-return": "forward returns exactly (logits, loss).",
        "no-head": "finish with the head: nn.Linear(config.n_embd, config.vocab_size, bias=False) after the "
        "final LayerNorm gives one score per vocabulary token.",
        "flattened-logits": "return logits as (B, T, vocab_size); flatten a view only to compute the loss.",
        "loss-without-targets": "without targets there is nothing to compare with: loss = None.",
        "loss-not-mean": "F.cross_entropy averages by default; don't pass reduction='none' or 'sum'.",
        "loss-wrong": "loss = F.cross_entropy(logits.view(-1, V), targets.view(-1)): flatten B and T together "
        "for both.",
        "dropout-in-eval": "use nn.Dropout modules (gptlib's parts have them): they switch off in eval mode.",
        "head-bias": "minGPT's head has no bias: nn.Linear(config.n_embd, config.vocab_size, bias=False).",
        "no-final-ln": "add the final LayerNorm before the head: self.ln_f = nn.LayerNorm(config.n_embd), "
        "logits = self.head(self.ln_f(x)).",
        "no-position": "use gptlib's Embeddings (tokens AND positions), or add a position table of block_size "
        "rows yourself.",
        "tied-weights": "keep the head's weight separate from the token table (minGPT does not tie them; GPT-2 "
        "does): nn.Linear(C, V, bias=False) with its own weight.",
        "n-layer": "make config.n_layer blocks: nn.ModuleList([Block(config) for _ in range(config.n_layer)]).",
        "wrong-params": "the parts are: Embeddings (token + position tables), n_layer Blocks, a final "
        "LayerNorm and a bias-free Linear head.",
        "initial-loss": "apply minGPT's init at the end of __init__: self.apply(self._init_weights), with "
        "Linear/Embedding weights drawn from N(0, 0.02) and Linear biases set to zero.",
        "init": "apply minGPT's init at the end of __init__: self.apply(self._init_weights), with "
        "nn.init.normal_(module.weight, mean=0.0, std=0.02) for Linear and Embedding, and zero Linear biases.",
        "future-leak": "gptlib's Block and Embeddings are causal; check that nothing in forward mixes positions "
        "(e.g. a softmax, mean or norm over dim 1).",
        "blocks-unused": "assign each block's output back to x: `x = block(x)`; `block(x)` alone throws the result "
        "away.",
        "blocks-not-chained": "each block reads the previous block's output: `x = block(x)` inside the loop, "
        "not `y = block(x)`.",
        "probabilities": "return the raw scores (logits); F.cross_entropy and sampling apply the softmax "
        "themselves.",
        "log-probabilities": "return the raw head output (logits), not log_softmax of it.",
        "wrong-values": "compare your forward with the pseudocode hint line by line.",
        "no-dropout": "gptlib's Embeddings and Blocks drop out in train mode; keep them (do not call eval() "
        "in __init__ or set p=0).",
        "no-grad": "every parameter must be used in forward, and nothing detached.",
        "fixed-T": "slice what depends on T from idx.size(1): the embeddings do this for you.",
    },
)

# The check's config: V != block_size, so the token and position tables have different shapes.
_GPT_CONFIG = GPTConfig(vocab_size=65, block_size=8, n_layer=2, n_head=4, n_embd=32)


def _unpack(out: Any, what: str, B: int, T: int, config: GPTConfig) -> tuple[torch.Tensor, Any]:
    """(logits, loss) from a learner's forward, or a failure naming what came back instead."""
    V, C = config.vocab_size, config.n_embd
    if out is None:
        raise CheckFailure(_GPT, "returned-none", f"{what} returned None: is `return logits, loss` missing?")
    if isinstance(out, torch.Tensor):
        raise CheckFailure(
            _GPT,
            "returns-tensor",
            f"{what} returned one tensor of shape {shape_str(out)}; GPT's forward returns a pair: (logits, loss).",
        )
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        n = len(out) if isinstance(out, (tuple, list)) else type(out).__name__
        raise CheckFailure(_GPT, "wrong-return", f"{what} returned {n} items; expected (logits, loss).")
    logits, loss = out
    if isinstance(logits, torch.Tensor):
        if tuple(logits.shape) == (B, T, C) and C != V:
            raise CheckFailure(
                _GPT,
                "no-head",
                f"{what} returned logits of shape {shape_str(logits)} = (B, T, n_embd): the head that turns "
                f"{C} channels into {V} scores is missing.",
            )
        if tuple(logits.shape) == (B * T, V):
            raise CheckFailure(
                _GPT,
                "flattened-logits",
                f"{what} returned logits of shape {shape_str(logits)} = (B*T, V); expected {(B, T, V)} = (B, T, V).",
            )
    logits = expect_tensor(
        _GPT,
        f"the logits of {what}",
        logits,
        shape=(B, T, V),
        dtype=torch.float32,
        shape_names="(B, T, vocab_size)",
    )
    return logits, loss


def _not_probabilities(logits: torch.Tensor, what: str) -> None:
    """Logits are raw scores: fail if they are already (log-)probabilities."""
    if bool((logits >= 0).all()) and tensors_close(logits.sum(-1), torch.ones(logits.shape[:-1])):
        raise CheckFailure(
            _GPT,
            "probabilities",
            f"{what} returned probabilities (each row is >= 0 and sums to 1): softmax(logits). Return the logits.",
        )
    if tensors_close(torch.logsumexp(logits, -1), torch.zeros(logits.shape[:-1]), atol=1e-5, rtol=0):
        raise CheckFailure(
            _GPT,
            "log-probabilities",
            f"{what} returned log-probabilities (logsumexp of every row is 0): log_softmax(logits). Return the "
            "logits.",
        )


def _shape_key(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(1, T, C) and (T, C) are the same position table."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _format_counter(c: Counter) -> str:
    return ", ".join(
        f"{n} × {s}" if n > 1 else f"{s}" for s, n in sorted(c.items(), key=lambda kv: -math.prod(kv[0]))
    )


def _shape_listing(model: nn.Module) -> str:
    return "\n".join(f"    {n}: {tuple(p.shape)}" for n, p in model.named_parameters())


def _structure(model: nn.Module, ref: nn.Module, config: GPTConfig, name: str) -> None:
    """Same parameter shapes as gptlib.GPT, or a failure that names the part that differs."""
    V, T, C = config.vocab_size, config.block_size, config.n_embd
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if any(lin.weight is emb.weight for lin in linears for emb in tables):
        raise CheckFailure(
            _GPT,
            "tied-weights",
            f"your head's weight IS the token embedding's (weight tying, as GPT-2 does), so your {name} has "
            f"{V * C} parameters fewer than gptlib.GPT. minGPT keeps two separate {V} × {C} tables.",
        )
    found = Counter(_shape_key(p.shape) for p in model.parameters())
    expected = Counter(_shape_key(p.shape) for p in ref.parameters())
    if found == expected:
        return
    missing, extra = expected - found, found - expected
    n_found, n_expected = sum(p.numel() for p in model.parameters()), sum(p.numel() for p in ref.parameters())
    listing = (
        f"\nYour {name} has {n_found:,} parameters, gptlib.GPT {n_expected:,}."
        + (f"\nMissing: {_format_counter(missing)}." if missing else "")
        + (f"\nExtra: {_format_counter(extra)}." if extra else "")
        + f"\nExpected (gptlib.GPT):\n{_shape_listing(ref)}\nFound (yours):\n{_shape_listing(model)}"
    )
    if extra == Counter({(V,): 1}) and not missing:
        raise CheckFailure(_GPT, "head-bias", f"your head has a bias ({V} extra parameters)." + listing)
    if missing == Counter({(C,): 2}) and not extra:
        raise CheckFailure(
            _GPT,
            "no-final-ln",
            f"a LayerNorm ({C} gains and {C} biases) is missing: the final one, before the head?" + listing,
        )
    if missing == Counter({(T, C): 1}) and not extra:
        raise CheckFailure(_GPT, "no-position", f"there is no position table ({T}, {C})." + listing)
    if missing == Counter({(V, C): 1}) and not extra:
        raise CheckFailure(
            _GPT,
            "no-head",
            f"one of the two ({V}, {C}) tables is missing: the token embedding or the head." + listing,
        )
    n_blocks = sum(isinstance(m, _RefBlock) for m in model.modules())
    if n_blocks and n_blocks != config.n_layer:
        raise CheckFailure(
            _GPT,
            "n-layer",
            f"your {name} has {n_blocks} Blocks; config.n_layer is {config.n_layer}." + listing,
        )
    raise CheckFailure(_GPT, "wrong-params", "your parameters differ from gptlib.GPT's." + listing)


def _check_init(model: nn.Module, name: str, initial_loss: float, V: int) -> str:
    """minGPT's init: Linear/Embedding weights ~ N(0, 0.02), Linear biases 0; first loss near ln(V)."""
    off = []
    for n, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = m.weight.detach().std().item()
            if not 0.005 <= std <= 0.03:
                kind = type(m).__name__
                default = " (PyTorch's default)" if _looks_default(m) else ""
                off.append(f"{n or 'the model'} ({kind}) has weights with std {std:.3f}{default}")
        if isinstance(m, nn.Linear) and m.bias is not None and bool(m.bias.detach().abs().max() > 0):
            off.append(f"{n} has a non-zero bias")
    ln_v = math.log(V)
    if abs(initial_loss - ln_v) > 0.25:
        why = f" ({off[0]})" if off else ""
        raise CheckFailure(
            _GPT,
            "initial-loss",
            f"your fresh {name}'s loss is {initial_loss:.2f}, far from ln({V}) = {ln_v:.2f}, the loss of a model "
            f"that gives every token the same probability{why}. Did you skip the 0.02 init?",
        )
    if off:
        more = f" (and {len(off) - 3} more)" if len(off) > 3 else ""
        raise CheckFailure(
            _GPT,
            "init",
            f"your fresh {name} is not initialised as minGPT's: {'; '.join(off[:3])}{more}. Expected weights "
            "drawn from N(0, 0.02) and zero biases.",
        )
    return f"minGPT init; fresh loss {initial_loss:.2f} ≈ ln({V}) = {ln_v:.2f}"


def _looks_default(m: nn.Module) -> bool:
    std = m.weight.detach().std().item()
    if isinstance(m, nn.Embedding):
        return 0.8 < std < 1.2
    return math.isclose(std, 1 / math.sqrt(3 * m.in_features), rel_tol=0.15)


@dataclass
class _GPTParts:
    tok: torch.Tensor
    pos: torch.Tensor
    blocks: list[nn.Module]
    ln_f: nn.Module
    head: nn.Linear


def _outside(m: nn.Module, blocks: list[nn.Module]) -> bool:
    return not any(m is s for b in blocks for s in b.modules())


def _find_gpt_parts(model: nn.Module, config: GPTConfig, ref_block: nn.Module) -> _GPTParts | None:
    V, T, C, L = config.vocab_size, config.block_size, config.n_embd, config.n_layer
    mods = list(model.modules())
    blocks = [m for m in mods if isinstance(m, _RefBlock)]
    if len(blocks) != L:
        layout = [tuple(t.shape) for t in ref_block.state_dict().values()]
        blocks = []
        for m in mods:
            if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) == L:
                if all([tuple(t.shape) for t in b.state_dict().values()] == layout for b in m):
                    blocks = list(m)
                    break
        if len(blocks) != L:
            return None
    stems = [m for m in mods if isinstance(m, _RefEmbeddings)]
    if stems:
        tok, pos = stems[0].tok_emb.weight, stems[0].pos_emb
    else:
        toks = [
            m for m in mods if isinstance(m, nn.Embedding) and m.num_embeddings == V and _outside(m, blocks)
        ]
        pos_tables = [m.weight for m in mods if isinstance(m, nn.Embedding) and m.num_embeddings == T]
        pos_tables += [p for p in model.parameters() if _shape_key(p.shape) == (T, C)]
        if len(toks) != 1 or len({id(p) for p in pos_tables}) != 1:
            return None
        tok, pos = toks[0].weight, pos_tables[0]
    heads = [m for m in mods if isinstance(m, _RefHead)]
    if heads:
        ln_f, head = heads[0].ln_f, heads[0].proj
    else:
        norms = [m for m in mods if isinstance(m, nn.LayerNorm) and _outside(m, blocks)]
        outs = [
            m
            for m in mods
            if isinstance(m, nn.Linear) and tuple(m.weight.shape) == (V, C) and _outside(m, blocks)
        ]
        if len(norms) != 1 or len(outs) != 1:
            return None
        ln_f, head = norms[0], outs[0]
    return _GPTParts(tok, pos, blocks, ln_f, head)


def _copy_into(ref: _RefGPT, parts: _GPTParts, config: GPTConfig) -> None:
    T, C = config.block_size, config.n_embd
    with torch.no_grad():
        ref.embeddings.tok_emb.weight.copy_(parts.tok)
        ref.embeddings.pos_emb.copy_(parts.pos.reshape(1, T, C))
        for mine, theirs in zip(ref.blocks, parts.blocks, strict=True):
            mine.load_state_dict(dict(zip(mine.state_dict(), theirs.state_dict().values(), strict=True)))
        ref.head.ln_f.load_state_dict(parts.ln_f.state_dict())
        ref.head.proj.weight.copy_(parts.head.weight)


def _randomise(model: nn.Module) -> None:
    """Random weights everywhere (LayerNorm gains around 1), so a part that is skipped changes the logits.
    (minGPT's init leaves the position table at zero, where leaving it out would go unnoticed.)"""
    with seeded(11), torch.no_grad():
        for m in model.modules():
            for pn, p in m.named_parameters(recurse=False):
                if isinstance(m, nn.LayerNorm) and pn == "weight":
                    p.copy_(1 + 0.2 * torch.randn(p.shape))
                else:
                    p.copy_(0.1 * torch.randn(p.shape))


def _gpt_variants(ref: _RefGPT, idx: torch.Tensor) -> list[tuple[str, str, torch.Tensor]]:
    """Logits of known-wrong forwards, computed with gptlib's parts holding the learner's weights."""
    T = idx.size(1)
    tok = ref.embeddings.tok_emb(idx)
    pos = ref.embeddings.pos_emb[:, :T]
    ln_f, head = ref.head.ln_f, ref.head.proj

    def run_blocks(x: torch.Tensor) -> torch.Tensor:
        for b in ref.blocks:
            x = b(x)
        return x

    x = tok + pos
    right = head(ln_f(run_blocks(x)))
    return [
        ("no-position", "no position embedding added to the token embedding", head(ln_f(run_blocks(tok)))),
        ("no-final-ln", "the head applied without the final LayerNorm", head(run_blocks(x))),
        ("blocks-unused", "the blocks never applied (`block(x)` without `x = `)", head(ln_f(x))),
        (
            "blocks-not-chained",
            "only the last block applied to the embeddings (`y = block(x)` in the loop)",
            head(ln_f(ref.blocks[-1](x))),
        ),
        ("probabilities", "softmax(logits): probabilities instead of logits", F.softmax(right, -1)),
        ("log-probabilities", "log_softmax(logits) instead of the logits", F.log_softmax(right, -1)),
    ]


def check_gpt(GPT: Any) -> None:
    """Check `GPT(config)`: forward(idx, targets=None) -> (logits (B, T, V), loss or None), minGPT's init,
    causal, the parameters and logits of gptlib.GPT given the learner's weights."""
    with torch.random.fork_rng(devices=[]):  # the notebook's random stream stays as it was
        _check_gpt(GPT)


def _check_gpt(GPT: Any) -> None:
    ex, config = _GPT, _GPT_CONFIG
    V, T = config.vocab_size, config.block_size
    name = getattr(GPT, "__name__", "GPT")
    with seeded(0):
        model = build_module(ex, GPT, config)
        idx = torch.randint(V, (4, T))
        targets = torch.randint(V, (4, T))
        ref = _RefGPT(config).eval()
    B = idx.size(0)
    model.eval()

    def forward(inp: torch.Tensor, tgt: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        what = f"{name}.forward(idx of shape {shape_str(inp)}" + (", targets)" if tgt is not None else ")")
        before = inp.clone()
        out = call(ex, what, model, inp) if tgt is None else call(ex, what, model, inp, tgt)
        if not torch.equal(inp, before):
            raise CheckFailure(ex, "in-place", f"{what} changed idx in place.")
        return _unpack(out, what, inp.size(0), inp.size(1), config)

    with torch.no_grad():
        logits, loss = forward(idx)
        if loss is not None:
            raise CheckFailure(
                ex,
                "loss-without-targets",
                f"{name}.forward(idx) without targets returned a loss ({loss!r:.60}); expected None.",
            )
        _not_probabilities(logits, f"{name}.forward(idx)")
        logits2, loss = forward(idx, targets)
        what = f"the loss of {name}.forward(idx, targets)"
        if isinstance(loss, torch.Tensor) and loss.dim() > 0:
            raise CheckFailure(
                ex, "loss-not-mean", f"{what} has shape {shape_str(loss)}; expected one number (the mean)."
            )
        loss = expect_tensor(ex, what, loss, shape=())
        if not tensors_close(logits, logits2, atol=1e-6, rtol=1e-5):
            raise CheckFailure(
                ex,
                "dropout-in-eval",
                f"two calls of {name}.forward on the same idx in eval mode gave different "
                "logits: dropout is still on.",
            )
        want = F.cross_entropy(logits2.reshape(-1, V), targets.reshape(-1))
        if not tensors_close(loss, want, atol=1e-5, rtol=1e-4):
            code, says = "loss-wrong", ""
            if tensors_close(loss, want * B * T, atol=1e-3, rtol=1e-4):
                code, says = "loss-not-mean", " It is the SUM over the B*T positions, not the mean."
            raise CheckFailure(
                ex,
                code,
                f"{what} is {loss.item():.4f}; F.cross_entropy of your logits against the targets is "
                f"{want.item():.4f}.{says}",
            )
        _structure(model, ref, config, name)
        verified = [
            f"returns (logits {(B, T, V)}, loss), loss None without targets",
            "parameters as gptlib.GPT's",
        ]
        verified.append(_check_init(model, name, want.item(), V))

        moved = _future_leak(lambda i: forward(i)[0], idx, V)
        if moved:
            t0 = T // 2
            raise CheckFailure(
                ex,
                "future-leak",
                f"future tokens leak: changing the tokens at positions {t0}..{T - 1} changed the logits at earlier "
                f"positions {moved}.",
            )
        verified.append("causal")

        parts = _find_gpt_parts(model, config, ref.blocks[0])
        if parts is None:
            raise CheckFailure(
                ex,
                "wrong-params",
                f"I could not find the parts of your {name}: expected Embeddings (or an nn.Embedding of "
                f"{V} rows and a position table of {T} rows), {config.n_layer} gptlib Blocks, one final "
                f"nn.LayerNorm and an nn.Linear({config.n_embd}, {V}) head (or gptlib's LMHead).\n"
                f"Found:\n{_shape_listing(model)}",
            )
        _randomise(model)
        _copy_into(ref, parts, config)
        for inp in (idx, idx[:, : T - 3], idx[:, :1]):
            what = f"{name}.forward(idx of shape {shape_str(inp)})"
            got, _ = forward(inp)
            want = ref(inp)[0]
            if tensors_close(got, want):
                continue
            for code, says, value in _gpt_variants(ref, inp):
                if tensors_close(got, value):
                    raise CheckFailure(ex, code, f"with your weights, {what} matches {says}.")
            raise CheckFailure(
                ex,
                "wrong-values",
                f"with your weights copied into gptlib.GPT, {what}: {fraction_close(got, want):.0%} of the logits "
                f"match (largest difference {max_diff(got, want):.3g}).",
            )
        verified.append("same logits as gptlib.GPT with your weights for T = 1, 5 and 8")

    _, loss = forward(idx, targets)
    call(ex, "loss.backward()", loss.backward)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise CheckFailure(ex, "no-grad", f"no gradient reaches {missing[:6]}: forward never uses them.")
    verified.append("gradients reach every parameter")
    model.train()
    with seeded(4), torch.no_grad():
        a, b = forward(idx)[0], forward(idx)[0]
    if tensors_close(a, b, atol=1e-6, rtol=1e-5):
        raise CheckFailure(
            ex, "no-dropout", f"{name} in train mode gave the same logits twice: no dropout anywhere."
        )
    verified.append("dropout in train mode only")
    passed(ex, "; ".join(verified) + ".")


def _future_leak(forward: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor, V: int) -> list[int]:
    T = idx.size(1)
    t0 = T // 2
    idx2 = idx.clone()
    idx2[:, t0:] = (idx2[:, t0:] + 1 + torch.arange(T - t0)) % V
    a, b = forward(idx), forward(idx2)
    return [t for t in range(t0) if not tensors_close(a[:, t], b[:, t], atol=1e-6, rtol=1e-5)]


# ==== 5.3 count_parameters =========================================================================

_COUNT = "count_parameters"

register_hints(
    _COUNT,
    levels=[
        "Count part by part, as printed by model.named_parameters(): the token table, the position table, "
        "one block (attention, MLP, two LayerNorms) times n_layer, the final LayerNorm, the head. A "
        "Linear(a, b) has a * b weights plus b biases; a LayerNorm over C channels has C gains and C biases.",
        "Token table V*C and head V*C (no bias); positions T*C. One block: attention = 4 Linear(C, C) = "
        "4*C*C + 4*C; MLP = Linear(C, 4C) + Linear(4C, C) = 8*C*C + 4*C + C; two LayerNorms = 4*C. Final "
        "LayerNorm 2*C.",
        "def count_parameters(V, T, L, C):\n"
        "    attention = 4 * C * C + 4 * C\n"
        "    mlp = 8 * C * C + 5 * C\n"
        "    block = attention + mlp + 4 * C      # + two LayerNorms\n"
        "    return V * C + T * C + L * block + 2 * C + V * C",
    ],
    diagnoses={
        "head-missing": "there are TWO V*C tables: the token embedding and the head (minGPT does not tie them).",
        "head-bias": "the head has no bias: V*C, not V*C + V.",
        "no-position": "add the position table: block_size rows of n_embd, T*C.",
        "no-final-ln": "add the final LayerNorm before the head: 2*C (a gain and a bias per channel).",
        "layernorm-count": "a LayerNorm over C channels has 2*C parameters (gain and bias), and each block "
        "has two of them.",
        "biases": "every Linear in a block has a bias: 4*C for the attention's four, 4*C + C for the MLP's two.",
        "attention-count": "attention has four C x C Linears (query, key, value and the output projection), "
        "each with a bias: 4*C*C + 4*C.",
        "mlp-count": "the MLP is Linear(C, 4C) then Linear(4C, C): 4*C*C + 4*C and 4*C*C + C.",
        "layer-count": "multiply one block's count by n_layer exactly (not n_layer - 1 or + 1).",
        "wrong-values": "print sum(p.numel() for p in part.parameters()) for each part of a small GPT and "
        "compare with your terms one by one.",
        "not-a-number": "return one int: the total.",
    },
)


@functools.lru_cache(maxsize=32)
def _true_count(V: int, T: int, L: int, C: int) -> int:
    """gptlib.GPT(config).num_parameters() (small configs: built in milliseconds; the global RNG is restored)."""
    with torch.random.fork_rng(devices=[]):
        model = _RefGPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=1, n_embd=C))
    return model.num_parameters()


# Deltas (learner's count - true count) of the usual mistakes, as functions of (V, T, L, C).
_COUNT_MISTAKES: list[tuple[str, str, Callable[[int, int, int, int], int]]] = [
    (
        "head-missing",
        "one of the two V × C tables (token embedding, head) is missing",
        lambda V, T, L, C: -V * C,
    ),
    ("head-bias", "the head counted with a bias (+V)", lambda V, T, L, C: V),
    ("no-position", "the position table (T × C) is missing", lambda V, T, L, C: -T * C),
    ("no-final-ln", "the final LayerNorm (2C) is missing", lambda V, T, L, C: -2 * C),
    ("no-final-ln", "the final LayerNorm counted as C instead of 2C", lambda V, T, L, C: -C),
    ("layernorm-count", "the blocks' LayerNorms (4C per block) are missing", lambda V, T, L, C: -4 * C * L),
    ("layernorm-count", "each block's LayerNorms counted as 2C instead of 4C", lambda V, T, L, C: -2 * C * L),
    ("biases", "the attention's biases (4C per block) are missing", lambda V, T, L, C: -4 * C * L),
    ("biases", "the MLP's biases (5C per block) are missing", lambda V, T, L, C: -5 * C * L),
    ("biases", "all the blocks' biases (9C per block) are missing", lambda V, T, L, C: -9 * C * L),
    (
        "attention-count",
        "the attention's output projection (C² + C per block) is missing",
        lambda V, T, L, C: -(C * C + C) * L,
    ),
    (
        "attention-count",
        "the attention (4C² + 4C per block) is missing",
        lambda V, T, L, C: -(4 * C * C + 4 * C) * L,
    ),
    ("mlp-count", "the MLP (8C² + 5C per block) is missing", lambda V, T, L, C: -(8 * C * C + 5 * C) * L),
    (
        "mlp-count",
        "an MLP with a hidden layer of C instead of 4C",
        lambda V, T, L, C: -(6 * C * C + 3 * C) * L,
    ),
    (
        "mlp-count",
        "the MLP counted as 4C² + 5C (one C × 4C matrix, not two)",
        lambda V, T, L, C: -(4 * C * C) * L,
    ),
    ("layer-count", "one block too few (n_layer - 1)", lambda V, T, L, C: -(12 * C * C + 13 * C)),
    ("layer-count", "one block too many (n_layer + 1)", lambda V, T, L, C: 12 * C * C + 13 * C),
]

_COUNT_POINTS = [
    (65, 8, 2, 32),
    (66, 8, 2, 32),
    (65, 9, 2, 32),
    (65, 8, 3, 32),
    (65, 8, 2, 48),
    (11, 16, 1, 16),
    (300, 64, 4, 64),
]
_GPT2_SMALL = (50257, 1024, 12, 768)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        raise CheckFailure(_COUNT, "not-a-number", f"{what} returned {value!r:.60}; expected an int.")
    if isinstance(value, float):
        if not value.is_integer():
            raise CheckFailure(_COUNT, "not-a-number", f"{what} returned {value}, not a whole number.")
        value = int(value)
    return int(value)


def check_count_parameters(count_parameters: Any) -> None:
    """Check `count_parameters(vocab_size, block_size, n_layer, n_embd)` == GPT(config).num_parameters()."""
    ex = _COUNT
    if isinstance(count_parameters, type) or not callable(count_parameters):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {count_parameters!r:.80}.")
    got, true = {}, {}
    for point in _COUNT_POINTS:
        what = "count_parameters(V={}, T={}, L={}, C={})".format(*point)
        got[point] = _as_int(call(ex, what, count_parameters, *point), what)
        true[point] = _true_count(*point)
    if got == true:
        what = "count_parameters(V={}, T={}, L={}, C={})".format(*_GPT2_SMALL)
        gpt2 = _as_int(call(ex, what, count_parameters, *_GPT2_SMALL), what)
        passed(
            ex,
            f"equals GPT(config).num_parameters() on {len(_COUNT_POINTS)} configs. For GPT-2 small's sizes "
            f"(V, T, L, C = {', '.join(map(str, _GPT2_SMALL))}) your formula gives {gpt2:,} (with an untied head).",
        )
        return
    delta = {p: got[p] - true[p] for p in _COUNT_POINTS}
    singles = [(code, says, fn) for code, says, fn in _COUNT_MISTAKES]
    for code, says, fn in singles:
        if all(fn(*p) == delta[p] for p in _COUNT_POINTS):
            raise CheckFailure(
                ex, code, f"your count is off by {_delta_words(delta)}: {says}." + _per_part(got)
            )
    for (c1, s1, f1), (_, s2, f2) in itertools.combinations(singles, 2):
        if all(f1(*p) + f2(*p) == delta[p] for p in _COUNT_POINTS):
            raise CheckFailure(
                ex,
                c1,
                f"your count is off by {_delta_words(delta)}: two things at once: {s1}; and {s2}."
                + _per_part(got),
            )
    raise CheckFailure(ex, "wrong-values", f"your count is off by {_delta_words(delta)}." + _per_part(got))


def _delta_words(delta: dict) -> str:
    p = _COUNT_POINTS[0]
    return f"{delta[p]:+,} for V={p[0]}, T={p[1]}, L={p[2]}, C={p[3]}"


def _per_part(got: dict) -> str:
    """Which part of the formula is off: per vocabulary token, per position, per layer, and the rest."""
    base = _COUNT_POINTS[0]
    V, T, L, C = base
    rows = [
        (
            "each extra vocabulary token",
            got[(V + 1, T, L, C)] - got[base],
            2 * C,
            "2C: a row of the token table and a row of the head",
        ),
        ("each extra position", got[(V, T + 1, L, C)] - got[base], C, "C: a row of the position table"),
        (
            "each extra layer",
            got[(V, T, L + 1, C)] - got[base],
            12 * C * C + 13 * C,
            "12C² + 13C: attention 4C² + 4C, MLP 8C² + 5C, two LayerNorms 4C",
        ),
    ]
    lines = [
        f"\n  - {what}: yours adds {mine:,}, it should add {right:,} = {why}"
        for what, mine, right, why in rows
        if mine != right
    ]
    rest = got[base] - (V * 2 * C + T * C + L * (12 * C * C + 13 * C))
    if rest != 2 * C and not lines:
        lines.append(
            f"\n  - the rest (the final LayerNorm) is {rest:,} in yours; it should be 2C = {2 * C:,}"
        )
    return ("\nFor V, T, L, C = " + f"{V}, {T}, {L}, {C}:" + "".join(lines)) if lines else ""
