"""The attention checks' reference (lessons 02, 04, 07): attention written as one function, right and in
known-wrong ways.

`reference_attention(x, weights, n_head)` is gptlib.CausalSelfAttention as a
function of its weights (tests/test_checks_attention.py holds them equal). Its
keyword arguments switch on one mistake at a time (no scale, softmax over the
wrong axis, no mask, heads merged without the transpose, no projection, ...),
so a check can tell which mistake a learner's output matches.

`find_projections(module, ...)` reads a learner's query/key/value/output
projections from their layers (through the learner boundary), whatever the
layout: separate Linears (minGPT), one fused Linear(C, 3C) (nanoGPT), one Linear
per head (Karpathy's lecture), or nn.MultiheadAttention. The check copies the
LEARNER's weights into the reference, so bias-free and fused variants compare
exactly. `scale_mistakes` and `fit_scale` name a wrong scale of the scores.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks import codes as C
from gptlib.checks.engine import Mistake, close, max_diff
from gptlib.checks.learner import Ref, backend


@dataclass(frozen=True)
class AttentionWeights:
    """Projection weights as nn.Linear stores them, (out, in); a missing bias is None.

    wq, wk, wv: (width, C) with width = n_head * head_size. wo: (C, width) or None (a single Head)."""

    wq: torch.Tensor
    bq: torch.Tensor | None
    wk: torch.Tensor
    bk: torch.Tensor | None
    wv: torch.Tensor
    bv: torch.Tensor | None
    wo: torch.Tensor | None = None
    bo: torch.Tensor | None = None
    source: str = ""  # where they came from, in words, for messages

    def swapped_qk(self) -> AttentionWeights:
        return replace(self, wq=self.wk, bq=self.bk, wk=self.wq, bk=self.bq)


def load_weights(attn: nn.Module, w: AttentionWeights) -> None:
    """Copy w into a gptlib.CausalSelfAttention's query, key, value and proj layers (a missing bias as
    zeros). Call it under torch.no_grad()."""
    for layer, weight, bias in (
        (attn.query, w.wq, w.bq),
        (attn.key, w.wk, w.bk),
        (attn.value, w.wv, w.bv),
        (attn.proj, w.wo, w.bo),
    ):
        layer.weight.copy_(weight)
        layer.bias.copy_(bias) if bias is not None else layer.bias.zero_()


# Which part of the mask is allowed (True = a query may look at that key).
MASKS = ("causal", "none", "strict", "upper", "inverted")


def allowed_keys(T: int, mask: str = "causal") -> torch.Tensor:
    """(T, T) bool: row = query position, column = key position."""
    ones = torch.ones(T, T, dtype=torch.bool)
    if mask == "causal":
        return torch.tril(ones)  # keys 0..t: the past and the present
    if mask == "none":
        return ones
    if mask == "strict":
        return torch.tril(ones, diagonal=-1)  # the past only: row 0 has nothing left
    if mask == "upper":
        return torch.triu(ones)  # the mask flipped: the present and the future
    if mask == "inverted":
        return ~torch.tril(ones)  # masked_fill(tril == 1): the future only; the last row has nothing left
    raise ValueError(f"unknown mask {mask!r}; one of {MASKS}.")


def attention_weights(
    scores: torch.Tensor,
    *,
    mask: str = "causal",
    softmax_dim: int = -1,
    fill: float = float("-inf"),
    mask_after: str | None = None,
) -> torch.Tensor:
    """Scores (..., T, T) -> weights (..., T, T). Right by default; each keyword is one known mistake.

    mask_after="zero": softmax first, then zero the future (rows no longer sum to 1);
    mask_after="inf": softmax first, then fill the future with -inf."""
    allowed = allowed_keys(scores.size(-1), mask)
    if mask_after == "zero":
        return F.softmax(scores, dim=softmax_dim).masked_fill(~allowed, 0.0)
    if mask_after == "inf":
        return F.softmax(scores, dim=softmax_dim).masked_fill(~allowed, float("-inf"))
    return F.softmax(scores.masked_fill(~allowed, fill), dim=softmax_dim)


def split_heads(t: torch.Tensor, n_head: int, how: str = "transpose") -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs). Mistakes: how="view" reshapes without the transpose; "interleave" gives
    channel c to head c % n_head."""
    B, T, C = t.shape
    if how == "transpose":
        return t.view(B, T, n_head, C // n_head).transpose(1, 2)
    if how == "view":
        return t.reshape(B, n_head, T, C // n_head)
    if how == "interleave":
        return t.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)
    raise ValueError(f"unknown split {how!r}.")


def merge_heads(y: torch.Tensor, how: str = "transpose") -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs), head 0's channels first. Other values of `how` are mistakes:
    "view" skips the transpose, "interleave" puts channel 0 of every head first."""
    B, nh, T, hs = y.shape
    if how == "transpose":
        return y.transpose(1, 2).reshape(B, T, nh * hs)
    if how == "view":
        return y.reshape(B, T, nh * hs)
    if how == "interleave":
        return y.permute(0, 2, 3, 1).reshape(B, T, nh * hs)
    raise ValueError(f"unknown merge {how!r}.")


def reference_attention(
    x: torch.Tensor,
    w: AttentionWeights,
    n_head: int,
    *,
    scale: float | None = None,
    softmax_dim: int = -1,
    mask: str = "causal",
    fill: float = float("-inf"),
    mask_after: str | None = None,
    split: str = "transpose",
    merge: str = "transpose",
    proj: bool = True,
    swap_qk: bool = False,
    heads: int | None = None,
    output: str = "y",
    dropout: str | None = None,
    p: float = 0.0,
    scale_after: bool = False,
) -> torch.Tensor:
    """Causal self-attention (B, T, C) -> (B, T, C), or (B, T, head_size) for a single head (w.wo None).

    With the defaults this is gptlib.CausalSelfAttention in eval mode. scale=None means
    1/sqrt(head_size); the other keywords each switch on one mistake: heads (the number of heads used,
    e.g. 1: one head of full width), output="weights" (the weights returned instead of the output).
    dropout: a mistake, "scores", "values" or "input", drops there with rate p, drawing its mask from torch's
    RNG as nn.Dropout does. scale_after: the scale applied to the weights
    after the softmax instead of to the scores."""
    n_head = heads or n_head
    if swap_qk:
        w = w.swapped_qk()
    if dropout == "input":
        x = F.dropout(x, p)
    q = split_heads(F.linear(x, w.wq, w.bq), n_head, split)  # (B, nh, T, hs)
    k = split_heads(F.linear(x, w.wk, w.bk), n_head, split)  # (B, nh, T, hs)
    v = split_heads(F.linear(x, w.wv, w.bv), n_head, split)  # (B, nh, T, hs)
    if dropout == "values":
        v = F.dropout(v, p)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    scores = (q @ k.transpose(-2, -1)) * (1.0 if scale_after else scale)  # (B, nh, T, T)
    if dropout == "scores":
        scores = F.dropout(scores, p)
    att = attention_weights(scores, mask=mask, softmax_dim=softmax_dim, fill=fill, mask_after=mask_after)
    if scale_after:
        att = att * scale
    if output == "weights":
        return att[:, 0] if n_head == 1 else att
    y = merge_heads(att @ v, merge)  # (B, T, width)
    if proj and w.wo is not None:
        y = F.linear(y, w.wo, w.bo)
    return y


# ---- reading a learner's projections -------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # compared by identity: two layers may hold equal weights
class Projection:
    """One linear map found in a learner's module: weight (out, in), bias (out) or None."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None

    def describe(self) -> str:
        out, inp = self.weight.shape
        return f"{self.name}: Linear({inp}, {out}, bias={self.bias is not None})"


