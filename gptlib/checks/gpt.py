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
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.block import Block as _RefBlock
from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    Tree,
    find_mistake,
    fraction_close,
    match,
    max_diff,
    seeded,
    set_parameters,
    shape_str,
    tensors_close,
    train,
    type_name,
)
from gptlib.checks.learner import Backward, Ref
from gptlib.checks.probes import (
    deterministic,
    dropout_active,
    expect_callable,
    expect_tensor,
    future_leak,
    gradients,
    leaks,
    untouched,
)
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings as _RefEmbeddings
from gptlib.head import LMHead as _RefHead
from gptlib.model import GPT as _RefGPT

__all__ = ["check_cross_entropy", "check_gpt", "check_count_parameters"]


# ==== 5.1 cross_entropy =============================================================================

CROSS_ENTROPY = Exercise(
    "cross_entropy",
    [C.NOT_CALLABLE, C.NO_LOG, C.SIGN, C.NO_MEAN, C.SUM_NOT_MEAN, C.WRONG_AXIS, C.WRONG_INDEX, C.NO_SOFTMAX,
     C.LOG2, C.OVERFLOW, C.NO_GRAD, C.IN_PLACE, C.WRONG_VALUES, *C.TENSOR],
)  # fmt: skip


def _ce(logits: torch.Tensor, targets: torch.Tensor, kind: str = "right") -> torch.Tensor:
    """Cross-entropy in float64, or one of the usual wrong losses."""
    z = logits.detach().double()
    rows = torch.arange(z.size(0))
    logp = F.log_softmax(z, dim=-1)
    p = logp.exp()
    right = -logp[rows, targets].mean()
    return {
        "right": lambda: right,
        "-p": lambda: -p[rows, targets].mean(),
        "p": lambda: p[rows, targets].mean(),
        "-log(mean p)": lambda: -p[rows, targets].mean().log(),
        "sign": lambda: -right,
        "sum": lambda: right * z.size(0),
        "dim0": lambda: -F.log_softmax(z, dim=0)[rows, targets].mean(),
        "columns": lambda: -logp[:, targets].mean(),
        "argmax": lambda: -logp.max(-1).values.mean(),
        "all": lambda: -logp.mean(),
        "raw": lambda: -z[rows, targets].mean(),
        "shifted": lambda: -(z - z.max(-1, keepdim=True).values)[rows, targets].mean(),
        "log2": lambda: right / math.log(2),
    }[kind]()


_CE_MISTAKES = [
    Mistake(C.NO_LOG, "-mean(p[target]): the softmax without the log", {"kind": "-p"}),
    Mistake(C.NO_LOG, "mean(p[target]): the softmax without the log", {"kind": "p"}),
    Mistake(C.NO_LOG, "-log(mean(p[target])): the log taken after the mean", {"kind": "-log(mean p)"}),
    Mistake(C.SIGN, "mean(log p[target]): the log-likelihood, without the minus sign", {"kind": "sign"}),
    Mistake(C.SUM_NOT_MEAN, "the SUM of -log p[target] over the rows instead of the mean", {"kind": "sum"}),
    Mistake(C.WRONG_AXIS, "a (log-)softmax over dim 0 (down the rows) instead of over each row",
            {"kind": "dim0"}),
    Mistake(C.WRONG_INDEX, "-logp[:, targets].mean(): every target's column for every row",
            {"kind": "columns"}),
    Mistake(C.WRONG_INDEX, "-log p of each row's MOST LIKELY token, not of its target", {"kind": "argmax"}),
    Mistake(C.WRONG_INDEX, "the mean of -log p over every entry, not only the targets'", {"kind": "all"}),
    Mistake(C.NO_SOFTMAX, "-logits[target] averaged: the raw logits, with no log-softmax", {"kind": "raw"}),
    Mistake(C.NO_SOFTMAX, "-(logits - max)[target] averaged: each row's max is subtracted, but the "
            "log-sum-exp is not, so it is not a log-softmax (a second normalisation after the max shift "
            "undoes the first)", {"kind": "shifted"}),
    Mistake(C.LOG2, "the loss in bits (log base 2) instead of nats (the natural log)", {"kind": "log2"}),
]  # fmt: skip


def _ce_run(fn: Ref, logits: torch.Tensor, targets: torch.Tensor, what: str, backward: Any = None) -> Any:
    call = CROSS_ENTROPY.run(what, fn, logits, targets, backward=backward)
    untouched(
        CROSS_ENTROPY,
        what,
        call,
        advice=" The caller still needs the logits: make a new tensor, z = logits - ..., not "
        "logits -= logits.max(...).",
    )
    return call


def _ce_scalar(out: Any, N: int, what: str) -> torch.Tensor:
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        raise CROSS_ENTROPY.fail(
            C.NOT_A_TENSOR,
            f"{what} returned the Python number {out:.4g}, not a tensor: .item() or float() cut the gradient "
            "that training needs. Return the 0-dim tensor.",
        )
    if isinstance(out, torch.Tensor) and out.dim() == 1 and out.numel() == N:
        raise CROSS_ENTROPY.fail(
            C.NO_MEAN,
            f"{what} returned {N} values, one per row: the loss is their mean, one number (a 0-dim tensor).",
        )
    return expect_tensor(CROSS_ENTROPY, what, out, shape=(), shape_names="(a 0-dim tensor: one number)")


