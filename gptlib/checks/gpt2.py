"""Checks for lesson 09 (GPT-2 is your GPT): split_c_attn, convert_block, convert_gpt2.

Every check builds a small GPT-2 with random weights (Hugging Face's
GPT2LMHeadModel: a few layers, 16 to 32 channels, every weight random, biases and
LayerNorm gains too, so a weight copied to the wrong place shows) and compares
what the learner's conversion computes with what Hugging Face's model computes:
the logits, the attention maps and each block's output (caught with hooks during
one forward pass, so GPT-2's own causal mask is in force).

When the outputs differ, the check rebuilds the block with one known mistake at a
time (and every pair): the exact GELU instead of GPT-2's tanh form, the wrong
LayerNorm eps, a Conv1D weight not transposed or reshaped, c_attn split in the
wrong order, the LayerNorms swapped, ... and names the one the learner's output
matches.

transformers is imported when a check runs, not when gptlib.checks is imported
(it takes seconds, and the other lessons do not need it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from gptlib.block import Block
from gptlib.checks.base import (
    CheckFailure,
    call,
    error_only,
    expect_tensor,
    fraction_close,
    isolated,
    max_diff,
    passed,
    seeded,
    shape_str,
    tensors_close,
)
from gptlib.checks.hints import register_hints
from gptlib.checks.mistakes import Mistake, find_mistake, matched_failure
from gptlib.config import GPTConfig

__all__ = ["check_split_c_attn", "check_convert_block", "check_convert_gpt2"]

_SPLIT, _BLOCK, _MODEL = "split_c_attn", "convert_block", "convert_gpt2"
_ROLES = ("query", "key", "value")
_INSTALL = 'pip install "gptlib-course[gpt2]"'


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> bool:
    return tensors_close(a, b, atol, rtol)


# ---- a small random GPT-2 and what it computes ---------------------------------------------------


def _transformers(exercise: str) -> tuple[Any, Any]:
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        raise CheckFailure(
            exercise,
            "no-transformers",
            "this check compares your code with Hugging Face's GPT-2, which needs the 'transformers' package, "
            f"and it cannot be imported here. Install it ({_INSTALL}, or pip install transformers), restart "
            "the kernel, and run the check again.",
        ) from None
    return GPT2Config, GPT2LMHeadModel


def _random_gpt2(exercise: str, seed: int, **config: Any) -> Any:
    """A GPT2LMHeadModel in eval mode with every parameter random (std 0.1; LayerNorm gains near 1)."""
    GPT2Config, GPT2LMHeadModel = _transformers(exercise)
    fields: dict[str, Any] = dict(
        vocab_size=61, n_positions=16, n_layer=2, n_head=4, n_embd=32, bos_token_id=None, eos_token_id=None
    )
    fields.update(config)
    hf_config = GPT2Config(**fields, attn_implementation="eager")  # eager: it returns the attention weights
    with seeded(seed):
        hf = GPT2LMHeadModel(hf_config).eval()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if "ln_" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return hf


@dataclass
class _HFRun:
    """One forward pass of the Hugging Face model: logits, attention maps, and each block's input and output."""

    logits: torch.Tensor
    maps: list[torch.Tensor]
    block_in: list[torch.Tensor]
    block_out: list[torch.Tensor]