# The last part of a layer's name -> its role. q/k/v come before "o" so that q_proj is a query.
_ROLES = (
    ("qkv", r"qkv|kqv|c_attn|in_proj|fused"),
    ("q", r"(^|_)(w_?)?q(_|$|\d)|quer"),
    ("k", r"(^|_)(w_?)?k(_|$|\d)|key"),
    ("v", r"(^|_)(w_?)?v(_|$|\d)|val"),
    ("o", r"proj|(^|_)(w_?)?o(_|$)|out|dense"),
)


def role_of(name: str) -> str | None:
    """'heads.0.key' -> 'k', 'c_proj' -> 'o', 'lin1' -> None."""
    last = name.rsplit(".", 1)[-1].lower()
    for role, pattern in _ROLES:
        if re.search(pattern, last):
            return role
    return None


def projections(module: Ref) -> list[Projection]:
    """Every nn.Linear of a learner's module (and nn.MultiheadAttention's fused input projection), in
    registration order, with copies of their weights."""
    params = backend().parameters(module)
    found = []
    for sub in backend().modules(module):
        if sub.info.isa(nn.Linear) and "weight" in sub.params:
            found.append(
                Projection(sub.path, params[sub.params["weight"]], params.get(sub.params.get("bias", "")))
            )
        elif sub.info.isa(nn.MultiheadAttention) and "in_proj_weight" in sub.params:
            bias = params.get(sub.params.get("in_proj_bias", ""))
            found.append(Projection(f"{sub.path}.in_proj", params[sub.params["in_proj_weight"]], bias))
    return found