@CROSS_ENTROPY.check
def check_cross_entropy(fn: Ref) -> None:
    """Check `cross_entropy(logits (N, V), targets (N,))` -> the mean of -log softmax(logits)[i, targets[i]]."""
    ex = CROSS_ENTROPY
    expect_callable(ex, fn, "cross_entropy")
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
        out = _ce_run(fn, logits, targets, what).value
        if isinstance(out, torch.Tensor) and out.dim() == 0 and not torch.isfinite(out):
            raise ex.fail(C.NAN, f"{what} returned {out.item()} for ordinary logits (between -8 and 8).")
        out = _ce_scalar(out, N, what)
        want = F.cross_entropy(logits, targets)
        if not tensors_close(out, want, atol=1e-5, rtol=1e-4):
            found = find_mistake(_CE_MISTAKES, partial(_ce_is, out, logits, targets), pairs=False)
            if found:
                raise ex.fail(
                    found[0].code,
                    f"{what} = {out.item():.4f}, which is {found[0].says}. The loss is {want.item():.4f}.",
                )
            raise ex.fail(
                C.WRONG_VALUES,
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
        out = _ce_run(fn, logits, targets, what).value
        if isinstance(out, torch.Tensor) and out.dim() == 0 and not torch.isfinite(out):
            raise ex.fail(
                C.OVERFLOW,
                f"{what} returned {out.item()}, although the loss is {F.cross_entropy(logits, targets).item():.4f}: "
                "exp() of a large logit overflows to inf (exp(89) already does in float32), and of a very "
                "negative one underflows to 0, so inf / inf or log(0) appears.",
            )
        out = _ce_scalar(out, logits.size(0), what)
        want = F.cross_entropy(logits, targets)
        if not tensors_close(out, want, atol=1e-3, rtol=1e-4):
            raise ex.fail(
                C.OVERFLOW,
                f"{what} = {out.item():.4f}, but the loss is {want.item():.4f}: large logits lose precision in "
                "your computation. Subtract each row's maximum before exp().",
            )

    # Gradients flow back to the logits: (softmax - one_hot) / N.
    logits, targets = cases[0]
    grads = _ce_run(fn, logits, targets, "cross_entropy(logits, targets)", Backward(wrt=(0,))).grads
    if not grads.connected:
        raise ex.fail(
            C.NO_GRAD,
            "your loss does not depend on the logits through torch operations (no gradient can flow): "
            "avoid .detach(), .data, numpy and .item() inside.",
        )
    want = (F.softmax(logits, -1) - F.one_hot(targets, logits.size(1))) / logits.size(0)
    if grads.inputs[0] is None or not tensors_close(grads.inputs[0], want, atol=1e-5, rtol=1e-3):
        raise ex.fail(C.NO_GRAD, "the gradient of your loss with respect to the logits is not right.")
    ex.passed(
        f"equals F.cross_entropy for logits of shapes {', '.join(done)}; stable for logits of ±1000 and "
        "beyond; gradient (softmax - one_hot) / N reaches the logits; inputs left untouched."
    )


def _ce_is(out: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, kind: str) -> bool:
    return tensors_close(out, _ce(logits, targets, kind), atol=1e-5, rtol=1e-4)


# ==== 5.2 gpt =======================================================================================

GPT = Exercise(
    "gpt",
    [*C.CLASS, C.RETURNS_TENSOR, C.WRONG_RETURN, C.RETURN_ORDER, C.NO_HEAD, C.FLATTENED_LOGITS,
     C.LOSS_WITHOUT_TARGETS, C.LOSS_NOT_MEAN, C.LOSS_WRONG, C.LOSS_NOT_FLATTENED, C.LOSS_ON_PROBABILITIES,
     C.TARGETS_SHIFTED, C.DROPOUT_IN_EVAL, C.HEAD_BIAS, C.NO_FINAL_LN, C.LN_F_FIRST, C.NO_POSITION, C.TIED_WEIGHTS,
     C.N_LAYER, C.BLOCKS_NOT_REGISTERED, C.WRONG_PARAMS, C.INITIAL_LOSS, C.INIT, C.FUTURE_LEAK, C.BLOCKS_UNUSED,
     C.BLOCKS_NOT_CHAINED, C.PROBABILITIES, C.LOG_PROBABILITIES, C.WRONG_VALUES, C.HARD_CODED, C.NO_DROPOUT,
     C.NO_GRAD, C.IN_PLACE, *C.TENSOR],
)  # fmt: skip
# The check's config: V != block_size, so the token and position tables have different shapes.
_GPT_CONFIG = GPTConfig(vocab_size=65, block_size=8, n_layer=2, n_head=4, n_embd=32)


def _unpack(out: Any, what: str, B: int, T: int, config: GPTConfig) -> tuple[torch.Tensor, Any]:
    """(logits, loss) from a learner's forward, or a failure naming what came back instead."""
    V, C_ = config.vocab_size, config.n_embd
    if out is None:
        raise GPT.fail(C.RETURNED_NONE, f"{what} returned None: is `return logits, loss` missing?")
    if isinstance(out, torch.Tensor):
        raise GPT.fail(
            C.RETURNS_TENSOR,
            f"{what} returned one tensor of shape {shape_str(out)}; GPT's forward returns a pair: (logits, loss).",
        )
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        n = len(out) if isinstance(out, (tuple, list)) else type_name(out)
        raise GPT.fail(C.WRONG_RETURN, f"{what} returned {n} items; expected (logits, loss).")
    logits, loss = out
    if (
        isinstance(loss, torch.Tensor)
        and tuple(loss.shape) == (B, T, V)
        and (logits is None or (isinstance(logits, torch.Tensor) and logits.dim() == 0))
    ):
        raise GPT.fail(
            C.RETURN_ORDER,
            f"{what} returned (loss, logits): the second item has the logits' shape {(B, T, V)}. The order is "
            "swapped: return logits, loss.",
        )
    if isinstance(logits, torch.Tensor):
        if tuple(logits.shape) == (B, T, C_) and C_ != V:
            raise GPT.fail(
                C.NO_HEAD,
                f"{what} returned logits of shape {shape_str(logits)} = (B, T, n_embd): the head that turns "
                f"{C_} channels into {V} scores is missing.",
            )
        if tuple(logits.shape) == (B * T, V):
            raise GPT.fail(
                C.FLATTENED_LOGITS,
                f"{what} returned logits of shape {shape_str(logits)} = (B*T, V); expected {(B, T, V)} = (B, T, V).",
            )
    logits = expect_tensor(
        GPT,
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
        raise GPT.fail(
            C.PROBABILITIES,
            f"{what} returned probabilities (each row is >= 0 and sums to 1): softmax(logits). Return the logits.",
        )
    if tensors_close(torch.logsumexp(logits, -1), torch.zeros(logits.shape[:-1]), atol=1e-5, rtol=0):
        raise GPT.fail(
            C.LOG_PROBABILITIES,
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


def _listing(params: dict[str, torch.Tensor]) -> str:
    return "\n".join(f"    {n}: {tuple(p.shape)}" for n, p in params.items())


def _structure(tree: Tree, ref: nn.Module, config: GPTConfig, name: str) -> None:
    """Same parameter shapes as gptlib.GPT, or a failure that names the part that differs."""
    V, T, C_, L = config.vocab_size, config.block_size, config.n_embd, config.n_layer
    weights = {p: s.params.get("weight") for p, s in tree.subs.items()}
    linear = {weights[p] for p, s in tree.subs.items() if s.info.isa(nn.Linear)}
    table = {weights[p] for p, s in tree.subs.items() if s.info.isa(nn.Embedding)}
    if (linear & table) - {None}:
        raise GPT.fail(
            C.TIED_WEIGHTS,
            f"your head's weight IS the token embedding's (weight tying, as GPT-2 does), so your {name} has "
            f"{V * C_} parameters fewer than gptlib.GPT. minGPT keeps two separate {V} × {C_} tables.",
        )
    found = Counter(_shape_key(p.shape) for p in tree.params.values())
    ref_params = dict(ref.named_parameters())
    expected = Counter(_shape_key(p.shape) for p in ref_params.values())
    if found == expected:
        return
    missing, extra = expected - found, found - expected
    n_found = sum(p.numel() for p in tree.params.values())
    n_expected = sum(p.numel() for p in ref_params.values())
    listing = (
        f"\nYour {name} has {n_found:,} parameters, gptlib.GPT {n_expected:,}."
        + (f"\nMissing: {_format_counter(missing)}." if missing else "")
        + (f"\nExtra: {_format_counter(extra)}." if extra else "")
        + f"\nExpected (gptlib.GPT):\n{_listing(ref_params)}\nFound (yours):\n{_listing(tree.params)}"
    )
    _blocks_unregistered(missing, extra, ref, name, L, listing)
    if extra == Counter({(V,): 1}) and not missing:
        raise GPT.fail(C.HEAD_BIAS, f"your head has a bias ({V} extra parameters)." + listing)
    if missing == Counter({(C_,): 2}) and not extra:
        raise GPT.fail(
            C.NO_FINAL_LN,
            f"a LayerNorm ({C_} gains and {C_} biases) is missing: the final one, before the head?" + listing,
        )
    if missing == Counter({(T, C_): 1}) and not extra:
        raise GPT.fail(C.NO_POSITION, f"there is no position table ({T}, {C_})." + listing)
    if missing == Counter({(V, C_): 1}) and not extra:
        raise GPT.fail(
            C.NO_HEAD,
            f"one of the two ({V}, {C_}) tables is missing: the token embedding or the head." + listing,
        )
    n_blocks = sum(s.info.isa(_RefBlock) for s in tree.subs.values())
    if n_blocks and n_blocks != L:
        raise GPT.fail(C.N_LAYER, f"your {name} has {n_blocks} Blocks; config.n_layer is {L}." + listing)
    raise GPT.fail(C.WRONG_PARAMS, "your parameters differ from gptlib.GPT's." + listing)


def _blocks_unregistered(
    missing: Counter, extra: Counter, ref: nn.Module, name: str, L: int, listing: str
) -> None:
    """Exactly the n_layer blocks' parameters are missing: the blocks sit in a plain Python list."""
    block = Counter(_shape_key(p.shape) for p in _ref_parts(ref)[2][0].parameters())
    if missing and not extra and missing == Counter({k: n * L for k, n in block.items()}):
        raise GPT.fail(
            C.BLOCKS_NOT_REGISTERED,
            f"none of the {L} Blocks' parameters are among your {name}'s: the blocks are kept in a plain Python "
            "list (or a dict, or built in forward), so nn.Module never sees them: .parameters() skips them (the "
            "optimizer would never train them), and .eval() / .train() never reach them. Keep them in an "
            "nn.ModuleList." + listing,
        )


def _check_init(tree: Tree, name: str, initial_loss: float, V: int) -> str:
    """minGPT's init: Linear/Embedding weights ~ N(0, 0.02), Linear biases 0; first loss near ln(V)."""
    off = []
    for path, s in tree.subs.items():
        linear, table = s.info.isa(nn.Linear), s.info.isa(nn.Embedding)
        own = tree.own(path)
        if (linear or table) and "weight" in own:
            w = own["weight"]
            std = w.std().item()
            if not 0.005 <= std <= 0.03:
                default = (table and 0.8 < std < 1.2) or (
                    linear and math.isclose(std, 1 / math.sqrt(3 * w.shape[1]), rel_tol=0.15)
                )
                off.append(
                    f"{path or 'the model'} ({s.info.type_name}) has weights with std {std:.3f}"
                    + (" (PyTorch's default)" if default else "")
                )
        if linear and own.get("bias") is not None and bool(own["bias"].abs().max() > 0):
            off.append(f"{path} has a non-zero bias")
    ln_v = math.log(V)
    if abs(initial_loss - ln_v) > 0.25:
        why = f" ({off[0]})" if off else ""
        raise GPT.fail(
            C.INITIAL_LOSS,
            f"your fresh {name}'s loss is {initial_loss:.2f}, far from ln({V}) = {ln_v:.2f}, the loss of a model "
            f"that gives every token the same probability{why}. Did you skip the 0.02 init?",
        )
    if off:
        more = f" (and {len(off) - 3} more)" if len(off) > 3 else ""
        raise GPT.fail(
            C.INIT,
            f"your fresh {name} is not initialised as minGPT's: {'; '.join(off[:3])}{more}. Expected weights "
            "drawn from N(0, 0.02) and zero biases.",
        )
    return f"minGPT init; fresh loss {initial_loss:.2f} ≈ ln({V}) = {ln_v:.2f}"


@dataclass
class _GPTParts:
    """The learner's GPT read as gptlib's parts: the two tables, the blocks' parameters, ln_f and the head."""

    tok: torch.Tensor
    pos: torch.Tensor
    blocks: list[dict[str, torch.Tensor]]
    ln_f: dict[str, torch.Tensor]
    head: torch.Tensor


def _ref_parts(model: nn.Module) -> tuple[nn.Module, nn.Parameter, list[nn.Module], nn.LayerNorm, nn.Linear]:
    """gptlib GPT's parts by type (whatever its attributes are called): token table, position table,
    blocks, final LayerNorm, head."""
    stem = next(m for m in model.modules() if isinstance(m, _RefEmbeddings))
    head = next(m for m in model.modules() if isinstance(m, _RefHead))
    pos = next(p for p in stem.parameters() if p.dim() == 3)
    tok = next(m for m in stem.modules() if isinstance(m, nn.Embedding))
    ln_f = next(m for m in head.modules() if isinstance(m, nn.LayerNorm))
    out = next(m for m in head.modules() if isinstance(m, nn.Linear))
    return tok, pos, [m for m in model.modules() if isinstance(m, _RefBlock)], ln_f, out


def _find_gpt_parts(tree: Tree, config: GPTConfig, ref_block: nn.Module) -> _GPTParts | None:
    V, T, C_, L = config.vocab_size, config.block_size, config.n_embd, config.n_layer
    subs = tree.subs
    blocks = [p for p, s in subs.items() if s.info.isa(_RefBlock)]
    if len(blocks) != L:
        layout = [tuple(t.shape) for t in ref_block.parameters()]
        blocks = []
        for path, s in subs.items():
            if (s.info.isa(nn.ModuleList) or s.info.isa(nn.Sequential)) and len(tree.children(path)) == L:
                children = [c.path for c in tree.children(path)]
                if all([tuple(t.shape) for t in tree.params_of(c).values()] == layout for c in children):
                    blocks = children
                    break
        if len(blocks) != L:
            return None

    def outside(path: str) -> bool:
        return not any(path == b or path.startswith(b + ".") for b in blocks)

    stems = [p for p, s in subs.items() if s.info.isa(_RefEmbeddings)]
    if stems:
        stem = tree.params_of(stems[0])
        tok = next(t for t in stem.values() if t.dim() == 2)
        pos = next(t for t in stem.values() if t.dim() == 3)
    else:
        toks = [
            p
            for p, s in subs.items()
            if s.info.isa(nn.Embedding) and tree.own(p)["weight"].shape[0] == V and outside(p)
        ]
        pos_tables = {
            s.params["weight"]
            for p, s in subs.items()
            if s.info.isa(nn.Embedding) and tree.own(p)["weight"].shape[0] == T
        }
        pos_tables |= {n for n, t in tree.params.items() if _shape_key(t.shape) == (T, C_)}
        if len(toks) != 1 or len(pos_tables) != 1:
            return None
        tok, pos = tree.own(toks[0])["weight"], tree.params[pos_tables.pop()]
    heads = [p for p, s in subs.items() if s.info.isa(_RefHead)]
    if heads:
        norms = [p for p, s in subs.items() if s.info.isa(nn.LayerNorm) and p.startswith(heads[0] + ".")]
        outs = [p for p, s in subs.items() if s.info.isa(nn.Linear) and p.startswith(heads[0] + ".")]
    else:
        norms = [p for p, s in subs.items() if s.info.isa(nn.LayerNorm) and outside(p)]
        outs = [
            p
            for p, s in subs.items()
            if s.info.isa(nn.Linear) and tuple(tree.own(p)["weight"].shape) == (V, C_) and outside(p)
        ]
        if len(norms) != 1 or len(outs) != 1:
            return None
    return _GPTParts(
        tok, pos, [tree.params_of(b) for b in blocks], tree.own(norms[0]), tree.own(outs[0])["weight"]
    )


def _copy_into(ref: _RefGPT, parts: _GPTParts, config: GPTConfig) -> None:
    tok, pos, blocks, ln_f, head = _ref_parts(ref)
    with torch.no_grad():
        tok.weight.copy_(parts.tok)
        pos.copy_(parts.pos.reshape(1, config.block_size, config.n_embd))
        for mine, theirs in zip(blocks, parts.blocks, strict=True):
            for p, value in zip(mine.parameters(), theirs.values(), strict=True):
                p.copy_(value)
        ln_f.load_state_dict(parts.ln_f)
        head.weight.copy_(parts.head)


def _randomise(tree: Tree) -> dict[str, torch.Tensor]:
    """Random weights everywhere (LayerNorm gains around 1), so a part that is skipped changes the logits.
    (minGPT's init leaves the position table at zero, where leaving it out would go unnoticed.)"""
    values = {}
    with seeded(11):
        for s in tree.subs.values():
            for pn, full in s.params.items():
                shape = tree.params[full].shape
                values[full] = (
                    1 + 0.2 * torch.randn(shape)
                    if s.info.isa(nn.LayerNorm) and pn == "weight"
                    else 0.1 * torch.randn(shape)
                )
    return values


def _gpt_variant(ref: _RefGPT, idx: torch.Tensor, kind: str) -> torch.Tensor:
    """Logits of a known-wrong forward, computed with gptlib's parts holding the learner's weights."""
    tok_emb, pos_emb, blocks, ln_f, head = _ref_parts(ref)
    tok = tok_emb(idx)
    x = tok + pos_emb[:, : idx.size(1)]

    def run(z: torch.Tensor, which: list = blocks) -> torch.Tensor:
        for b in which:
            z = b(z)
        return z

    return {
        "no-position": lambda: head(ln_f(run(tok))),
        "no-final-ln": lambda: head(run(x)),
        "ln-f-first": lambda: head(run(ln_f(x))),
        "blocks-unused": lambda: head(ln_f(x)),
        "blocks-not-chained": lambda: head(ln_f(blocks[-1](x))),
    }[kind]()


_GPT_MISTAKES = [
    Mistake(C.NO_POSITION, "no position embedding added to the token embedding", {"kind": "no-position"}),
    Mistake(C.NO_FINAL_LN, "the head applied without the final LayerNorm", {"kind": "no-final-ln"}),
    Mistake(C.LN_F_FIRST, "the final LayerNorm applied BEFORE the blocks (to the embeddings) instead of "
            "after them, just before the head", {"kind": "ln-f-first"}),
    Mistake(C.BLOCKS_UNUSED, "the blocks never applied (`block(x)` without `x = `)",
            {"kind": "blocks-unused"}),
    Mistake(C.BLOCKS_NOT_CHAINED, "only the last block applied to the embeddings (`y = block(x)` in the "
            "loop)", {"kind": "blocks-not-chained"}),
]  # fmt: skip


def _loss_variant(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """The learner's loss computed from their own logits (B, T, V), right or with a known mistake."""
    V = logits.size(-1)
    flat, flat_t = logits.reshape(-1, V), targets.reshape(-1)
    return {
        "right": lambda: F.cross_entropy(flat, flat_t),
        "sum": lambda: F.cross_entropy(flat, flat_t, reduction="sum"),
        "probabilities": lambda: F.cross_entropy(F.softmax(flat, -1), flat_t),
        "nll-on-probabilities": lambda: F.nll_loss(F.softmax(flat, -1), flat_t),
        "shifted": lambda: F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1)),
    }[kind]()


_LOSS_MISTAKES = [
    Mistake(C.LOSS_NOT_MEAN, "It is the SUM over the B*T positions, not the mean.", {"kind": "sum"}),
    Mistake(C.LOSS_ON_PROBABILITIES, "It is F.cross_entropy of softmax(logits): the loss taken on "
            "probabilities. F.cross_entropy applies log-softmax itself: give it the logits.",
            {"kind": "probabilities"}),
    Mistake(C.LOSS_ON_PROBABILITIES, "It is F.nll_loss of softmax(logits): nll_loss expects "
            "LOG-probabilities. Use F.cross_entropy on the logits.", {"kind": "nll-on-probabilities"}),
    Mistake(C.TARGETS_SHIFTED, "It is the loss of logits[:, :-1] against targets[:, 1:]: the targets "
            "shifted one more time. get_batch already made y the next token of each position (y[t] = x[t + "
            "1]): compare logits[:, t] with targets[:, t].", {"kind": "shifted"}),
]  # fmt: skip


def _loss_mistake(loss: Any, logits: torch.Tensor, targets: torch.Tensor) -> Mistake | None:
    """The one kind of known mistake the loss matches (None if none does, or several that the logits cannot
    tell apart)."""
    same = partial(tensors_close, atol=1e-5, rtol=1e-4)
    if not isinstance(loss, torch.Tensor) or loss.dim():
        return None
    found = [m for m in _LOSS_MISTAKES if same(loss, _loss_variant(logits, targets, **m.kwargs))]
    return found[0] if len({m.code for m in found}) == 1 else None


@GPT.check
def check_gpt(cls: Ref) -> None:
    """Check `GPT(config)`: forward(idx, targets=None) -> (logits (B, T, V), loss or None), minGPT's init,
    causal, the parameters and logits of gptlib.GPT given the learner's weights."""
    ex, config = GPT, _GPT_CONFIG
    V, T = config.vocab_size, config.block_size
    name = cls.info.name or "GPT"
    with seeded(0):
        model = ex.build(cls, config)
        idx = torch.randint(V, (4, T))
        targets = torch.randint(V, (4, T))
        ref = _RefGPT(config).eval()
    B = idx.size(0)
    train(ex, model, False)

    def forward(inp: torch.Tensor, tgt: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        what = f"{name}.forward(idx of shape {shape_str(inp)}" + (", targets)" if tgt is not None else ")")
        try:
            call = ex.run(what, model, inp) if tgt is None else ex.run(what, model, inp, tgt)
        except CheckFailure as e:
            if tgt is not None and e.diagnosis == C.CRASHED and "Expected target size" in e.crash.message:
                raise ex.fail(
                    C.LOSS_NOT_FLATTENED,
                    f"{what} raised {ex.error_only(e)}: F.cross_entropy got the logits as (B, T, V) and the "
                    "targets as (B, T), and reads dim 1 (T) as the classes. Flatten both: "
                    "F.cross_entropy(logits.view(-1, V), targets.view(-1)).",
                    e.crash,
                ) from None
            raise
        return _unpack(untouched(ex, what, call, "idx"), what, inp.size(0), inp.size(1), config)

    with torch.no_grad():
        logits, loss = forward(idx)
        if loss is not None:
            raise ex.fail(
                C.LOSS_WITHOUT_TARGETS,
                f"{name}.forward(idx) without targets returned a loss ({loss!r:.60}); expected None.",
            )
        _not_probabilities(logits, f"{name}.forward(idx)")
        logits2, loss = forward(idx, targets)
        what = f"the loss of {name}.forward(idx, targets)"
        if isinstance(loss, torch.Tensor) and loss.dim() > 0:
            raise ex.fail(
                C.LOSS_NOT_MEAN, f"{what} has shape {shape_str(loss)}; expected one number (the mean)."
            )
        loss = expect_tensor(ex, what, loss, shape=())
        tree = Tree(model)
        if not tensors_close(logits, logits2, atol=1e-6, rtol=1e-5):  # unregistered blocks stay in train mode
            found = Counter(_shape_key(p.shape) for p in tree.params.values())
            expected = Counter(_shape_key(p.shape) for p in ref.parameters())
            _blocks_unregistered(expected - found, found - expected, ref, name, config.n_layer, "")
            deterministic(ex, f"{name}.forward(idx)", logits, logits2, "idx")
        want = _loss_variant(logits2, targets, "right")
        if not tensors_close(loss, want, atol=1e-5, rtol=1e-4):
            found = _loss_mistake(loss, logits2, targets)
            if found is None:  # a fresh model's logits are near 0, where the usual wrong losses nearly agree
                set_parameters(model, _randomise(tree))
                logits2, loss = forward(idx, targets)
                want, what = _loss_variant(logits2, targets, "right"), f"with random weights, {what}"
                found = _loss_mistake(loss, logits2, targets)
            raise ex.fail(
                found.code if found else C.LOSS_WRONG,
                f"{what} is {loss.item():.4f}; F.cross_entropy of your logits against the targets is "
                f"{want.item():.4f}." + (f" {found.says}" if found else ""),
            )
        _structure(tree, ref, config, name)
        verified = [
            f"returns (logits {(B, T, V)}, loss), loss None without targets",
            "parameters as gptlib.GPT's",
            _check_init(tree, name, want.item(), V),
        ]

        moved = leaks(lambda i: forward(i)[0], idx, V, seed=0)
        if moved:
            raise future_leak(ex, f"{name}.forward(idx)", moved, T, inputs="tokens", outputs="logits")
        verified.append("causal")

        parts = _find_gpt_parts(tree, config, _ref_parts(ref)[2][0])
        if parts is None:
            raise ex.fail(
                C.WRONG_PARAMS,
                f"I could not find the parts of your {name}: expected Embeddings (or an nn.Embedding of "
                f"{V} rows and a position table of {T} rows), {config.n_layer} gptlib Blocks, one final "
                f"nn.LayerNorm and an nn.Linear({config.n_embd}, {V}) head (or gptlib's LMHead).\n"
                f"Found:\n{_listing(tree.params)}",
            )
        set_parameters(model, _randomise(tree))
        _copy_into(ref, _find_gpt_parts(Tree(model), config, _ref_parts(ref)[2][0]), config)
        for inp in (idx, idx[:, : T - 3], idx[:, :1]):
            what = f"{name}.forward(idx of shape {shape_str(inp)})"
            got, _ = forward(inp)
            want = ref(inp)[0]
            if tensors_close(got, want):
                continue
            found = match(got, partial(_gpt_variant, ref, inp), _GPT_MISTAKES, False, tensors_close)
            if found:
                raise ex.fail(found[0].code, f"with your weights, {what} matches {found[0].says}.")
            raise ex.fail(
                C.WRONG_VALUES,
                f"with your weights copied into gptlib.GPT, {what}: {fraction_close(got, want):.0%} of the logits "
                f"match (largest difference {max_diff(got, want):.3g}).",
            )
        verified.append("same logits as gptlib.GPT with your weights for T = 1, 5 and 8")

    gradients(ex, "loss.backward()", model, idx, targets, backward=Backward(output=1))
    verified.append("gradients reach every parameter")
    train(ex, model, True)
    with seeded(4), torch.no_grad():
        dropout_active(ex, name, forward(idx)[0], forward(idx)[0])
    verified.append("dropout in train mode only")
    _sizes_from_config(cls, config, name)
    ex.passed("; ".join(verified) + ".")


def _sizes_from_config(cls: Ref, config: GPTConfig, name: str) -> None:
    """Another vocabulary size must give that many scores (a size written into the code does not follow)."""
    ex, V = GPT, 23
    cfg = config.replace(vocab_size=V)
    with seeded(7):
        model = ex.build(cls, cfg)
        idx = torch.randint(V, (2, 5))
    train(ex, model, False)
    what = f"{name}(config with vocab_size = {V}).forward(idx)"
    out = ex.call(what, model, idx)
    logits = out[0] if isinstance(out, (tuple, list)) and out else out
    if isinstance(logits, torch.Tensor) and tuple(logits.shape) != (2, 5, V):
        raise ex.fail(
            C.HARD_CODED,
            f"{what} gives logits of shape {shape_str(logits)}, not {(2, 5, V)}: a size is fixed in your code "
            f"(the {config.vocab_size} of the check's first config?). Read every size from the config: "
            "config.vocab_size, config.n_embd, config.block_size.",
        )


# ==== 5.3 count_parameters ==========================================================================

COUNT = Exercise(
    "count_parameters",
    [C.NOT_CALLABLE, C.HEAD_MISSING, C.HEAD_BIAS, C.NO_POSITION, C.NO_FINAL_LN, C.LAYERNORM_COUNT, C.BIASES,
     C.ATTENTION_COUNT, C.MLP_COUNT, C.LAYER_COUNT, C.WRONG_VALUES, C.NOT_A_NUMBER],
)  # fmt: skip


@functools.lru_cache(maxsize=32)
def _true_count(V: int, T: int, L: int, C_: int) -> int:
    """gptlib.GPT(config).num_parameters() (small configs: built in milliseconds; the global RNG is restored)."""
    with seeded(0):
        model = _RefGPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=1, n_embd=C_))
    return model.num_parameters()


# The usual mistakes, each with its delta (the learner's count - the true count) as a function of (V, T, L, C).
_COUNT_MISTAKES = [
    Mistake(C.HEAD_MISSING, "one of the two V × C tables (token embedding, head) is missing",
            {"delta": lambda V, T, L, C_: -V * C_}),
    Mistake(C.HEAD_BIAS, "the head counted with a bias (+V)", {"delta": lambda V, T, L, C_: V}),
    Mistake(C.NO_POSITION, "the position table (T × C) is missing",
            {"delta": lambda V, T, L, C_: -T * C_}),
    Mistake(C.NO_FINAL_LN, "the final LayerNorm (2C) is missing", {"delta": lambda V, T, L, C_: -2 * C_}),
    Mistake(C.NO_FINAL_LN, "the final LayerNorm counted as C instead of 2C",
            {"delta": lambda V, T, L, C_: -C_}),
    Mistake(C.LAYERNORM_COUNT, "the blocks' LayerNorms (4C per block) are missing",
            {"delta": lambda V, T, L, C_: -4 * C_ * L}),
    Mistake(C.LAYERNORM_COUNT, "each block's LayerNorms counted as 2C instead of 4C",
            {"delta": lambda V, T, L, C_: -2 * C_ * L}),
    Mistake(C.BIASES, "the attention's biases (4C per block) are missing",
            {"delta": lambda V, T, L, C_: -4 * C_ * L}),
    Mistake(C.BIASES, "the MLP's biases (5C per block) are missing",
            {"delta": lambda V, T, L, C_: -5 * C_ * L}),
    Mistake(C.BIASES, "all the blocks' biases (9C per block) are missing",
            {"delta": lambda V, T, L, C_: -9 * C_ * L}),
    Mistake(C.ATTENTION_COUNT, "the attention's output projection (C² + C per block) is missing",
            {"delta": lambda V, T, L, C_: -(C_ * C_ + C_) * L}),
    Mistake(C.ATTENTION_COUNT, "the attention (4C² + 4C per block) is missing",
            {"delta": lambda V, T, L, C_: -(4 * C_ * C_ + 4 * C_) * L}),
    Mistake(C.MLP_COUNT, "the MLP (8C² + 5C per block) is missing",
            {"delta": lambda V, T, L, C_: -(8 * C_ * C_ + 5 * C_) * L}),
    Mistake(C.MLP_COUNT, "an MLP with a hidden layer of C instead of 4C",
            {"delta": lambda V, T, L, C_: -(6 * C_ * C_ + 3 * C_) * L}),
    Mistake(C.MLP_COUNT, "the MLP counted as 4C² + 5C (one C × 4C matrix, not two)",
            {"delta": lambda V, T, L, C_: -(4 * C_ * C_) * L}),
    Mistake(C.LAYER_COUNT, "one block too few (n_layer - 1)",
            {"delta": lambda V, T, L, C_: -(12 * C_ * C_ + 13 * C_)}),
    Mistake(C.LAYER_COUNT, "one block too many (n_layer + 1)",
            {"delta": lambda V, T, L, C_: 12 * C_ * C_ + 13 * C_}),
]  # fmt: skip
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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise COUNT.fail(C.NOT_A_NUMBER, f"{what} returned {value!r:.60}; expected an int.")
    if isinstance(value, float):
        if not value.is_integer():
            raise COUNT.fail(C.NOT_A_NUMBER, f"{what} returned {value}, not a whole number.")
        value = int(value)
    return int(value)


@COUNT.check
def check_count_parameters(fn: Ref) -> None:
    """Check `count_parameters(vocab_size, block_size, n_layer, n_embd)` == GPT(config).num_parameters()."""
    ex = COUNT
    expect_callable(ex, fn, "count_parameters")
    got, true = {}, {}
    for point in _COUNT_POINTS:
        what = "count_parameters(V={}, T={}, L={}, C={})".format(*point)
        got[point] = _as_int(ex.call(what, fn, *point), what)
        true[point] = _true_count(*point)
    if got == true:
        what = "count_parameters(V={}, T={}, L={}, C={})".format(*_GPT2_SMALL)
        gpt2 = _as_int(ex.call(what, fn, *_GPT2_SMALL), what)
        ex.passed(
            f"equals GPT(config).num_parameters() on {len(_COUNT_POINTS)} configs. For GPT-2 small's sizes "
            f"(V, T, L, C = {', '.join(map(str, _GPT2_SMALL))}) your formula gives {gpt2:,} (with an untied head)."
        )
        return
    delta = {p: got[p] - true[p] for p in _COUNT_POINTS}
    base = _COUNT_POINTS[0]
    off = "your count is off by {:+,} for V={}, T={}, L={}, C={}".format(delta[base], *base)
    alike = [m for m in _COUNT_MISTAKES if _explains(delta, m)]
    if len(alike) == 1:
        raise ex.fail(alike[0].code, f"{off}: {alike[0].says}." + _per_part(got))
    if alike:  # e.g. the blocks' LayerNorms and the attention's biases are both 4C per block
        says = "; or ".join(m.says for m in alike)
        raise ex.fail(
            alike[0].code,
            f"{off}: {says}. These give the same count, so check each of them." + _per_part(got),
        )
    for a, b in itertools.combinations(_COUNT_MISTAKES, 2):
        if _explains(delta, a, b):
            raise ex.fail(a.code, f"{off}: two things at once: {a.says}; and {b.says}." + _per_part(got))
    raise ex.fail(C.WRONG_VALUES, f"{off}." + _per_part(got))


def _explains(delta: dict, *mistakes: Mistake) -> bool:
    """True if the mistakes' deltas add up to the learner's error at every point."""
    return all(sum(m.kwargs["delta"](*p) for m in mistakes) == delta[p] for p in _COUNT_POINTS)


def _per_part(got: dict) -> str:
    """Which part of the formula is off: per vocabulary token, per position, per layer, and the rest."""
    base = _COUNT_POINTS[0]
    V, T, L, C_ = base
    rows = [
        (
            "each extra vocabulary token",
            got[(V + 1, T, L, C_)] - got[base],
            2 * C_,
            "2C: a row of the token table and a row of the head",
        ),
        ("each extra position", got[(V, T + 1, L, C_)] - got[base], C_, "C: a row of the position table"),
        (
            "each extra layer",
            got[(V, T, L + 1, C_)] - got[base],
            12 * C_ * C_ + 13 * C_,
            "12C² + 13C: attention 4C² + 4C, MLP 8C² + 5C, two LayerNorms 4C",
        ),
    ]
    lines = [
        f"\n  - {what}: yours adds {mine:,}, it should add {right:,} = {why}"
        for what, mine, right, why in rows
        if mine != right
    ]
    rest = got[base] - (V * 2 * C_ + T * C_ + L * (12 * C_ * C_ + 13 * C_))
    if rest != 2 * C_ and not lines:
        lines.append(
            f"\n  - the rest (the final LayerNorm) is {rest:,} in yours; it should be 2C = {2 * C_:,}"
        )
    return ("\nFor V, T, L, C = " + f"{V}, {T}, {L}, {C_}:" + "".join(lines)) if lines else ""
