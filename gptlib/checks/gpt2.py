"""Checks for lesson 09 (GPT-2 is your GPT): split_c_attn, convert_block, convert_gpt2.

Every check builds a small GPT-2 with random weights (Hugging Face's
GPT2LMHeadModel: a few layers, 16 to 32 channels, every weight random, biases and
LayerNorm gains too, so a weight copied to the wrong place shows) and compares
what the learner's conversion computes with what Hugging Face's model computes:
the logits, the attention maps and each block's output (caught with hooks during
one forward pass of the check's own copy, so GPT-2's own causal mask is in force).
The learner's conversion gets an identical copy, built on its side of the boundary.

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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from gptlib.block import Block
from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    Tree,
    attribute,
    build,
    find_mistake,
    fraction_close,
    matched,
    max_diff,
    parameters,
    seeded,
    shape_str,
    submodule,
    tensors_close,
    type_name,
)
from gptlib.checks.learner import Ref, Spec
from gptlib.checks.probes import expect_callable, expect_tensor, untouched
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings
from gptlib.head import LMHead

__all__ = ["check_split_c_attn", "check_convert_block", "check_convert_gpt2"]

_ROLES = ("query", "key", "value")
_SHARED = (C.NOT_CALLABLE, C.NO_TRANSFORMERS, C.RETURNED_NONE, C.WRONG_VALUES, C.IN_PLACE)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> bool:
    return tensors_close(a, b, atol, rtol)


# ---- a small random GPT-2 and what it computes ----------------------------------------------------


def _random_gpt2(ex: Exercise, seed: int, **config: Any) -> tuple[Any, Ref]:
    """A GPT2LMHeadModel in eval mode with every parameter random (std 0.1; LayerNorm gains near 1): the
    check's own, and an identical one on the learner's side."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        raise ex.fail(
            C.NO_TRANSFORMERS,
            "this check compares your code with Hugging Face's GPT-2, which needs the 'transformers' package, "
            'and it cannot be imported here. Install it (pip install "gptlib-course[gpt2]", or pip install '
            "transformers), restart the kernel, and run the check again.",
        ) from None
    fields: dict[str, Any] = dict(
        vocab_size=61, n_positions=16, n_layer=2, n_head=4, n_embd=32, bos_token_id=None, eos_token_id=None
    )
    fields.update(config)
    with seeded(seed):
        hf = GPT2LMHeadModel(
            GPT2Config(**fields, attn_implementation="eager")
        ).eval()  # eager: it returns maps
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if "ln_" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
    state = {n: t.detach().clone() for n, t in [*hf.named_parameters(), *hf.named_buffers()]}
    with seeded(seed):  # its random init draws from a stream of its own
        return hf, build(Spec("GPT2LMHeadModel", kwargs=fields, state=state, train=False))


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

    def keep(i: int) -> Any:
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


def _same_maps(got: Any, want: list[torch.Tensor]) -> bool:
    """Attention maps, one (B, nh, T, T) per layer, equal to GPT-2's."""
    return len(got) == len(want) and all(_close(a, e, 1e-5) for a, e in zip(got, want, strict=True))