def _hf_run(hf: Any, idx: torch.Tensor) -> _HFRun:
    blocks = list(hf.transformer.h)
    ins: list[Any] = [None] * len(blocks)
    outs: list[Any] = [None] * len(blocks)

    def keep(i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            ins[i] = args[0].detach().clone()
            outs[i] = (output if isinstance(output, torch.Tensor) else output[0]).detach().clone()

        return hook

    handles = [b.register_forward_hook(keep(i)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            out = hf(idx, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return _HFRun(out.logits.detach(), [a.detach() for a in out.attentions], ins, outs)


def _random_in_training(ex: str, what: str, module: nn.Module, *args: Any) -> bool:
    """True if the module is in training mode and two calls on the same input differ (dropout at work)."""
    if not module.training:
        return False
    with torch.no_grad():
        a, b = call(ex, what, module, *args), call(ex, what, module, *args)
    a, b = (t[0] if isinstance(t, (tuple, list)) else t for t in (a, b))
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and not torch.equal(a, b)


def _not_transformers(ex: str, what: str, module: nn.Module, wanted: str) -> None:
    """The conversion must build gptlib's model, not hand back a Hugging Face one."""
    if type(module).__module__.split(".")[0] == "transformers":
        raise CheckFailure(
            ex,
            "not-converted",
            f"{what} returned a Hugging Face {type(module).__name__}, not {wanted}: build gptlib's and copy "
            "GPT-2's weights into it.",
        )


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _untouched(exercise: str, what: str, module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise CheckFailure(
            exercise,
            "modified-hf",
            f"{what} changed GPT-2's own weights: {changed[:4]}. Read from the Hugging Face model, never write "
            "to it: .t() makes a transposed view (t_() transposes in place), and copy_ goes INTO your "
            "model's tensor: mine.weight.copy_(theirs.weight.t()).",
        )


_CONV1D_CLASH = (
    "A shape clash while copying GPT-2's weights usually means a Conv1D weight, stored (in, out), was copied "
    "into an nn.Linear weight, stored (out, in), without .t()."
)


def _call_converting(
    exercise: str, what: str, fn: Callable[..., Any], *args: Any, why: str = _CONV1D_CLASH
) -> Any:
    """Call a learner's conversion; a copy_/assignment between mismatched shapes gets its own diagnosis."""
    try:
        return call(exercise, what, fn, *args)
    except CheckFailure as e:
        clash = ("must match the size", "size mismatch", "shapes cannot be multiplied", "expand")
        if e.diagnosis == "crashed" and any(s in e.message for s in clash):
            raise CheckFailure(
                exercise, "shape-mismatch", f"{what} raised {error_only(e, what)}. {why}"
            ) from None
        raise


def _block_from_hf(
    hf_block: Any,
    hf_config: Any,
    *,
    gelu: str = "tanh",
    eps: float | None = None,
    n_head: int | None = None,
    order: tuple[int, int, int] = (0, 1, 2),
    qkv_t: bool = True,
    proj_t: bool = True,
    reshape: bool = False,
    ln: str = "right",
    biases: bool = True,
) -> Block:
    """A gptlib Block with hf_block's weights: right by default; each keyword switches on one known mistake."""
    C = hf_config.n_embd
    config = GPTConfig(
        vocab_size=1,
        block_size=hf_config.n_positions,
        n_layer=1,
        n_head=n_head or hf_config.n_head,
        n_embd=C,
        embd_pdrop=0.0,
        resid_pdrop=0.0,
        attn_pdrop=0.0,
        gelu_approximate=gelu,
        layer_norm_eps=hf_config.layer_norm_epsilon if eps is None else eps,
    )
    with seeded(0):
        block = Block(config).eval()

    def linear(w: torch.Tensor, transpose: bool = True) -> torch.Tensor:
        """A Conv1D weight (in, out) in nn.Linear's (out, in) layout (or one of the ways to get it wrong)."""
        if reshape:
            return w.reshape(w.shape[1], w.shape[0])
        return w.t() if transpose else w

    def bias(module: nn.Linear, value: torch.Tensor) -> None:
        module.bias.copy_(value if biases else torch.zeros_like(value))

    with torch.no_grad():
        pairs = [(block.ln1, hf_block.ln_1), (block.ln2, hf_block.ln_2)]
        if ln == "swapped":
            pairs = [(block.ln1, hf_block.ln_2), (block.ln2, hf_block.ln_1)]
        for mine, theirs in pairs:
            if ln == "default":
                mine.weight.fill_(1.0)
                mine.bias.zero_()
            else:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        w_parts = hf_block.attn.c_attn.weight.split(C, dim=1)  # [query | key | value], each (C, C)
        b_parts = hf_block.attn.c_attn.bias.split(C)
        for name, j in zip(_ROLES, order, strict=True):
            layer = getattr(block.attn, name)
            layer.weight.copy_(linear(w_parts[j], qkv_t))
            bias(layer, b_parts[j])
        block.attn.proj.weight.copy_(linear(hf_block.attn.c_proj.weight, proj_t))
        bias(block.attn.proj, hf_block.attn.c_proj.bias)
        block.mlp.fc.weight.copy_(linear(hf_block.mlp.c_fc.weight))
        bias(block.mlp.fc, hf_block.mlp.c_fc.bias)
        block.mlp.proj.weight.copy_(linear(hf_block.mlp.c_proj.weight))
        bias(block.mlp.proj, hf_block.mlp.c_proj.bias)
    return block


def _register(exercise: str, levels: list[str], diagnoses: dict[str, str]) -> None:
    """register_hints, with the diagnoses every check of this lesson shares."""
    shared = {
        "no-transformers": f"this lesson's checks compare with Hugging Face's GPT-2: {_INSTALL}, then restart "
        "the kernel.",
        "not-callable": "pass your function itself (its name, without parentheses), not a class or its result.",
    }
    register_hints(exercise, levels, {**shared, **diagnoses})


# ==== 9.1 split_c_attn ==============================================================================

_register(
    _SPLIT,
    levels=[
        "GPT-2 computes query, key and value with ONE layer, c_attn, whose weight is (C, 3C): the three "
        "(C, C) matrices sit side by side along dim 1, in the order query | key | value. Cut it into three "
        "along dim 1, then turn each from Conv1D's (in, out) layout into nn.Linear's (out, in) with .t(). "
        "The bias (3C,) is cut the same way, into three (C,).",
        "C = weight.size(0). weight.split(C, dim=1) (or weight[:, 0:C], weight[:, C:2*C], weight[:, 2*C:]) "
        "gives the three (C, C) blocks; bias.split(C) the three biases. A Conv1D computes x @ W + b, an "
        "nn.Linear x @ W.T + b: so the Linear's weight is the block transposed. Return "
        '{"query": (w_q, b_q), "key": (w_k, b_k), "value": (w_v, b_v)}.',
        "def split_c_attn(weight, bias):\n"
        "    C = weight.size(0)\n"
        "    ws = weight.split(C, dim=1)       # three (C, C) blocks, (in, out)\n"
        "    bs = bias.split(C)                # three (C,)\n"
        "    return {name: (w.t(), b)          # nn.Linear keeps (out, in)\n"
        '            for name, w, b in zip(("query", "key", "value"), ws, bs)}',
    ],
    diagnoses={
        "no-transpose": "a Conv1D weight is (in, out), nn.Linear's is (out, in): return each block transposed, "
        "w.t(). With square (C, C) blocks the shapes agree either way, so only the values can tell.",
        "order": "c_attn is [query | key | value] along dim 1: columns 0..C-1 are the query, C..2C-1 the key, "
        "2C..3C-1 the value.",
        "wrong-axis": "the three projections sit side by side in the COLUMNS of the (C, 3C) weight (dim 1); "
        "cutting the rows (dim 0), or reshaping the flat matrix, mixes them up. Use weight.split(C, dim=1).",
        "interleaved": "view(C, C, 3) or view(C, 3, C) on a transposed weight interleaves the columns (every "
        "third one). The three blocks are contiguous: weight[:, 0:C], weight[:, C:2*C], weight[:, 2*C:3*C].",
        "not-split": "cut the (C, 3C) weight into three (C, C) blocks: weight.split(C, dim=1).",
        "wrong-shape": "each weight is (C, C) and each bias (C,), with C = weight.size(0): three equal parts of "
        "c_attn, each transposed.",
        "bias-not-split": "the bias (3C,) is split like the weight: bias.split(C) gives the three (C,) biases.",
        "bias-missing": "return each projection as a pair (weight, bias): GPT-2's c_attn has a bias of 3C values.",
        "wrong-return": 'return a dict: {"query": (w_q, b_q), "key": (w_k, b_k), "value": (w_v, b_v)}.',
        "in-place": "read the weight, do not change it: .t() and .split() make views; t_() and copy_ write.",
        "fixed-size": "take every size from the input: C = weight.size(0); no 768 or 32 written in the code.",
        "wrong-values": "print weight[:3, :3] and your query weight's [:3, :3]: the query's row r is column r "
        "of the weight's first C columns.",
    },
)


def _as_pairs(ex: str, out: Any, what: str) -> dict[str, tuple[Any, Any]]:
    """The learner's result as {role: (weight, bias)}: a dict with query/key/value, or three pairs in order."""
    expected = '{"query": (w_q, b_q), "key": (w_k, b_k), "value": (w_v, b_v)}'
    if out is None:
        raise CheckFailure(ex, "returned-none", f"{what} returned None; expected {expected}.")
    if isinstance(out, dict):
        keys = list(out)
        if sorted(map(str, keys)) != sorted(_ROLES):
            raise CheckFailure(
                ex, "wrong-return", f"{what} returned a dict with keys {keys}; expected {expected}."
            )
        items = [out[r] for r in _ROLES]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        items = list(out)
    else:
        got = f"a {type(out).__name__}" + (f" of {len(out)} items" if isinstance(out, (tuple, list)) else "")
        raise CheckFailure(ex, "wrong-return", f"{what} returned {got}; expected {expected}.")
    pairs = {}
    for role, item in zip(_ROLES, items, strict=True):
        if isinstance(item, torch.Tensor):
            raise CheckFailure(
                ex,
                "bias-missing",
                f'{what}: "{role}" is one tensor of shape {shape_str(item)}; expected a pair (weight, bias).',
            )
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise CheckFailure(
                ex, "wrong-return", f'{what}: "{role}" is {item!r:.60}; expected a pair (weight, bias).'
            )
        if item[1] is None:
            raise CheckFailure(
                ex, "bias-missing", f'{what}: the bias of "{role}" is None; GPT-2\'s c_attn has a bias.'
            )
        pairs[role] = (item[0], item[1])
    return pairs


def _split_weight_failure(ex: str, what: str, role: str, got: torch.Tensor, W: torch.Tensor) -> CheckFailure:
    """Name the mistake that gives this (C, C) matrix from the (C, 3C) weight W, if a known one does."""
    C = W.size(0)
    blocks = [W[:, j * C : (j + 1) * C] for j in range(3)]
    rows = W.reshape(3, C, C)
    interleaved = W.reshape(C, C, 3)
    i = _ROLES.index(role)
    for j in range(3):
        if _close(got, blocks[j].t(), 1e-6):  # i != j here: the right block was tested before
            return CheckFailure(
                ex,
                "order",
                f'{what}: your "{role}" weight is GPT-2\'s {_ROLES[j]} (columns {j * C}..{(j + 1) * C - 1} of '
                f"c_attn); the {role} is columns {i * C}..{(i + 1) * C - 1}.",
            )
    for j in range(3):
        if _close(got, blocks[j], 1e-6):
            order = "" if i == j else f" (and it is the {_ROLES[j]}'s block, not the {role}'s)"
            return CheckFailure(
                ex,
                "no-transpose",
                f'{what}: your "{role}" weight is the right block of c_attn, but not transposed{order}: '
                "Conv1D stores (in, out), nn.Linear (out, in).",
            )
    for j in range(3):
        if _close(got, rows[j], 1e-6) or _close(got, rows[j].t(), 1e-6):
            return CheckFailure(
                ex,
                "wrong-axis",
                f'{what}: your "{role}" weight is made of ROWS of c_attn (a reshape of the flat matrix, or a '
                "split along dim 0); query, key and value are side by side in its columns (dim 1).",
            )
    for j in range(3):
        if _close(got, interleaved[:, :, j], 1e-6) or _close(got, interleaved[:, :, j].t(), 1e-6):
            return CheckFailure(
                ex,
                "interleaved",
                f'{what}: your "{role}" weight takes every third column of c_attn (a view(C, C, 3) or '
                "view(C, 3, C) of the wrong matrix): the three blocks are contiguous, C columns each.",
            )
    want = blocks[i].t()
    return CheckFailure(
        ex,
        "wrong-values",
        f'{what}: your "{role}" weight has the right shape, but {fraction_close(got, want):.0%} of its values '
        f"are right (largest difference {max_diff(got, want):.3g}).",
    )


def _check_split_call(ex: str, fn: Any, W: torch.Tensor, b: torch.Tensor, done: str) -> dict[str, tuple]:
    """Run split_c_attn on one c_attn and check each part; returns the learner's parts."""
    what = f"split_c_attn(weight {shape_str(W)}, bias {shape_str(b)})"
    W_in, b_in = W.clone(), b.clone()
    try:
        out = call(ex, what, fn, W_in, b_in)
    except CheckFailure as e:
        if done and e.diagnosis == "crashed":
            raise CheckFailure(
                ex,
                "fixed-size",
                f"{what} raised {error_only(e, what)}, but it worked for {done}: take C from the "
                "input (C = weight.size(0)) instead of a fixed number.",
            ) from None
        raise
    if not (torch.equal(W_in, W) and torch.equal(b_in, b)):
        raise CheckFailure(ex, "in-place", f"{what} changed the weight or bias it was given in place.")
    try:
        return _check_parts(ex, what, out, W, b)
    except CheckFailure as e:
        if done and e.diagnosis in ("wrong-shape", "wrong-return", "not-split", "wrong-axis"):
            raise CheckFailure(
                ex,
                "fixed-size",
                f"{e.message} It worked for {done}: take C from the input (C = weight.size(0)) instead of "
                "a fixed number.",
            ) from None
        raise


def _check_parts(ex: str, what: str, out: Any, W: torch.Tensor, b: torch.Tensor) -> dict[str, tuple]:
    C = W.size(0)
    pairs = _as_pairs(ex, out, what)
    for role, (w, bias) in pairs.items():
        i = _ROLES.index(role)
        if not isinstance(w, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise CheckFailure(
                ex, "wrong-return", f'{what}: "{role}" must be a pair of tensors (weight, bias).'
            )
        shape = tuple(w.shape)
        if shape != (C, C):
            if shape in ((C, 3 * C), (3 * C, C)):
                raise CheckFailure(
                    ex, "not-split", f'{what}: your "{role}" weight has shape {shape}: c_attn was not split.'
                )
            if C % 3 == 0 and shape in ((C // 3, 3 * C), (3 * C, C // 3)):
                raise CheckFailure(
                    ex,
                    "wrong-axis",
                    f'{what}: your "{role}" weight has shape {shape}: you cut c_attn along the wrong axis. '
                    f"Its three ({C}, {C}) blocks sit side by side along dim 1.",
                )
            raise CheckFailure(
                ex, "wrong-shape", f'{what}: your "{role}" weight has shape {shape}; expected ({C}, {C}).'
            )
        if tuple(bias.shape) != (C,):
            code = "bias-not-split" if tuple(bias.shape) == (3 * C,) else "wrong-shape"
            raise CheckFailure(
                ex, code, f'{what}: the bias of "{role}" has shape {shape_str(bias)}; expected ({C},).'
            )
        expect_tensor(ex, f'{what}["{role}"] weight', w, dtype=W.dtype)
        if not _close(w, W[:, i * C : (i + 1) * C].t(), 1e-6):
            raise _split_weight_failure(ex, what, role, w, W)
        want_b = b[i * C : (i + 1) * C]
        if not _close(bias, want_b, 1e-6):
            for j in range(3):
                if _close(bias, b[j * C : (j + 1) * C], 1e-6):
                    raise CheckFailure(
                        ex,
                        "order",
                        f'{what}: the bias of "{role}" is GPT-2\'s {_ROLES[j]} bias (values {j * C}..'
                        f"{(j + 1) * C - 1}); the {role}'s are {i * C}..{(i + 1) * C - 1}.",
                    )
            if _close(bias, b.reshape(C, 3)[:, i], 1e-6):
                raise CheckFailure(
                    ex,
                    "interleaved",
                    f'{what}: the bias of "{role}" takes every third value of c_attn\'s bias.',
                )
            raise CheckFailure(
                ex,
                "wrong-values",
                f'{what}: {fraction_close(bias, want_b):.0%} of the values of "{role}"\'s bias are right.',
            )
    return pairs


@isolated
def check_split_c_attn(split_c_attn: Any) -> None:
    """Check `split_c_attn(weight (C, 3C), bias (3C,))` -> {"query"/"key"/"value": (weight (C, C), bias (C,))}
    in nn.Linear's layout, against Hugging Face's GPT-2 (its logits and attention maps)."""
    ex = _SPLIT
    if isinstance(split_c_attn, type) or not callable(split_c_attn):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {split_c_attn!r:.80}.")
    from gptlib.gpt2 import from_hf_gpt2

    done: list[str] = []
    verified = []
    for seed, sizes in ((1, dict(n_embd=24, n_head=4)), (2, dict(n_embd=16, n_head=2, n_layer=1))):
        hf = _random_gpt2(ex, seed, **sizes)
        model = from_hf_gpt2(hf).eval()  # gptlib's conversion; query/key/value then replaced by the learner's
        for i, hf_block in enumerate(hf.transformer.h):
            attn = hf_block.attn.c_attn
            pairs = _check_split_call(
                ex, split_c_attn, attn.weight.detach(), attn.bias.detach(), ", ".join(done)
            )
            with torch.no_grad():
                for role, (w, b) in pairs.items():
                    getattr(model.blocks[i].attn, role).weight.copy_(w)
                    getattr(model.blocks[i].attn, role).bias.copy_(b)
        done.append(f"C = {sizes['n_embd']}")
        idx = torch.randint(hf.config.vocab_size, (2, hf.config.n_positions))
        run = _hf_run(hf, idx)
        with torch.no_grad():
            logits = model(idx)[0]
        maps = model.attention_maps(idx)
        if not _close(logits, run.logits, 1e-4) or not all(
            _close(a, e, 1e-5) for a, e in zip(maps, run.maps, strict=True)
        ):  # the parts were right one by one; this would be a gptlib bug, not the learner's
            raise CheckFailure(
                ex,
                "wrong-values",
                "your parts are right, yet the model differs from Hugging Face's GPT-2: please report this.",
            )
        verified.append(f"C = {sizes['n_embd']}, {hf.config.n_layer} layer(s)")
    passed(
        ex,
        f"c_attn split into query, key, value and transposed ({'; '.join(verified)}); with your weights "
        "gptlib's GPT gives Hugging Face GPT-2's logits and attention maps.",
    )


# ==== 9.2 convert_block =============================================================================

_register(
    _BLOCK,
    levels=[
        "Two steps. First a GPTConfig that says what GPT-2's config says: n_embd, n_head, n_positions "
        "(block_size), layer_norm_epsilon (layer_norm_eps), and GPT-2's GELU, the tanh approximation "
        "(gelu_approximate='tanh'). Then build Block(config) and copy every weight in, under torch.no_grad(): "
        "the LayerNorms as they are, every Conv1D weight transposed (.t()), c_attn through your split_c_attn.",
        "Names: ln_1 -> ln1, ln_2 -> ln2, attn.c_attn -> attn.query/key/value, attn.c_proj -> attn.proj, "
        "mlp.c_fc -> mlp.fc, mlp.c_proj -> mlp.proj. Copy with mine.weight.copy_(theirs.weight.t()) (and "
        "mine.bias.copy_(theirs.bias)): copy_ keeps your Parameter and checks the shapes. vocab_size does not "
        "matter for one block (use hf_config.vocab_size). Return the block in eval mode.",
        "config = GPTConfig(vocab_size=hf_config.vocab_size, block_size=hf_config.n_positions, n_layer=1,\n"
        "                   n_head=hf_config.n_head, n_embd=hf_config.n_embd, gelu_approximate='tanh',\n"
        "                   layer_norm_eps=hf_config.layer_norm_epsilon)\n"
        "block = Block(config)\n"
        "with torch.no_grad():\n"
        "    for mine, theirs in ((block.ln1, hf_block.ln_1), (block.ln2, hf_block.ln_2)):\n"
        "        mine.weight.copy_(theirs.weight); mine.bias.copy_(theirs.bias)\n"
        "    parts = split_c_attn(hf_block.attn.c_attn.weight, hf_block.attn.c_attn.bias)\n"
        "    block.attn.query.weight.copy_(parts['query'][0]); block.attn.query.bias.copy_(parts['query'][1])\n"
        "    ... key, value the same ...\n"
        "    for mine, theirs in ((block.attn.proj, hf_block.attn.c_proj), (block.mlp.fc, hf_block.mlp.c_fc),\n"
        "                         (block.mlp.proj, hf_block.mlp.c_proj)):\n"
        "        mine.weight.copy_(theirs.weight.t()); mine.bias.copy_(theirs.bias)\n"
        "return block.eval()",
    ],
    diagnoses={
        "exact-gelu": "GPT-2's activation_function is 'gelu_new', the tanh approximation of GELU; gptlib's default "
        "is the exact GELU. They differ by up to ~5e-4 per value: small, but not GPT-2. Build the config "
        "with gelu_approximate='tanh'.",
        "eps": "read the LayerNorm eps from the config: layer_norm_eps=hf_config.layer_norm_epsilon (GPT-2 "
        "small's is 1e-5, gptlib's default, but other GPT-2 configs differ).",
        "n-head": "read the number of heads from the config: n_head=hf_config.n_head. The weights have the "
        "same shapes for any n_head, only the outputs tell.",
        "qkv-not-transposed": "each (C, C) block of c_attn is (in, out) like every Conv1D weight: transpose "
        "it (your split_c_attn should return them transposed).",
        "qkv-order": "c_attn is [query | key | value] along dim 1; copy each part into the layer of its name.",
        "proj-not-transposed": "attn.c_proj is a Conv1D too: block.attn.proj.weight.copy_(c_proj.weight.t()). "
        "It is square, so the shapes do not warn you.",
        "reshape-not-transpose": ".view/.reshape to (out, in) keeps the numbers in memory order, which is not "
        "the transpose: use .t().",
        "ln-swapped": "ln_1 (before attention) goes into ln1, ln_2 (before the MLP) into ln2.",
        "ln-not-copied": "copy both LayerNorms' weight and bias too: GPT-2's gains and biases are learned.",
        "biases-missing": "copy every bias (c_attn's split in three, c_proj's, c_fc's, mlp.c_proj's).",
        "shape-mismatch": "Conv1D keeps its weight as (in, out), nn.Linear as (out, in): copy theirs.weight.t().",
        "modified-hf": "never write into the Hugging Face model: copy_ into YOUR block's tensors.",
        "not-a-module": "return the block you built (a gptlib Block, or your own nn.Module).",
        "not-converted": "build gptlib's model (Block or GPT) and copy GPT-2's weights into it; returning "
        "Hugging Face's own model proves nothing.",
        "wrong-values": "compare one part at a time: print (mine.weight - theirs.weight.t()).abs().max() for "
        "every pair of layers.",
        "train-mode": "return block.eval(): GPT-2 is compared in eval mode, without dropout.",
    },
)


def _divisor_heads(C: int, right: int) -> list[int]:
    return [h for h in (1, 2, 4, 8, 12) if C % h == 0 and h != right]


def _block_mistakes(hf_config: Any) -> list[Mistake]:
    eps, H, C = hf_config.layer_norm_epsilon, hf_config.n_head, hf_config.n_embd
    mistakes = [
        Mistake(
            "exact-gelu",
            "a block with the exact GELU (gelu_approximate='none') where GPT-2 uses the tanh approximation "
            "('gelu_new')",
            {"gelu": "none"},
        ),
        Mistake(
            "qkv-not-transposed",
            "query, key and value copied from c_attn without .t() (Conv1D keeps (in, out))",
            {"qkv_t": False},
        ),
        Mistake("proj-not-transposed", "attn.c_proj's weight copied without .t()", {"proj_t": False}),
        Mistake(
            "reshape-not-transpose",
            "every Conv1D weight reshaped (.view/.reshape) to nn.Linear's shape instead of transposed",
            {"reshape": True},
        ),
        Mistake("ln-swapped", "ln_1 and ln_2 swapped (ln_2 before attention)", {"ln": "swapped"}),
        Mistake("ln-not-copied", "LayerNorms that were not copied (gain 1, bias 0)", {"ln": "default"}),
        Mistake("biases-missing", "the Linear layers' biases left at zero", {"biases": False}),
    ]
    if eps != 1e-5:
        mistakes.append(
            Mistake(
                "eps",
                f"LayerNorm eps 1e-5 (gptlib's default) where this GPT-2's config says layer_norm_epsilon={eps:g}",
                {"eps": 1e-5},
            )
        )
    for perm in itertools.permutations(range(3)):
        if perm != (0, 1, 2):
            names = ", ".join(f"{_ROLES[k]} <- c_attn's {_ROLES[j]}" for k, j in enumerate(perm) if k != j)
            mistakes.append(
                Mistake("qkv-order", f"c_attn's parts in the wrong layers ({names})", {"order": perm})
            )
    for h in _divisor_heads(C, H):
        mistakes.append(
            Mistake("n-head", f"n_head = {h} instead of the config's n_head = {H}", {"n_head": h})
        )
    return mistakes


def _match_block(
    y: torch.Tensor, x: torch.Tensor, hf_block: Any, hf_config: Any
) -> tuple[Mistake, ...] | None:
    mistakes = _block_mistakes(hf_config)

    def output(**kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            return _block_from_hf(hf_block, hf_config, **kwargs)(x)

    return find_mistake(mistakes, lambda **kwargs: _close(y, output(**kwargs), 2e-5, 1e-4))


def _parameter_shapes(ex: str, what: str, module: nn.Module, hf_config: Any) -> None:
    """If the learner's module has a gptlib Block's parameter names, each must have a Block's shape."""
    C = hf_config.n_embd
    expected = {
        "ln1.weight": (C,), "ln1.bias": (C,), "ln2.weight": (C,), "ln2.bias": (C,),
        "attn.query.weight": (C, C), "attn.key.weight": (C, C), "attn.value.weight": (C, C),
        "attn.proj.weight": (C, C), "mlp.fc.weight": (4 * C, C), "mlp.fc.bias": (4 * C,),
        "mlp.proj.weight": (C, 4 * C), "mlp.proj.bias": (C,),
    }  # fmt: skip
    params = dict(module.named_parameters())
    wrong = [
        f"{name} {tuple(params[name].shape)} (expected {shape})"
        for name, shape in expected.items()
        if name in params and tuple(params[name].shape) != shape
    ]
    if wrong:
        transposed = any(
            name in params and tuple(params[name].shape) == shape[::-1] and len(shape) == 2
            for name, shape in expected.items()
        )
        why = (
            " These are GPT-2's Conv1D shapes (in, out): nn.Linear keeps (out, in), so copy the weight transposed, "
            "theirs.weight.t()."
            if transposed
            else ""
        )
        raise CheckFailure(
            ex, "shape-mismatch", f"{what}: parameters of the wrong shape: {', '.join(wrong)}.{why}"
        )


def _check_block_output(
    ex: str, what: str, block: nn.Module, x: torch.Tensor, want: torch.Tensor, hf_block: Any, hf_config: Any
) -> None:
    """The learner's block on x must give want (Hugging Face's block output); else name the mistake."""
    with torch.no_grad():
        y = call(ex, f"{what} on x of shape {shape_str(x)}", block, x)
    if isinstance(y, (tuple, list)) and len(y) >= 1 and isinstance(y[0], torch.Tensor):
        y = y[0]  # a block that also returns attention weights or a cache
    y = expect_tensor(ex, f"{what}(x)", y, shape=tuple(x.shape), dtype=x.dtype)
    if _close(y, want, 1e-5):
        return
    found = _match_block(y, x, hf_block, hf_config)
    diff = max_diff(y, want)
    if found:
        size = ""
        if found[0].code == "exact-gelu" and len(found) == 1:
            size = (
                f" The largest difference from GPT-2's block is only {diff:.1e}, the size of the gap between "
                "the two GELUs: close, but not the same function."
            )
        raise matched_failure(ex, f"{what}(x)", found, note=size)
    raise CheckFailure(
        ex,
        "wrong-values",
        f"{what}(x) differs from GPT-2's block: {fraction_close(y, want):.0%} of the values match "
        f"(largest difference {diff:.3g}), and it matches none of the usual mistakes.",
    )


@isolated
def check_convert_block(convert_block: Any) -> None:
    """Check `convert_block(hf_block, hf_config) -> Block`: the same outputs as GPT-2's block (to 1e-5)."""
    ex = _BLOCK
    if isinstance(convert_block, type) or not callable(convert_block):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {convert_block!r:.80}.")
    configs = (
        (3, dict()),  # GPT-2 small's settings at a small size: tanh GELU, eps 1e-5
        (4, dict(n_embd=16, n_head=2, n_positions=12, layer_norm_epsilon=1e-3)),
    )
    count = 0
    for seed, fields in configs:
        hf = _random_gpt2(ex, seed, **fields)
        cfg = hf.config
        idx = torch.randint(cfg.vocab_size, (2, cfg.n_positions))
        run = _hf_run(hf, idx)
        for i, hf_block in enumerate(hf.transformer.h):
            what = f"convert_block(hf.transformer.h[{i}], hf.config) for n_embd={cfg.n_embd}, n_head={cfg.n_head}"
            before = _snapshot(hf_block)
            block = _call_converting(ex, what, convert_block, hf_block, cfg)
            _untouched(ex, what, hf_block, before)
            if block is None:
                raise CheckFailure(ex, "returned-none", f"{what} returned None: is `return block` missing?")
            if not isinstance(block, nn.Module):
                raise CheckFailure(
                    ex,
                    "not-a-module",
                    f"{what} returned a {type(block).__name__}; expected the Block you built.",
                )
            _not_transformers(ex, what, block, "a gptlib Block")
            _parameter_shapes(ex, f"the block from {what}", block, cfg)
            if _random_in_training(ex, "your block", block, run.block_in[i]):
                raise CheckFailure(
                    ex,
                    "train-mode",
                    f"{what} returned a block in training mode, with dropout on: two calls on the same input "
                    "give different outputs. GPT-2's block is in eval mode: return block.eval().",
                )
            _check_block_output(ex, "your block", block, run.block_in[i], run.block_out[i], hf_block, cfg)
            count += 1
    passed(
        ex,
        f"{count} blocks of 2 GPT-2 configs give Hugging Face's block outputs to 1e-5 (tanh GELU, LayerNorm eps "
        "and n_head from the config; every Conv1D weight transposed); GPT-2's weights left untouched.",
    )


# ==== 9.3 convert_gpt2 ==============================================================================

_register(
    _MODEL,
    levels=[
        "A GPT is the embeddings (token table wte, position table wpe), the blocks, and the head (ln_f and the "
        "output layer). Build GPT(config) with a config read from hf_model.config, copy the embeddings and ln_f, "
        "put convert_block(...) in place of each block, and give the head GPT-2's output matrix. GPT-2 has "
        "no head matrix of its own: lm_head.weight IS wte (tied).",
        "hf = hf_model.transformer. tok_emb.weight <- hf.wte.weight (V, C). pos_emb is (1, T, C), wpe.weight "
        "(T, C): copy hf.wpe.weight.unsqueeze(0) (or into pos_emb[0]). model.blocks[i] = convert_block(hf.h[i], "
        "hf_model.config). head.ln_f <- hf.ln_f. head.proj.weight <- hf_model.lm_head.weight (= wte, "
        "(V, C), already nn.Linear's (out, in) layout: no transpose). Return model.eval().",
        "c = hf_model.config\n"
        "config = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer,\n"
        "                   n_head=c.n_head, n_embd=c.n_embd, gelu_approximate='tanh',\n"
        "                   layer_norm_eps=c.layer_norm_epsilon)\n"
        "model = GPT(config)\n"
        "t = hf_model.transformer\n"
        "with torch.no_grad():\n"
        "    model.embeddings.tok_emb.weight.copy_(t.wte.weight)\n"
        "    model.embeddings.pos_emb.copy_(t.wpe.weight.unsqueeze(0))\n"
        "    for i, hf_block in enumerate(t.h):\n"
        "        model.blocks[i] = convert_block(hf_block, c)\n"
        "    model.head.ln_f.weight.copy_(t.ln_f.weight); model.head.ln_f.bias.copy_(t.ln_f.bias)\n"
        "    model.head.proj.weight.copy_(hf_model.lm_head.weight)   # = wte: GPT-2 ties them\n"
        "return model.eval()",
    ],
    diagnoses={
        "head": "GPT-2's output layer is its token table: copy hf_model.lm_head.weight (the same tensor as "
        "transformer.wte.weight) into model.head.proj.weight, as it is: (V, C) is already nn.Linear's layout.",
        "head-transposed": "wte is (V, C), which is already nn.Linear(C, V)'s weight layout: no .t() for the head.",
        "wte": "copy hf_model.transformer.wte.weight into model.embeddings.tok_emb.weight.",
        "wpe": "copy hf_model.transformer.wpe.weight (T, C) into model.embeddings.pos_emb (1, T, C): "
        "pos_emb.copy_(wpe.weight.unsqueeze(0)).",
        "pos-shape": "keep pos_emb's shape (1, T, C): copy into it with copy_ instead of replacing it.",
        "ln-f": "copy the final LayerNorm: hf_model.transformer.ln_f -> model.head.ln_f (weight and bias).",
        "block": "run check_convert_block(convert_block) first; each block must be convert_block(hf.h[i], config).",
        "config": "read every size from hf_model.config: vocab_size, n_positions (block_size), n_layer, n_head, "
        "n_embd.",
        "shape-mismatch": "compare shapes: print(name, tuple(p.shape)) for your model's named_parameters and "
        "GPT-2's; Conv1D weights need .t(), the embeddings and the head do not.",
        "modified-hf": "never write into the Hugging Face model: copy_ into YOUR model's tensors.",
        "train-mode": "return model.eval(): GPT(config) starts in training mode, with dropout on.",
        "not-a-module": "return the GPT you built.",
        "not-converted": "build gptlib's model (Block or GPT) and copy GPT-2's weights into it; returning "
        "Hugging Face's own model proves nothing.",
        "wrong-values": "compare your model's logits with hf_model(idx).logits one part at a time: the embeddings, "
        "each block, the head.",
    },
)


def _logits_of(ex: str, what: str, model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = call(ex, what, model, idx)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]  # gptlib's (logits, loss)
    elif not isinstance(out, torch.Tensor) and isinstance(getattr(out, "logits", None), torch.Tensor):
        out = out.logits
    return out


def _parts_of_gpt(
    ex: str, model: nn.Module, hf: Any, run: _HFRun, idx: torch.Tensor
) -> Iterator[tuple[str, bool, CheckFailure]]:
    """For a model laid out like gptlib's GPT: (part, is it right, the failure if not), part by part."""
    t, C, T = hf.transformer, hf.config.n_embd, hf.config.n_positions
    emb, head = model.embeddings, model.head
    pos = emb.pos_emb
    if tuple(pos.shape) != (1, T, C):
        yield (
            "positions",
            False,
            CheckFailure(
                ex,
                "pos-shape",
                f"model.embeddings.pos_emb has shape {shape_str(pos)}; gptlib keeps (1, {T}, {C}) (wpe.weight is ({T}, {C})). "
                "Copy into it: model.embeddings.pos_emb.copy_(wpe.weight.unsqueeze(0)).",
            ),
        )
        return
    yield (
        "token table",
        _close(emb.tok_emb.weight, t.wte.weight, 1e-6),
        CheckFailure(
            ex, "wte", "model.embeddings.tok_emb.weight is not GPT-2's token table transformer.wte.weight."
        ),
    )
    yield (
        "position table",
        _close(pos[0], t.wpe.weight, 1e-6),
        CheckFailure(
            ex, "wpe", "model.embeddings.pos_emb is not GPT-2's position table transformer.wpe.weight."
        ),
    )
    for i, block in enumerate(model.blocks):
        with torch.no_grad():
            y = call(ex, f"model.blocks[{i}]", block, run.block_in[i])
        if isinstance(y, (tuple, list)):
            y = y[0]
        yield (
            f"block {i}",
            _close(y, run.block_out[i], 1e-5),
            CheckFailure(
                ex,
                "block",
                f"model.blocks[{i}] does not compute what GPT-2's block {i} computes (largest difference "
                f"{max_diff(y, run.block_out[i]) if y.shape == run.block_out[i].shape else float('nan'):.3g}). "
                "Put convert_block(hf_model.transformer.h[i], hf_model.config) there, and check it with "
                "check_convert_block first.",
            ),
        )
    ln_ok = _close(head.ln_f.weight, t.ln_f.weight, 1e-6) and _close(head.ln_f.bias, t.ln_f.bias, 1e-6)
    eps_ok = abs(head.ln_f.eps - hf.config.layer_norm_epsilon) < 1e-12
    yield (
        "final LayerNorm",
        ln_ok and eps_ok,
        CheckFailure(
            ex,
            "ln-f",
            "model.head.ln_f is not GPT-2's final LayerNorm transformer.ln_f"
            + ("" if ln_ok else " (weight and bias)")
            + (
                ""
                if eps_ok
                else f" (its eps is {head.ln_f.eps:g}, GPT-2's layer_norm_epsilon {hf.config.layer_norm_epsilon:g})"
            )
            + ".",
        ),
    )
    w = head.proj.weight
    if w.shape == t.wte.weight.t().shape and w.shape != t.wte.weight.shape:
        code, extra = "head-transposed", " It is wte transposed: wte (V, C) is already nn.Linear's (out, in)."
    else:
        code, extra = "head", ""
    yield (
        "output head",
        _close(w, t.wte.weight, 1e-6),
        CheckFailure(
            ex,
            code,
            "model.head.proj.weight is not GPT-2's output matrix, which is its token table (lm_head.weight is "
            f"transformer.wte.weight: tied).{extra}",
        ),
    )


def _optional(ex: str, what: str, method: Any, *args: Any) -> Any:
    """A gptlib GPT's extra (attention_maps, generate), or None for a model without it."""
    return call(ex, what, method, *args) if callable(method) else None


@isolated
def check_convert_gpt2(convert_gpt2: Any) -> None:
    """Check `convert_gpt2(hf_model) -> GPT`: Hugging Face GPT-2's logits, attention maps and greedy tokens."""
    ex = _MODEL
    if isinstance(convert_gpt2, type) or not callable(convert_gpt2):
        raise CheckFailure(ex, "not-callable", f"pass your function itself, got {convert_gpt2!r:.80}.")
    hf = _random_gpt2(ex, 5, n_layer=3)
    cfg = hf.config
    V, T = cfg.vocab_size, cfg.n_positions
    idx = torch.randint(V, (2, T))
    run = _hf_run(hf, idx)
    what = "convert_gpt2(hf_model)"
    before = _snapshot(hf)
    model = _call_converting(
        ex,
        what,
        convert_gpt2,
        hf,
        why=f"Two shapes clash: compare them with GPT-2's (vocab_size {V}, n_positions {T}, n_embd "
        f"{cfg.n_embd}). The config's sizes come from hf_model.config; the Conv1D weights need .t(), the "
        "tables and the head do not.",
    )
    _untouched(ex, what, hf, before)
    if model is None:
        raise CheckFailure(ex, "returned-none", f"{what} returned None: is `return model` missing?")
    if not isinstance(model, nn.Module):
        raise CheckFailure(ex, "not-a-module", f"{what} returned a {type(model).__name__}; expected a GPT.")
    _not_transformers(ex, what, model, "a gptlib GPT")
    if _random_in_training(ex, "your model(idx)", model, idx):
        raise CheckFailure(
            ex,
            "train-mode",
            f"{what} returned a model in training mode, with dropout on: two calls on the same idx give "
            "different logits. GPT-2 came in eval mode: return model.eval().",
        )
    gpt_like = all(hasattr(model, n) for n in ("embeddings", "blocks", "head"))
    if gpt_like:
        config = getattr(model, "config", None)
        sizes = {
            "vocab_size": V,
            "block_size": T,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_embd": cfg.n_embd,
        }
        off = {k: (getattr(config, k, None), v) for k, v in sizes.items() if getattr(config, k, v) != v}
        if off or len(model.blocks) != cfg.n_layer:
            listing = ", ".join(f"{k}={mine} (GPT-2: {theirs})" for k, (mine, theirs) in off.items())
            raise CheckFailure(
                ex,
                "config",
                f"your model's config does not match GPT-2's: {listing or f'{len(model.blocks)} blocks'}.",
            )
        for _, ok, failure in _parts_of_gpt(ex, model, hf, run, idx):
            if not ok:
                raise failure
    for inp in (idx, idx[:, :5]):
        w = f"your model(idx of shape {shape_str(inp)})"
        logits = expect_tensor(ex, w, _logits_of(ex, w, model, inp), shape=(inp.size(0), inp.size(1), V))
        want = run.logits[:, : inp.size(1)]
        if not _close(logits, want, 1e-4, 1e-4):
            raise CheckFailure(
                ex,
                "wrong-values",
                f"{w}: {fraction_close(logits, want):.0%} of the logits match Hugging Face's GPT-2 (largest "
                f"difference {max_diff(logits, want):.3g}).",
            )
    verified = [f"logits of Hugging Face's GPT-2 ({cfg.n_layer} layers) to 1e-4"]
    maps = _optional(ex, "model.attention_maps(idx)", getattr(model, "attention_maps", None), idx)
    if maps is not None:
        if len(maps) != len(run.maps) or not all(
            _close(a, e, 1e-5) for a, e in zip(maps, run.maps, strict=True)
        ):
            raise CheckFailure(
                ex, "wrong-values", "the logits match, but model.attention_maps(idx) differs from GPT-2's."
            )
        verified.append("the same attention maps")
    prompt = idx[:, :4]
    got = _optional(ex, "model.generate(prompt, 6)", getattr(model, "generate", None), prompt, 6)
    if got is not None:
        with torch.no_grad():
            want = prompt
            for _ in range(6):  # greedy decoding with Hugging Face's model, one token at a time
                nxt = hf(want).logits[:, -1].argmax(-1, keepdim=True)
                want = torch.cat([want, nxt], dim=1)
        if not (isinstance(got, torch.Tensor) and torch.equal(got, want)):
            raise CheckFailure(ex, "wrong-values", "greedy generation gives other tokens than GPT-2's.")
        verified.append("the same greedy tokens")
    if gpt_like:
        tied = model.head.proj.weight is model.embeddings.tok_emb.weight
        verified.append("head tied to the token table, as in GPT-2" if tied else "head an equal copy of wte")
    passed(ex, "; ".join(verified) + "; GPT-2's weights left untouched.")