def _cat(parts: list[Projection]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-head projections side by side, as one (width, C) projection (head 0 first)."""
    weight = torch.cat([p.weight for p in parts], dim=0)
    if all(p.bias is None for p in parts):
        return weight, None
    biases = [p.bias if p.bias is not None else p.weight.new_zeros(p.weight.size(0)) for p in parts]
    return weight, torch.cat(biases)


@dataclass
class ProjectionSearch:
    """Candidate readings of a learner's layers, the most likely first.

    by_name: the first candidate follows the layers' names (False: names did not tell,
    candidates are every assignment that fits the shapes)."""

    candidates: list[AttentionWeights]
    by_name: bool
    found: list[Projection]


def find_projections(module: Ref, n_embd: int, width: int, with_proj: bool) -> ProjectionSearch:
    """Read query/key/value (each (width, n_embd)) and, if with_proj, the output (n_embd, width)."""
    found = projections(module)
    q_like = [p for p in found if tuple(p.weight.shape[1:]) == (n_embd,)]
    outs = [p for p in found if tuple(p.weight.shape) == (n_embd, width)]
    named_outs = [p for p in outs if role_of(p.name) == "o"]
    candidates: list[AttentionWeights] = []
    by_name = False

    def with_out(q, k, v, used: list[Projection], source: str) -> list[AttentionWeights]:
        if not with_proj:
            return [AttentionWeights(*q, *k, *v, source=source)]
        free = [p for p in outs if all(p is not u for u in used)]
        choices = [p for p in named_outs if any(p is f for f in free)] or free
        return [AttentionWeights(*q, *k, *v, o.weight, o.bias, source=source) for o in choices]

    # 1. Separate projections named query/key/value (one each, or one per head).
    groups = {r: [p for p in q_like if role_of(p.name) == r] for r in ("q", "k", "v")}
    if all(groups.values()) and all(sum(p.weight.size(0) for p in g) == width for g in groups.values()):
        q, k, v = (_cat(groups[r]) for r in ("q", "k", "v"))
        used = groups["q"] + groups["k"] + groups["v"]
        candidates += with_out(q, k, v, used, "your query/key/value layers, by name")
        by_name = bool(candidates)
    # 2. One fused projection (n_embd -> 3 * width): q, k, v in that order first (nanoGPT's), then others.
    fused = [p for p in q_like if p.weight.size(0) == 3 * width]
    if len(fused) == 1:
        f = fused[0]
        bias = f.bias.chunk(3) if f.bias is not None else (None, None, None)
        parts = list(zip(f.weight.chunk(3), bias, strict=True))
        for order in itertools.permutations(range(3)):
            q, k, v = (parts[i] for i in order)
            source = f"your fused {f.name} split as {''.join('qkv'[i] for i in order)}"
            candidates += with_out(q, k, v, [f], source)
        by_name = by_name or role_of(f.name) == "qkv"
    # 3. Names do not tell: every assignment of three (width, n_embd) layers (and an output) that fits.
    if not candidates:
        singles = [p for p in q_like if p.weight.size(0) == width]
        for trio in itertools.permutations(singles, 3):
            q, k, v = ((p.weight, p.bias) for p in trio)
            names = ", ".join(f"{r}={p.name}" for r, p in zip("qkv", trio, strict=True))
            candidates += with_out(q, k, v, list(trio), f"your layers read as {names}")
    return ProjectionSearch(candidates, by_name, found)


def expected_layouts(n_embd: int, width: int, n_head: int, with_proj: bool) -> list[str]:
    """The layouts find_projections understands, in words, for a 'wrong parameters' message."""
    out = f", and an output projection Linear({width}, {n_embd}) (e.g. proj, c_proj, out_proj)" * with_proj
    layouts = [
        f"query, key, value: Linear({n_embd}, {width}) each, bias optional{out}",
        f"one fused Linear({n_embd}, {3 * width}) holding q, k, v (e.g. c_attn){out}",
    ]
    if n_head > 1:
        layouts.append(
            f"one Linear({n_embd}, {width // n_head}) per head for each of query/key/value "
            f"(e.g. heads[i].query){out}"
        )
    return layouts


# ---- the scale of the scores (lessons 02 and 07) ---------------------------------------------------


def scale_words(scale: float, right: float) -> str:
    """How far a scale is from the right one, in words: "off by a factor of 2.83, too large"."""
    ratio = scale / right
    size = "too small" if ratio < 1 else "too large"
    return f"off by a factor of {max(ratio, 1 / ratio):.2f}, {size}"


# The weights' mistakes that lessons 02 and 07 name in the same words (each check's table places them).
SOFTMAX_OVER_QUERIES = Mistake(C.SOFTMAX_AXIS, "a softmax over dim -2 (the queries): each COLUMN sums to 1 "
                               "instead of each row", {"softmax_dim": -2})  # fmt: skip
FILL_ZERO = Mistake(C.MASK_FILL_ZERO, "the future filled with 0 instead of -inf: exp(0) = 1, so every later key "
                    "still gets weight", {"fill": 0.0})  # fmt: skip


def scale_mistakes(n_embd: int, head_size: int) -> list[Mistake]:
    """The scales learners use for attention scores by mistake, each as a Mistake with the keyword `scale`
    (the right one is 1/sqrt(head_size); a "mistake" equal to it or to an earlier one is left out)."""
    right = 1 / math.sqrt(head_size)
    named = [
        (1.0, C.MISSING_SCALE, "scores that are not scaled at all"),
        (1 / math.sqrt(n_embd), C.WRONG_SCALE, f"scores scaled by 1/sqrt(n_embd) = 1/sqrt({n_embd})"),
        (1 / head_size, C.WRONG_SCALE, f"scores scaled by 1/head_size = 1/{head_size} (no square root)"),
        (1 / n_embd, C.WRONG_SCALE, f"scores scaled by 1/n_embd = 1/{n_embd}"),
        (math.sqrt(head_size), C.WRONG_SCALE, f"scores multiplied by sqrt(head_size) = sqrt({head_size})"),
    ]
    mistakes, seen = [], {right}
    for scale, code, words in named:
        if any(math.isclose(scale, s) for s in seen):
            continue  # e.g. n_embd == head_size: that "mistake" is the right scale
        seen.add(scale)
        says = (
            f"{words} ({scale:.3g} instead of 1/sqrt(head_size) = 1/sqrt({head_size}) = {right:.3g}: "
            f"{scale_words(scale, right)})"
        )
        mistakes.append(Mistake(code, says, {"scale": scale}))
    return mistakes


def fit_scale(out: torch.Tensor, compute: Callable[..., torch.Tensor]) -> float | None:
    """The scale s for which compute(scale=s) reproduces `out`, if there is one (a log grid, then a
    golden-section search)."""

    def err(log_s: float) -> float:
        return max_diff(compute(scale=math.exp(log_s)), out)

    with torch.no_grad():
        grid = [math.log(10) * (-4 + 6 * i / 60) for i in range(61)]  # 1e-4 .. 1e2
        errors = [err(g) for g in grid]
        i = min(range(len(grid)), key=errors.__getitem__)
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        golden = (math.sqrt(5) - 1) / 2
        for _ in range(40):  # golden-section search inside the best grid cell
            a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
            if err(a) < err(b):
                hi = b
            else:
                lo = a
        best = math.exp((lo + hi) / 2)
        return best if close(compute(scale=best), out, loose=True) else None