def _in_eval_mode(ex: Exercise, calling: str, module: Ref, x: torch.Tensor, failure: str) -> None:
    """A module in training mode whose two calls on x differ (dropout at work) fails with `failure`."""
    if not module.info.training:
        return
    with torch.no_grad():
        a, b = ex.call(calling, module, x), ex.call(calling, module, x)
    a, b = (t[0] if isinstance(t, (tuple, list)) else t for t in (a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and not torch.equal(a, b):
        raise ex.fail(C.TRAIN_MODE, failure)


_CONV1D_CLASH = (
    "A shape clash while copying GPT-2's weights usually means a Conv1D weight, stored (in, out), was copied "
    "into an nn.Linear weight, stored (out, in), without .t()."
)
_CLASHES = ("must match the size", "size mismatch", "shapes cannot be multiplied", "expand")


def _convert(
    ex: Exercise, what: str, fn: Ref, theirs: Ref, *args: Any, to: str, why: str = _CONV1D_CLASH
) -> Ref:
    """The learner's conversion of GPT-2's `theirs` to a gptlib `to` ("block" or "model"): a copy between
    mismatched shapes gets its own diagnosis; GPT-2's weights must stay as they were; the result must be a
    module (not None, not a state dict) and not a Hugging Face one."""
    before = parameters(theirs)
    try:
        module = ex.call(what, fn, theirs, *args)
    except CheckFailure as e:
        if e.diagnosis == C.CRASHED and any(s in e.message for s in _CLASHES):
            raise ex.fail(C.SHAPE_MISMATCH, f"{what} raised {ex.error_only(e)}. {why}", e.crash) from None
        raise
    changed = [k for k, v in parameters(theirs).items() if not torch.equal(v, before[k])]
    if changed:
        raise ex.fail(
            C.IN_PLACE,
            f"{what} changed GPT-2's own weights: {changed[:4]}. Read from the Hugging Face model, never write "
            "to it: .t() makes a transposed view (t_() transposes in place), and copy_ goes INTO your "
            "model's tensor: mine.weight.copy_(theirs.weight.t()).",
        )
    cls, expected = ("Block", "the Block you built") if to == "block" else ("GPT", "a GPT")
    if module is None:
        raise ex.fail(C.RETURNED_NONE, f"{what} returned None: is `return {to}` missing?")
    if not isinstance(module, Ref) or module.info.kind != "module":
        raise ex.fail(C.NOT_A_MODULE, f"{what} returned a {type_name(module)}; expected {expected}.")
    if module.info.classes[0].startswith("transformers."):
        raise ex.fail(
            C.NOT_CONVERTED,
            f"{what} returned a Hugging Face {module.info.type_name}, not a gptlib {cls}: build gptlib's and "
            "copy GPT-2's weights into it.",
        )
    return module


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
    C_ = hf_config.n_embd
    config = GPTConfig(
        vocab_size=1, block_size=hf_config.n_positions, n_layer=1, n_head=n_head or hf_config.n_head, n_embd=C_,
        embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, gelu_approximate=gelu,
        layer_norm_eps=hf_config.layer_norm_epsilon if eps is None else eps,
    )  # fmt: skip
    with seeded(0):
        block = Block(config).eval()

    def linear(w: torch.Tensor, transpose: bool = True) -> torch.Tensor:
        """A Conv1D weight (in, out) in nn.Linear's (out, in) layout (or one of the ways to get it wrong)."""
        return w.reshape(w.shape[1], w.shape[0]) if reshape else (w.t() if transpose else w)

    def copy(layer: nn.Linear, w: torch.Tensor, b: torch.Tensor, transpose: bool = True) -> None:
        layer.weight.copy_(linear(w, transpose))
        layer.bias.copy_(b if biases else torch.zeros_like(b))

    lns = [(block.ln1, hf_block.ln_1), (block.ln2, hf_block.ln_2)]
    with torch.no_grad():
        for mine, theirs in lns if ln != "swapped" else [(lns[0][0], lns[1][1]), (lns[1][0], lns[0][1])]:
            mine.weight.copy_(theirs.weight if ln != "default" else torch.ones_like(mine.weight))
            mine.bias.copy_(theirs.bias if ln != "default" else torch.zeros_like(mine.bias))
        w_parts = hf_block.attn.c_attn.weight.split(C_, dim=1)  # [query | key | value], each (C, C)
        b_parts = hf_block.attn.c_attn.bias.split(C_)
        for name, j in zip(_ROLES, order, strict=True):
            copy(getattr(block.attn, name), w_parts[j], b_parts[j], qkv_t)
        copy(block.attn.proj, hf_block.attn.c_proj.weight, hf_block.attn.c_proj.bias, proj_t)
        copy(block.mlp.fc, hf_block.mlp.c_fc.weight, hf_block.mlp.c_fc.bias)
        copy(block.mlp.proj, hf_block.mlp.c_proj.weight, hf_block.mlp.c_proj.bias)
    return block


# ==== 9.1 split_c_attn ==============================================================================

SPLIT = Exercise(
    "split_c_attn",
    [*_SHARED, C.NO_TRANSPOSE, C.ORDER, C.WRONG_AXIS, C.INTERLEAVED, C.NOT_SPLIT, C.WRONG_SHAPE, C.BIAS_NOT_SPLIT,
     C.BIAS_MISSING, C.WRONG_RETURN, C.FIXED_SIZE, C.WRONG_DTYPE, C.NAN, C.NOT_A_TENSOR, C.RETURNED_TUPLE],
)  # fmt: skip


def _as_pairs(ex: Exercise, out: Any, what: str) -> dict[str, tuple[Any, Any]]:
    """The learner's result as {role: (weight, bias)}: a dict with query/key/value, or three pairs in order."""
    expected = '{"query": (w_q, b_q), "key": (w_k, b_k), "value": (w_v, b_v)}'
    if out is None:
        raise ex.fail(C.RETURNED_NONE, f"{what} returned None; expected {expected}.")
    if isinstance(out, dict):
        keys = list(out)
        if sorted(map(str, keys)) != sorted(_ROLES):
            raise ex.fail(C.WRONG_RETURN, f"{what} returned a dict with keys {keys}; expected {expected}.")
        items = [out[r] for r in _ROLES]
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        items = list(out)
    else:
        got = f"a {type_name(out)}" + (f" of {len(out)} items" if isinstance(out, (tuple, list)) else "")
        raise ex.fail(C.WRONG_RETURN, f"{what} returned {got}; expected {expected}.")
    pairs = {}
    for role, item in zip(_ROLES, items, strict=True):
        if isinstance(item, torch.Tensor):
            raise ex.fail(
                C.BIAS_MISSING,
                f'{what}: "{role}" is one tensor of shape {shape_str(item)}; expected a pair (weight, bias).',
            )
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ex.fail(
                C.WRONG_RETURN, f'{what}: "{role}" is {item!r:.60}; expected a pair (weight, bias).'
            )
        if item[1] is None:
            raise ex.fail(
                C.BIAS_MISSING, f'{what}: the bias of "{role}" is None; GPT-2\'s c_attn has a bias.'
            )
        pairs[role] = (item[0], item[1])
    return pairs


def _split_weight_failure(
    ex: Exercise, what: str, role: str, got: torch.Tensor, W: torch.Tensor
) -> CheckFailure:
    """Name the mistake that gives this (C, C) matrix from the (C, 3C) weight W, if a known one does."""
    C_ = W.size(0)
    blocks = [W[:, j * C_ : (j + 1) * C_] for j in range(3)]
    rows, interleaved = W.reshape(3, C_, C_), W.reshape(C_, C_, 3)
    i = _ROLES.index(role)
    for j in range(3):
        if _close(got, blocks[j].t(), 1e-6):  # i != j here: the right block was tested before
            return ex.fail(
                C.ORDER,
                f'{what}: your "{role}" weight is GPT-2\'s {_ROLES[j]} (columns {j * C_}..{(j + 1) * C_ - 1} of '
                f"c_attn); the {role} is columns {i * C_}..{(i + 1) * C_ - 1}.",
            )
    for j in range(3):
        if _close(got, blocks[j], 1e-6):
            order = "" if i == j else f" (and it is the {_ROLES[j]}'s block, not the {role}'s)"
            return ex.fail(
                C.NO_TRANSPOSE,
                f'{what}: your "{role}" weight is the right block of c_attn, but not transposed{order}: '
                "Conv1D stores (in, out), nn.Linear (out, in).",
            )
    if any(_close(got, t, 1e-6) for j in range(3) for t in (rows[j], rows[j].t())):
        return ex.fail(
            C.WRONG_AXIS,
            f'{what}: your "{role}" weight is made of ROWS of c_attn (a reshape of the flat matrix, or a '
            "split along dim 0); query, key and value are side by side in its columns (dim 1).",
        )
    if any(_close(got, t, 1e-6) for j in range(3) for t in (interleaved[:, :, j], interleaved[:, :, j].t())):
        return ex.fail(
            C.INTERLEAVED,
            f'{what}: your "{role}" weight takes every third column of c_attn (a view(C, C, 3) or '
            "view(C, 3, C) of the wrong matrix): the three blocks are contiguous, C columns each.",
        )
    want = blocks[i].t()
    return ex.fail(
        C.WRONG_VALUES,
        f'{what}: your "{role}" weight has the right shape, but {fraction_close(got, want):.0%} of its values '
        f"are right (largest difference {max_diff(got, want):.3g}).",
    )


def _check_split_call(ex: Exercise, fn: Ref, W: torch.Tensor, b: torch.Tensor, done: str) -> dict[str, tuple]:
    """Run split_c_attn on one c_attn and check each part; returns the learner's parts."""
    what = f"split_c_attn(weight {shape_str(W)}, bias {shape_str(b)})"
    take_c = "take C from the input (C = weight.size(0)) instead of a fixed number."
    try:
        value = untouched(ex, what, ex.run(what, fn, W, b), "the weight or bias it was given")
        return _check_parts(ex, what, value, W, b)
    except CheckFailure as e:  # a failure for the second size only: C was fixed to the first
        if done and e.diagnosis == C.CRASHED:
            message = f"{what} raised {ex.error_only(e)}, but it worked for {done}: {take_c}"
            raise ex.fail(C.FIXED_SIZE, message, e.crash) from None
        if done and e.diagnosis in (C.WRONG_SHAPE, C.WRONG_RETURN, C.NOT_SPLIT, C.WRONG_AXIS):
            raise ex.fail(C.FIXED_SIZE, f"{e.message} It worked for {done}: {take_c}") from None
        raise


def _check_parts(ex: Exercise, what: str, out: Any, W: torch.Tensor, b: torch.Tensor) -> dict[str, tuple]:
    C_ = W.size(0)
    pairs = _as_pairs(ex, out, what)
    for role, (w, bias) in pairs.items():
        i = _ROLES.index(role)
        if not isinstance(w, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise ex.fail(C.WRONG_RETURN, f'{what}: "{role}" must be a pair of tensors (weight, bias).')
        shape = tuple(w.shape)
        if shape != (C_, C_):
            if shape in ((C_, 3 * C_), (3 * C_, C_)):
                raise ex.fail(
                    C.NOT_SPLIT, f'{what}: your "{role}" weight has shape {shape}: c_attn was not split.'
                )
            if C_ % 3 == 0 and shape in ((C_ // 3, 3 * C_), (3 * C_, C_ // 3)):
                raise ex.fail(
                    C.WRONG_AXIS,
                    f'{what}: your "{role}" weight has shape {shape}: you cut c_attn along the wrong axis. '
                    f"Its three ({C_}, {C_}) blocks sit side by side along dim 1.",
                )
            raise ex.fail(
                C.WRONG_SHAPE, f'{what}: your "{role}" weight has shape {shape}; expected ({C_}, {C_}).'
            )
        if tuple(bias.shape) != (C_,):
            code = C.BIAS_NOT_SPLIT if tuple(bias.shape) == (3 * C_,) else C.WRONG_SHAPE
            raise ex.fail(
                code, f'{what}: the bias of "{role}" has shape {shape_str(bias)}; expected ({C_},).'
            )
        expect_tensor(ex, f'{what}["{role}"] weight', w, dtype=W.dtype)
        if not _close(w, W[:, i * C_ : (i + 1) * C_].t(), 1e-6):
            raise _split_weight_failure(ex, what, role, w, W)
        want_b = b[i * C_ : (i + 1) * C_]
        if not _close(bias, want_b, 1e-6):
            for j in range(3):
                if _close(bias, b[j * C_ : (j + 1) * C_], 1e-6):
                    raise ex.fail(
                        C.ORDER,
                        f'{what}: the bias of "{role}" is GPT-2\'s {_ROLES[j]} bias (values {j * C_}..'
                        f"{(j + 1) * C_ - 1}); the {role}'s are {i * C_}..{(i + 1) * C_ - 1}.",
                    )
            if _close(bias, b.reshape(C_, 3)[:, i], 1e-6):
                raise ex.fail(
                    C.INTERLEAVED, f'{what}: the bias of "{role}" takes every third value of c_attn\'s bias.'
                )
            raise ex.fail(
                C.WRONG_VALUES,
                f'{what}: {fraction_close(bias, want_b):.0%} of the values of "{role}"\'s bias are right.',
            )
    return pairs


@SPLIT.check
def check_split_c_attn(fn: Ref) -> None:
    """Check `split_c_attn(weight (C, 3C), bias (3C,))` -> {"query"/"key"/"value": (weight (C, C), bias (C,))}
    in nn.Linear's layout, against Hugging Face's GPT-2 (its logits and attention maps)."""
    ex = SPLIT
    expect_callable(ex, fn, "split_c_attn")
    from gptlib.gpt2 import from_hf_gpt2

    done: list[str] = []
    verified = []
    for seed, sizes in ((1, dict(n_embd=24, n_head=4)), (2, dict(n_embd=16, n_head=2, n_layer=1))):
        hf, _ = _random_gpt2(ex, seed, **sizes)
        model = from_hf_gpt2(hf).eval()  # gptlib's conversion; query/key/value then replaced by the learner's
        for i, hf_block in enumerate(hf.transformer.h):
            attn = hf_block.attn.c_attn
            pairs = _check_split_call(ex, fn, attn.weight.detach(), attn.bias.detach(), ", ".join(done))
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
        if not _close(logits, run.logits, 1e-4) or not _same_maps(maps, run.maps):
            raise ex.fail(  # the parts were right one by one; this would be a gptlib bug, not the learner's
                C.WRONG_VALUES,
                "your parts are right, yet the model differs from Hugging Face's GPT-2: please report this.",
            )
        verified.append(f"C = {sizes['n_embd']}, {hf.config.n_layer} layer(s)")
    ex.passed(
        f"c_attn split into query, key, value and transposed ({'; '.join(verified)}); with your weights "
        "gptlib's GPT gives Hugging Face GPT-2's logits and attention maps."
    )


# ==== 9.2 convert_block =============================================================================

CONVERT_BLOCK = Exercise(
    "convert_block",
    [*_SHARED, C.EXACT_GELU, C.EPS, C.N_HEAD, C.QKV_NOT_TRANSPOSED, C.QKV_ORDER, C.PROJ_NOT_TRANSPOSED,
     C.RESHAPE_NOT_TRANSPOSE, C.LN_SWAPPED, C.LN_NOT_COPIED, C.BIASES_MISSING, C.SHAPE_MISMATCH, C.NOT_A_MODULE,
     C.NOT_CONVERTED, C.TRAIN_MODE, *C.TENSOR],
)  # fmt: skip


def _block_mistakes(hf_config: Any) -> list[Mistake]:
    eps, H, C_ = hf_config.layer_norm_epsilon, hf_config.n_head, hf_config.n_embd
    mistakes = [
        Mistake(C.EXACT_GELU, "a block with the exact GELU (gelu_approximate='none') where GPT-2 uses the "
                "tanh approximation ('gelu_new')", {"gelu": "none"}),
        Mistake(C.QKV_NOT_TRANSPOSED, "query, key and value copied from c_attn without .t() (Conv1D keeps "
                "(in, out))", {"qkv_t": False}),
        Mistake(C.PROJ_NOT_TRANSPOSED, "attn.c_proj's weight copied without .t()", {"proj_t": False}),
        Mistake(C.RESHAPE_NOT_TRANSPOSE, "every Conv1D weight reshaped (.view/.reshape) to nn.Linear's "
                "shape instead of transposed", {"reshape": True}),
        Mistake(C.LN_SWAPPED, "ln_1 and ln_2 swapped (ln_2 before attention)", {"ln": "swapped"}),
        Mistake(C.LN_NOT_COPIED, "LayerNorms that were not copied (gain 1, bias 0)", {"ln": "default"}),
        Mistake(C.BIASES_MISSING, "the Linear layers' biases left at zero", {"biases": False}),
    ]  # fmt: skip
    if eps != 1e-5:
        says = (
            f"LayerNorm eps 1e-5 (gptlib's default) where this GPT-2's config says layer_norm_epsilon={eps:g}"
        )
        mistakes.append(Mistake(C.EPS, says, {"eps": 1e-5}))
    for perm in itertools.permutations(range(3)):
        if perm != (0, 1, 2):
            names = ", ".join(f"{_ROLES[k]} <- c_attn's {_ROLES[j]}" for k, j in enumerate(perm) if k != j)
            mistakes.append(
                Mistake(C.QKV_ORDER, f"c_attn's parts in the wrong layers ({names})", {"order": perm})
            )
    for h in (h for h in (1, 2, 4, 8, 12) if C_ % h == 0 and h != H):
        mistakes.append(
            Mistake(C.N_HEAD, f"n_head = {h} instead of the config's n_head = {H}", {"n_head": h})
        )
    return mistakes


_BLOCK_SHAPES = {"ln1.weight": (1,), "ln1.bias": (1,), "ln2.weight": (1,), "ln2.bias": (1,), "mlp.fc.bias": (4,),
                 "mlp.proj.bias": (1,), "mlp.fc.weight": (4, 1), "mlp.proj.weight": (1, 4),
                 **{f"attn.{n}.weight": (1, 1) for n in (*_ROLES, "proj")}}  # fmt: skip  # in units of C


_CONV1D_SHAPES = (
    " These are GPT-2's Conv1D shapes (in, out): nn.Linear keeps (out, in), so copy the weight transposed, "
    "theirs.weight.t()."
)


def _parameter_shapes(
    ex: Exercise, what: str, params: dict[str, torch.Tensor], C_: int, prefix: str = ""
) -> None:
    """If the learner's module has a gptlib Block's parameter names, each must have a Block's shape."""
    expected = {prefix + n: tuple(C_ * k for k in s) for n, s in _BLOCK_SHAPES.items()}
    wrong = [
        f"{n[len(prefix) :]} {tuple(params[n].shape)} (expected {s})"
        for n, s in expected.items()
        if n in params and tuple(params[n].shape) != s
    ]
    if wrong:
        transposed = any(
            n in params and tuple(params[n].shape) == s[::-1] and len(s) == 2 for n, s in expected.items()
        )
        why = _CONV1D_SHAPES if transposed else ""
        raise ex.fail(C.SHAPE_MISMATCH, f"{what}: parameters of the wrong shape: {', '.join(wrong)}.{why}")


def _check_block_output(
    ex: Exercise, what: str, block: Ref, x: torch.Tensor, want: torch.Tensor, hf_block: Any, hf_config: Any
) -> None:
    """The learner's block on x must give want (Hugging Face's block output); else name the mistake."""
    with torch.no_grad():
        y = ex.call(f"{what} on x of shape {shape_str(x)}", block, x)
    if isinstance(y, (tuple, list)) and len(y) >= 1 and isinstance(y[0], torch.Tensor):
        y = y[0]  # a block that also returns attention weights or a cache
    y = expect_tensor(ex, f"{what}(x)", y, shape=tuple(x.shape), dtype=x.dtype)
    if _close(y, want, 1e-5):
        return

    def reproduces(**kwargs: Any) -> bool:
        with torch.no_grad():
            return _close(y, _block_from_hf(hf_block, hf_config, **kwargs)(x), 2e-5, 1e-4)

    found = find_mistake(_block_mistakes(hf_config), reproduces)
    diff = max_diff(y, want)
    if found:
        size = ""
        if found[0].code == C.EXACT_GELU and len(found) == 1:
            size = (
                f" The largest difference from GPT-2's block is only {diff:.1e}, the size of the gap between "
                "the two GELUs: close, but not the same function."
            )
        raise matched(ex, f"{what}(x)", found, note=size)
    raise ex.fail(
        C.WRONG_VALUES,
        f"{what}(x) differs from GPT-2's block: {fraction_close(y, want):.0%} of the values match "
        f"(largest difference {diff:.3g}), and it matches none of the usual mistakes.",
    )


@CONVERT_BLOCK.check
def check_convert_block(fn: Ref) -> None:
    """Check `convert_block(hf_block, hf_config) -> Block`: the same outputs as GPT-2's block (to 1e-5)."""
    ex = CONVERT_BLOCK
    expect_callable(ex, fn, "convert_block")
    configs = (
        (3, dict()),  # GPT-2 small's settings at a small size: tanh GELU, eps 1e-5
        (4, dict(n_embd=16, n_head=2, n_positions=12, layer_norm_epsilon=1e-3)),
    )
    count = 0
    for seed, fields in configs:
        hf, ref = _random_gpt2(ex, seed, **fields)
        cfg = hf.config
        idx = torch.randint(cfg.vocab_size, (2, cfg.n_positions))
        run = _hf_run(hf, idx)
        hf_config = attribute(ex, "hf_model.config", ref, "config")
        for i, hf_block in enumerate(hf.transformer.h):
            what = f"convert_block(hf.transformer.h[{i}], hf.config) for n_embd={cfg.n_embd}, n_head={cfg.n_head}"
            their_block = submodule(ref, f"transformer.h.{i}")
            block = _convert(ex, what, fn, their_block, hf_config, to="block")
            _parameter_shapes(ex, f"the block from {what}", parameters(block), cfg.n_embd)
            in_train = (
                f"{what} returned a block in training mode, with dropout on: two calls on the same input give "
                "different outputs. GPT-2's block is in eval mode: return block.eval()."
            )
            _in_eval_mode(ex, "your block", block, run.block_in[i], in_train)
            _check_block_output(ex, "your block", block, run.block_in[i], run.block_out[i], hf_block, cfg)
            count += 1
    ex.passed(
        f"{count} blocks of 2 GPT-2 configs give Hugging Face's block outputs to 1e-5 (tanh GELU, LayerNorm eps "
        "and n_head from the config; every Conv1D weight transposed); GPT-2's weights left untouched."
    )


# ==== 9.3 convert_gpt2 ==============================================================================

CONVERT_GPT2 = Exercise(
    "convert_gpt2",
    [*_SHARED, C.HEAD, C.HEAD_TRANSPOSED, C.WTE, C.WPE, C.POS_SHAPE, C.LN_F, C.BLOCK, C.CONFIG, C.TRAIN_MODE,
     C.SHAPE_MISMATCH, C.NOT_A_MODULE, C.NOT_CONVERTED, *C.TENSOR],
)  # fmt: skip


@dataclass
class _Parts:
    """A converted model read as gptlib's GPT: paths of its token and position tables, blocks, final
    LayerNorm and head, and whether the head IS the token table."""

    tok: str
    pos: str
    blocks: list[str]
    ln_f: str
    head: str
    tied: bool


def _gpt_parts(tree: Tree) -> _Parts | None:
    """gptlib's parts by type, whatever the attributes are called; None for a model not built like gptlib's."""
    stem = next((p for p, s in tree.subs.items() if s.info.isa(Embeddings)), None)
    head = next((p for p, s in tree.subs.items() if s.info.isa(LMHead)), None)
    if stem is None or head is None:
        return None
    within = [p for p in tree.subs if p.startswith(stem + ".")]
    tok = next(p for p in within if tree.subs[p].info.isa(nn.Embedding))
    pos = next((f"{stem}.{n}" for n in tree.subs[stem].params), None) or f"{stem}.pos_emb"
    ln_f = next(p for p in tree.subs if p.startswith(head + ".") and tree.subs[p].info.isa(nn.LayerNorm))
    out = next(p for p in tree.subs if p.startswith(head + ".") and tree.subs[p].info.isa(nn.Linear))
    blocks_list = next((p for p, s in tree.subs.items() if s.info.isa(nn.ModuleList)), None)
    blocks = [c.path for c in tree.children(blocks_list)] if blocks_list is not None else []
    tied = tree.subs[out].params.get("weight") == tree.subs[tok].params.get("weight")
    return _Parts(f"{tok}.weight", pos, blocks, ln_f, f"{out}.weight", tied)


def _parts_failure(ex: Exercise, tree: Tree, parts: _Parts, hf: Any, run: _HFRun) -> None:
    """Compare a gptlib-like model with GPT-2 part by part; fail on the first part that differs."""
    t, cfg, p = hf.transformer, hf.config, tree.params
    C_, T = cfg.n_embd, cfg.n_positions
    pos = p[parts.pos]
    if tuple(pos.shape) != (1, T, C_):
        raise ex.fail(
            C.POS_SHAPE,
            f"model.{parts.pos} has shape {shape_str(pos)}; gptlib keeps (1, {T}, {C_}) (wpe.weight is ({T}, {C_})). "
            f"Copy into it: model.{parts.pos}.copy_(wpe.weight.unsqueeze(0)).",
        )
    if not _close(p[parts.tok], t.wte.weight, 1e-6):
        raise ex.fail(C.WTE, f"model.{parts.tok} is not GPT-2's token table transformer.wte.weight.")
    if not _close(pos[0], t.wpe.weight, 1e-6):
        raise ex.fail(C.WPE, f"model.{parts.pos} is not GPT-2's position table transformer.wpe.weight.")
    for i, path in enumerate(parts.blocks):
        with torch.no_grad():
            y = ex.call(f"model.blocks[{i}]", tree.sub(path), run.block_in[i])
        y = y[0] if isinstance(y, (tuple, list)) else y
        if not _close(y, run.block_out[i], 1e-5):
            diff = max_diff(y, run.block_out[i]) if y.shape == run.block_out[i].shape else float("nan")
            raise ex.fail(
                C.BLOCK,
                f"model.blocks[{i}] does not compute what GPT-2's block {i} computes (largest difference "
                f"{diff:.3g}). Put convert_block(hf_model.transformer.h[i], hf_model.config) there, and check it "
                "with check_convert_block first.",
            )
    ln = tree.own(parts.ln_f)
    ln_ok = _close(ln["weight"], t.ln_f.weight, 1e-6) and _close(ln["bias"], t.ln_f.bias, 1e-6)
    eps = attribute(ex, f"model.{parts.ln_f}.eps", tree.sub(parts.ln_f), "eps")
    eps_ok = abs(eps - cfg.layer_norm_epsilon) < 1e-12
    if not (ln_ok and eps_ok):
        wrong = "" if ln_ok else " (weight and bias)"
        wrong += (
            "" if eps_ok else f" (its eps is {eps:g}, GPT-2's layer_norm_epsilon {cfg.layer_norm_epsilon:g})"
        )
        raise ex.fail(C.LN_F, f"model.{parts.ln_f} is not GPT-2's final LayerNorm transformer.ln_f{wrong}.")
    w = tree.own(parts.head.rsplit(".", 1)[0])["weight"]  # by the module: a tied head is named after wte
    if not _close(w, t.wte.weight, 1e-6):
        transposed = w.shape == t.wte.weight.t().shape and w.shape != t.wte.weight.shape
        raise ex.fail(
            C.HEAD_TRANSPOSED if transposed else C.HEAD,
            f"model.{parts.head} is not GPT-2's output matrix, which is its token table (lm_head.weight is "
            "transformer.wte.weight: tied)."
            + (" It is wte transposed: wte (V, C) is already nn.Linear's (out, in)." if transposed else ""),
        )


def _logits_of(ex: Exercise, what: str, model: Ref, idx: torch.Tensor) -> Any:
    with torch.no_grad():
        out = ex.call(what, model, idx)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]  # gptlib's (logits, loss)
    if isinstance(out, Ref):
        logits = attribute(ex, f"{what}.logits", out, "logits")
        return logits if isinstance(logits, torch.Tensor) else out
    return out


def _optional(ex: Exercise, what: str, model: Ref, name: str, *args: Any) -> Any:
    """A gptlib GPT's extra (attention_maps, generate), or None for a model without it."""
    try:
        method = attribute(ex, what, model, name)
    except CheckFailure:
        return None
    return ex.call(what, method, *args) if isinstance(method, Ref) and method.info.callable else None


@CONVERT_GPT2.check
def check_convert_gpt2(fn: Ref) -> None:
    """Check `convert_gpt2(hf_model) -> GPT`: Hugging Face GPT-2's logits, attention maps and greedy tokens."""
    ex = CONVERT_GPT2
    expect_callable(ex, fn, "convert_gpt2")
    hf, ref = _random_gpt2(ex, 5, n_layer=3, layer_norm_epsilon=1e-4)  # not GPTConfig's default eps
    cfg = hf.config
    V, T = cfg.vocab_size, cfg.n_positions
    idx = torch.randint(V, (2, T))
    run = _hf_run(hf, idx)
    what = "convert_gpt2(hf_model)"
    clash = (
        f"Two shapes clash: compare them with GPT-2's (vocab_size {V}, n_positions {T}, n_embd {cfg.n_embd}). "
        "The config's sizes come from hf_model.config; the Conv1D weights need .t(), the tables and the head "
        "do not."
    )
    model = _convert(ex, what, fn, ref, to="model", why=clash)
    in_train = (
        f"{what} returned a model in training mode, with dropout on: two calls on the same idx give different "
        "logits. GPT-2 came in eval mode: return model.eval()."
    )
    _in_eval_mode(ex, "your model(idx)", model, idx, in_train)
    tree = Tree(model)
    parts = _gpt_parts(tree)
    if parts is not None:
        config = attribute(ex, "model.config", model, "config")
        sizes = {
            "vocab_size": V,
            "block_size": T,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_embd": cfg.n_embd,
            "layer_norm_eps": cfg.layer_norm_epsilon,
        }
        mine = {k: attribute(ex, f"model.config.{k}", config, k) for k in sizes if isinstance(config, Ref)}
        off = {k: (mine.get(k), v) for k, v in sizes.items() if mine.get(k, v) != v}
        if off or len(parts.blocks) != cfg.n_layer:
            listing = ", ".join(
                f"{k}={a:g} (GPT-2's layer_norm_epsilon: {b:g})"
                if k == "layer_norm_eps"
                else f"{k}={a} (GPT-2: {b})"
                for k, (a, b) in off.items()
            )
            raise ex.fail(
                C.CONFIG,
                f"your model's config does not match GPT-2's: {listing or f'{len(parts.blocks)} blocks'}.",
            )
        _parts_failure(ex, tree, parts, hf, run)
    for inp in (idx, idx[:, :5]):
        w = f"your model(idx of shape {shape_str(inp)})"
        logits = expect_tensor(ex, w, _logits_of(ex, w, model, inp), shape=(inp.size(0), inp.size(1), V))
        want = run.logits[:, : inp.size(1)]
        if not _close(logits, want, 1e-4, 1e-4):
            raise ex.fail(
                C.WRONG_VALUES,
                f"{w}: {fraction_close(logits, want):.0%} of the logits match Hugging Face's GPT-2 (largest "
                f"difference {max_diff(logits, want):.3g}).",
            )
    verified = [f"logits of Hugging Face's GPT-2 ({cfg.n_layer} layers) to 1e-4"]
    maps = _optional(ex, "model.attention_maps(idx)", model, "attention_maps", idx)
    if maps is not None:
        if not _same_maps(maps, run.maps):
            raise ex.fail(
                C.WRONG_VALUES, "the logits match, but model.attention_maps(idx) differs from GPT-2's."
            )
        verified.append("the same attention maps")
    prompt = idx[:, :4]
    got = _optional(ex, "model.generate(prompt, 6)", model, "generate", prompt, 6)
    if got is not None:
        with torch.no_grad():
            want = prompt
            for _ in range(6):  # greedy decoding with Hugging Face's model, one token at a time
                want = torch.cat([want, hf(want).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        if not (isinstance(got, torch.Tensor) and torch.equal(got, want)):
            raise ex.fail(C.WRONG_VALUES, "greedy generation gives other tokens than GPT-2's.")
        verified.append("the same greedy tokens")
    if parts is not None:
        verified.append(
            "head tied to the token table, as in GPT-2" if parts.tied else "head an equal copy of wte"
        )
    ex.passed("; ".join(verified) + "; GPT-2's weights left untouched.")
