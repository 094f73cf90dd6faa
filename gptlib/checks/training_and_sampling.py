"""Checks for lesson 06 (training and sampling): the weight-decay split, one training step, sampling.

- `check_optimizer_groups` compares the learner's split with `GPT.configure_optimizers`' on
  gptlib's GPT and on a model with other module types and names, and names the parameters
  that landed in the wrong group by the kind of module that holds them.
- `check_train_step` runs the learner's step and reference steps on copies of one tiny GPT,
  with the same batches and the same dropout masks, under plain SGD (so clipping and the
  learning rate show directly in the update). It tells the usual slips apart by which wrong
  reference step the learner's parameters match: no zero_grad, no clipping or clipping after
  the step, step before backward, eval mode, the learning rate not set.
- `check_sample` draws thousands of tokens in one call with a seeded generator and compares
  the frequencies with softmax(logits / T) over the top k (a chi-square distance), and with
  the distributions that the usual slips give.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks import codes as C
from gptlib.checks import learner
from gptlib.checks.builders import OddNames
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    build,
    find_mistake,
    first_line,
    matched,
    parameters,
    seed_learner,
    type_name,
)
from gptlib.checks.learner import Crash, Ref, Spec, config_spec, module_spec
from gptlib.checks.probes import chi2, chi2_limit, expect_callable, reject_none_or_tuple, untouched
from gptlib.checks.verdict import CheckFailure
from gptlib.config import GPTConfig
from gptlib.model import GPT

__all__ = ["check_optimizer_groups", "check_train_step", "check_sample"]

NEG_INF = float("-inf")


# ==== optimizer_groups ==============================================================================

GROUPS = Exercise(
    "optimizer_groups",
    [C.NOT_CALLABLE, C.RETURNED_NONE, C.WRONG_RETURN, C.UNKNOWN_NAME, C.POS_EMB_NAME, C.IN_BOTH, C.POS_EMB_MISSING,
     C.MISSING, C.SWAPPED, C.BY_DIM, C.LAYERNORM_DECAYED, C.EMBEDDING_DECAYED, C.POS_EMB_DECAYED, C.BIAS_DECAYED,
     C.LINEAR_NOT_DECAYED, C.IN_PLACE],
)  # fmt: skip


def _crashed(ex: Exercise, what: str, crash: Crash) -> CheckFailure:
    """A crash in the learner's code, quoted by its first line."""
    where = f"{first_line(crash, 200)}{crash.where}"
    return ex.fail(C.CRASHED, f"{what} raised {where}. Fix that line and run the cell again.", crash, what)


def _reference_split(model: nn.Module) -> tuple[set[str], set[str]]:
    """(decay, no_decay) names as gptlib's GPT.configure_optimizers splits `model` (any nn.Module)."""
    opt = GPT.configure_optimizers(model, weight_decay=0.1)  # type: ignore[arg-type]
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ({names[id(p)] for p in group["params"]} for group in opt.param_groups)
    return decay, no_decay


def _module_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mn, _, pn = name.rpartition(".")
    return (model.get_submodule(mn) if mn else model), pn


def _kind(model: nn.Module, name: str) -> str:
    """What a parameter is: 'bias', 'linear', 'layernorm', 'embedding', 'pos_emb' or 'other'."""
    module, pn = _module_of(model, name)
    if pn.endswith("bias"):
        return "bias"
    if pn == "pos_emb":
        return "pos_emb"
    for kind, cls in (("linear", nn.Linear), ("layernorm", nn.LayerNorm), ("embedding", nn.Embedding)):
        if isinstance(module, cls):
            return kind
    return "other"


def _owner(model: nn.Module, name: str) -> str:
    """The type of the module that holds a parameter, for messages."""
    module, pn = _module_of(model, name)
    if pn == "pos_emb":
        return f"the position table, a bare nn.Parameter of {type(module).__name__}"
    subclass = type(module) is not nn.Linear and isinstance(module, nn.Linear)
    return type(module).__name__ + (" (a subclass of nn.Linear)" if subclass else "")


def _listed(names: Any, model: nn.Module | None = None, n: int = 4) -> str:
    items = sorted(names)
    shown = [f"'{x}' ({_owner(model, x)})" if model is not None else f"'{x}'" for x in items[:n]]
    return ", ".join(shown) + (f" and {len(items) - n} more" if len(items) > n else "")


def _names_of(items: Any, ref: Ref, what: str) -> set[str]:
    """A collection of parameter names, or of parameters (copies the boundary can trace back), as names."""
    if isinstance(items, (str, Ref)) or not hasattr(items, "__iter__"):
        raise GROUPS.fail(
            C.WRONG_RETURN, f"{what} is a {type_name(items)}; expected a set (or list) of parameter names."
        )
    names = set()
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, torch.Tensor):
            found = learner.backend().parameter_name(ref, item)
            if found is None:
                raise GROUPS.fail(
                    C.UNKNOWN_NAME,
                    f"{what} holds a tensor of shape {tuple(item.shape)} that is not one of the model's "
                    "parameters; return the names from model.named_parameters().",
                )
            names.add(found)
        else:
            raise GROUPS.fail(
                C.WRONG_RETURN,
                f"{what} holds {item!r:.60} ({type_name(item)}); expected parameter names (strings).",
            )
    return names


def _read_split(out: Any, ref: Ref, what: str) -> tuple[set[str], set[str]]:
    """The learner's (decay, no_decay), from two collections of names or two AdamW param groups."""
    if out is None:
        raise GROUPS.fail(C.RETURNED_NONE, f"{what} returned None: is `return decay, no_decay` missing?")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        size = f" of {len(out)} items" if isinstance(out, (tuple, list)) else ""
        raise GROUPS.fail(
            C.WRONG_RETURN,
            f"{what} returned a {type_name(out)}{size}; expected two sets of names: (decay, no_decay).",
        )
    if all(isinstance(g, dict) for g in out):  # AdamW param groups: the one with weight_decay > 0 decays
        if not all("params" in g and "weight_decay" in g for g in out):
            raise GROUPS.fail(
                C.WRONG_RETURN,
                f"{what} returned two dicts, but a param group needs both 'params' and 'weight_decay' keys.",
            )
        groups = sorted(out, key=lambda g: -float(g["weight_decay"]))
        if not float(groups[0]["weight_decay"]) > 0 or float(groups[1]["weight_decay"]) != 0:
            raise GROUPS.fail(
                C.WRONG_RETURN,
                f"{what} returned param groups with weight_decay {[g['weight_decay'] for g in out]}; "
                "one group needs weight decay > 0, the other weight_decay 0.0.",
            )
        return (
            _names_of(groups[0]["params"], ref, f"{what}'s decay group"),
            _names_of(groups[1]["params"], ref, f"{what}'s no-decay group"),
        )
    return _names_of(out[0], ref, f"{what}[0] (decay)"), _names_of(out[1], ref, f"{what}[1] (no_decay)")


_WRONG_WORDS = {
    "layernorm": (C.LAYERNORM_DECAYED, "LayerNorm weights are decayed"),
    "embedding": (C.EMBEDDING_DECAYED, "embedding tables are decayed"),
    "pos_emb": (C.POS_EMB_DECAYED, "the position table pos_emb is decayed"),
    "bias": (C.BIAS_DECAYED, "biases are decayed"),
    "other": (C.MISSING, "parameters that are no weight of Linear are decayed"),
}


def _compare_split(model: nn.Module, what: str, decay: set[str], no_decay: set[str], note: str) -> None:
    ex, params = GROUPS, dict(model.named_parameters())
    unknown = (decay | no_decay) - params.keys()
    if unknown:
        if unknown == {"pos_emb"}:
            raise ex.fail(
                C.POS_EMB_NAME,
                f"{what}: your groups name 'pos_emb', but this model's position table is called "
                f"{_listed([n for n in params if n.endswith('pos_emb')])}.",
            )
        near = [n for n in params if any(n.endswith("." + u) for u in unknown)]
        seen = f" Did you mean {_listed(near)}?" if near else ""
        raise ex.fail(
            C.UNKNOWN_NAME,
            f"{what}: {_listed(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the model's "
            f"parameter names (e.g. {_listed(list(params)[:3])}).{seen}",
        )
    both = decay & no_decay
    if both:
        raise ex.fail(C.IN_BOTH, f"{what}: {_listed(both, model)} are in both groups.{note}")
    missing = params.keys() - decay - no_decay
    if missing:
        code = C.POS_EMB_MISSING if any(_kind(model, n) == "pos_emb" for n in missing) else C.MISSING
        raise ex.fail(
            code,
            f"{what}: {_listed(missing, model)} {'is' if len(missing) == 1 else 'are'} in neither group.{note}",
        )
    ref_decay, ref_no_decay = _reference_split(model)
    if decay == ref_decay:
        return
    if decay == ref_no_decay:
        raise ex.fail(
            C.SWAPPED,
            f"{what}: your first set holds exactly the parameters that must NOT decay ({len(decay)} of them), "
            "and the second the ones that must: the groups are swapped.",
        )
    wrongly_decayed, not_decayed = decay - ref_decay, ref_decay - decay
    if decay == {n for n, p in params.items() if p.dim() >= 2}:
        raise ex.fail(
            C.BY_DIM,
            f"{what}: you decay every parameter with 2 or more dimensions, so {_listed(wrongly_decayed, model)} "
            f"decay too.{note}",
        )
    for kind in ("layernorm", "embedding", "pos_emb", "bias", "other"):
        wrong = {n for n in wrongly_decayed if _kind(model, n) == kind}
        if wrong:
            code, words = _WRONG_WORDS[kind]
            raise ex.fail(code, f"{what}: {words}: {_listed(wrong, model)} should be in no_decay.{note}")
    raise ex.fail(
        C.LINEAR_NOT_DECAYED,
        f"{what}: Linear weights {_listed(not_decayed, model)} are not decayed; every nn.Linear weight should be.{note}",
    )


@GROUPS.check
def check_optimizer_groups(fn: Ref) -> None:
    """Check optimizer_groups(model) -> (decay, no_decay) against GPT.configure_optimizers' split."""
    ex = GROUPS
    expect_callable(ex, fn, "optimizer_groups")
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
    gpt = GPT(config)
    models = [
        ("gptlib's GPT (2 layers)", gpt, module_spec("GPT", gpt, config_spec(config)), ""),
        (
            "a model with other module types and names",
            OddNames(),
            Spec("lesson06:OddNames"),
            " (Your split was right on gptlib's GPT, whose names follow minGPT's; this model names its layers "
            "differently and has a LayerNorm without bias, a Linear subclass and a second embedding: decide by "
            "the module's type.)",
        ),
    ]
    sizes = []
    for label, model, spec, note in models:
        what = f"optimizer_groups({label})"
        ref = build(spec)
        before = parameters(ref)
        out, crash = ex.attempt(what, fn, ref)
        if crash is not None:
            raise _crashed(ex, what, crash)
        decay, no_decay = _read_split(out, ref, what)
        _compare_split(model, what, decay, no_decay, note)
        if any(not torch.equal(p, before[n]) for n, p in parameters(ref).items()):
            raise ex.fail(C.IN_PLACE, f"{what} changed the model's weights; only read them.")
        sizes.append((len(decay), len(no_decay)))
    (d, nd), _ = sizes
    ex.passed(
        f"the same split as GPT.configure_optimizers on gptlib's GPT ({d} tensors decay, {nd} don't) and on "
        "a model with other module types and names."
    )


# ==== train_step ====================================================================================

STEP = Exercise(
    "train_step",
    [C.NOT_CALLABLE, C.LOSS_NOT_RETURNED, C.WRONG_LOSS, C.NO_ZERO_GRAD, C.ZERO_GRAD_AFTER_BACKWARD,
     C.STEP_BEFORE_BACKWARD, C.NO_CLIP, C.CLIP_AFTER_STEP, C.CLIP_BY_VALUE, C.CLIP_VALUE, C.EVAL_MODE, C.LR_NOT_SET,
     C.LR_ONE_GROUP, C.IN_PLACE, C.WRONG_UPDATE, C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip
_CLIP = 0.05  # far below the tiny model's gradient norm, so clipping always acts
_OPT_LR = 0.5  # the lr the optimizer is built with; the steps ask for others
_STEP_LRS = (0.2, 0.1)
_DROP_SEEDS = (11, 12)
_STEP_CONFIG = GPTConfig(
    vocab_size=13,
    block_size=8,
    n_layer=2,
    n_head=2,
    n_embd=16,
    embd_pdrop=0.2,
    resid_pdrop=0.2,
    attn_pdrop=0.2,
)


def _groups(model: nn.Module) -> list[tuple[list[str], float]]:
    """Two param groups by name (decay, no decay), as configure_optimizers makes for AdamW."""
    decay, no_decay = _reference_split(model)
    return [(sorted(decay), 0.1), (sorted(no_decay), 0.0)]


def _reference_steps(
    model0: GPT,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    zero_grad: bool = True,
    clip: str = "norm",
    train: bool = True,
    set_lr: str = "all",
) -> tuple[list[dict[str, torch.Tensor]], list[float]]:
    """Params after each step, and each step's loss, for a step done right or with the given slips."""
    model = copy.deepcopy(model0)
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(
        [{"params": [params[n] for n in g], "weight_decay": wd} for g, wd in _groups(model)], lr=_OPT_LR
    )
    snapshots, losses = [], []
    for (x, y), lr, seed in zip(batches, _STEP_LRS, _DROP_SEEDS, strict=False):
        for g in opt.param_groups[: {"all": 2, "first": 1, "none": 0}[set_lr]]:
            g["lr"] = lr
        model.train(train)
        torch.manual_seed(seed)
        _, loss = model(x, y)
        if zero_grad:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), _CLIP)
        elif clip == "norm-1":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        elif clip == "value":
            torch.nn.utils.clip_grad_value_(model.parameters(), _CLIP)
        opt.step()
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        losses.append(loss.item())
    return snapshots, losses


def _same_params(params: dict[str, torch.Tensor], snapshot: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(p, snapshot[n], atol=1e-6, rtol=1e-5) for n, p in params.items())


def _share_same(params: dict[str, torch.Tensor], snapshot: dict[str, torch.Tensor]) -> float:
    same = sum(int(torch.isclose(p, snapshot[n], atol=1e-6, rtol=1e-5).sum()) for n, p in params.items())
    return same / sum(p.numel() for p in params.values())


# The one-step slips, each as the settings of _reference_steps that make it.
_STEP_MISTAKES = [
    Mistake(C.EVAL_MODE, "a step with the model left in eval mode (dropout off)", {"train": False}),
    Mistake(C.NO_CLIP, "a step with the gradients not clipped: clip_grad_norm_ is missing, or it runs before "
            "backward (when there is no gradient yet to clip); clip between backward and step", {"clip": "none"}),
    Mistake(C.CLIP_VALUE, f"a step with the gradients clipped to norm 1.0, not to grad_clip={_CLIP}",
            {"clip": "norm-1"}),
    Mistake(C.CLIP_BY_VALUE, "a step that clips each gradient value (clip_grad_value_), not the norm",
            {"clip": "value"}),
    Mistake(C.LR_NOT_SET, f"a step with the optimizer's own lr ({_OPT_LR}), not the lr argument",
            {"set_lr": "none"}),
    Mistake(C.LR_ONE_GROUP, "a step with the lr set on the first param group only", {"set_lr": "first"}),
]  # fmt: skip


def _grad_norm(grads: dict[str, torch.Tensor | None]) -> float | None:
    present = [g for g in grads.values() if g is not None]
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in present))) if present else None


def _diagnose_first_step(
    model: Ref, model0: GPT, batch: tuple[torch.Tensor, torch.Tensor], what: str
) -> None:
    """The learner's parameters after one step differ from the reference's: say which slip explains it."""
    ex, params, grads = STEP, parameters(model), parameters(model, grads=True)
    unchanged = _same_params(params, {n: p.detach() for n, p in model0.named_parameters()})
    present = [g for g in grads.values() if g is not None]
    if present and all(not g.any() for g in present):
        raise ex.fail(
            C.ZERO_GRAD_AFTER_BACKWARD,
            f"{what} left only zeros in .grad, and the update used no gradient: optimizer.zero_grad() ran "
            "between loss.backward() and optimizer.step().",
        )
    if unchanged:
        if not _grad_norm(grads):  # None (no gradient at all) or 0
            raise ex.fail(
                C.ZERO_GRAD_AFTER_BACKWARD,
                f"{what} left every parameter unchanged and no gradient in .grad: the gradients were cleared "
                "before optimizer.step() could use them (or backward never ran).",
            )
        raise ex.fail(
            C.STEP_BEFORE_BACKWARD,
            f"{what} left every parameter unchanged although .grad holds gradients: optimizer.step() ran "
            "before loss.backward() (or not at all).",
        )
    found = find_mistake(
        _STEP_MISTAKES, lambda **kw: _same_params(params, _reference_steps(model0, [batch], **kw)[0][0])
    )
    if found and found[0].code == C.NO_CLIP and len(found) == 1:
        norm = _grad_norm(grads)
        if norm is not None and abs(norm - _CLIP) < 1e-3 * _CLIP:
            raise ex.fail(
                C.CLIP_AFTER_STEP,
                f"{what}: the update used the unclipped gradients, but .grad holds gradients clipped "
                f"to norm {_CLIP}: the clipping ran after optimizer.step().",
            )
    if found:
        raise matched(ex, what, found)
    snaps, _ = _reference_steps(model0, [batch])
    raise ex.fail(
        C.WRONG_UPDATE,
        f"{what}: after your step {_share_same(params, snaps[0]):.0%} of the parameter values match a correct "
        "step's, and no single usual slip explains the difference.",
    )


def _as_loss(out: Any, what: str) -> float:
    reject_none_or_tuple(STEP, what, out, "return only the loss (a float).", missing="`return loss.item()`")
    if isinstance(out, torch.Tensor) and out.numel() == 1 and out.is_floating_point():
        return float(out)
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        return float(out)
    shape = f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else ""
    raise STEP.fail(
        C.LOSS_NOT_RETURNED,
        f"{what} returned a {type_name(out)}{shape}; expected the batch's loss as a float (loss.item()).",
    )


@STEP.check
def check_train_step(fn: Ref) -> None:
    """Check train_step(model, optimizer, x, y, lr, grad_clip) against reference steps on copies."""
    ex = STEP
    expect_callable(ex, fn, "train_step")
    model0 = GPT(_STEP_CONFIG)
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randint(13, (3, 8), generator=g), torch.randint(13, (3, 8), generator=g)) for _ in range(2)
    ]
    ref_snaps, ref_losses = _reference_steps(model0, batches)
    # in eval mode, as sampling leaves it
    model = build(module_spec("GPT", model0.eval(), config_spec(_STEP_CONFIG)))
    opt = build(Spec("SGD", (model, _groups(model0), _OPT_LR)))
    for i, ((x, y), lr, seed) in enumerate(zip(batches, _STEP_LRS, _DROP_SEEDS, strict=True)):
        what = f"train_step (call {i + 1}, lr={lr}, grad_clip={_CLIP})"
        seed_learner(seed)  # the same dropout masks as the reference step
        call, crash = ex.attempt_run(what, fn, model, opt, x, y, lr, _CLIP)
        if crash is not None:
            raise _crashed(ex, what, crash)
        loss = _as_loss(untouched(ex, what, call, "the batch x or y"), what)
        params = parameters(model)
        if not _same_params(params, ref_snaps[i]):
            if i == 0:
                _diagnose_first_step(model, model0, batches[0], what)
            no_zero, _ = _reference_steps(model0, batches, zero_grad=False)
            if _same_params(params, no_zero[1]):
                raise ex.fail(
                    C.NO_ZERO_GRAD,
                    f"{what}: the first step was right, but the second also applied the first step's "
                    "gradients: .grad was not cleared, so the gradients accumulate.",
                )
            raise ex.fail(
                C.WRONG_UPDATE,
                f"{what}: the first step was right, the second is not: "
                f"{_share_same(params, ref_snaps[1]):.0%} of the parameter values match a correct step's.",
            )
        if not math.isclose(loss, ref_losses[i], rel_tol=1e-4, abs_tol=1e-5):
            raise ex.fail(
                C.WRONG_LOSS,
                f"{what} returned {loss:.4f}, but the loss of this batch before the update is {ref_losses[i]:.4f}.",
            )
    ex.passed(
        "two steps match reference steps: lr set on every group, train mode, fresh gradients, norm clipped "
        "between backward and step; returns the loss."
    )


# ==== sample ========================================================================================

SAMPLE = Exercise(
    "sample",
    [C.NOT_CALLABLE, C.NOT_A_TENSOR, C.WRONG_SHAPE, C.WRONG_DTYPE, C.IN_PLACE, C.GENERATOR_IGNORED,
     C.SAMPLED_LOGITS, C.ARGMAX, C.TEMPERATURE_MULTIPLIED, C.TEMPERATURE_IGNORED, C.TOPK_IGNORED, C.TOPK_ZERO,
     C.SOFTMAX_TWICE, C.TOPK_INDEX, C.TOPK_OFF_BY_ONE, C.SOFTMAX_AXIS, C.OUT_OF_RANGE, C.WRONG_DISTRIBUTION,
     C.RETURNED_NONE, C.RETURNED_TUPLE],
)  # fmt: skip
# Two rows of logits (V = 8), with no ties, negative values and the maximum not at id 0.
_ROWS = torch.tensor(
    [[0.3, 2.1, -1.2, 1.4, 0.0, -0.4, 0.9, -2.0], [-0.5, 0.2, 1.7, -1.0, 1.1, 0.6, -1.6, 0.0]],
    dtype=torch.float32,
)
_DRAWS = 1500  # draws per row: chi-square tells the usual slips apart by a wide margin
_CASES: list[tuple[float, int | None]] = [(1.0, None), (2.0, None), (0.5, 3), (1.0, 1), (1e-3, None)]
_Z_1E4 = 3.719  # standard normal quantile for p = 1e-4


def mask_top_k(logits: torch.Tensor, k: int | None, fill: float = float("-inf")) -> torch.Tensor:
    """logits (B, V) with every value below the k-th largest of its row set to `fill` (k None: unchanged)."""
    if k is None:
        return logits
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, fill)


def _distribution(logits: torch.Tensor, T: float, k: int | None, slip: str = "") -> torch.Tensor | None:
    """The probabilities (2, V) of the first two rows of logits (N, V), drawn right or with one known slip
    (None where the slip makes no difference to tell at these settings)."""
    rows = logits[:2].double()  # (2, V)
    right = F.softmax(mask_top_k(rows, k) / T, dim=-1)
    if slip == C.TEMPERATURE_MULTIPLIED:
        return F.softmax(mask_top_k(rows, k) * T, dim=-1)
    if slip == C.TEMPERATURE_IGNORED:
        return F.softmax(mask_top_k(rows, k), dim=-1)
    if slip == C.TOPK_IGNORED:
        return F.softmax(rows / T, dim=-1)
    if slip == C.TOPK_ZERO:
        return F.softmax(mask_top_k(rows, k, 0.0) / T, dim=-1)
    if slip == C.SOFTMAX_TWICE:
        return F.softmax(F.softmax(rows / T, dim=-1).masked_fill(mask_top_k(rows, k) == NEG_INF, 0.0), dim=-1)
    if slip == C.SOFTMAX_AXIS:
        col = F.softmax(mask_top_k(logits.double(), k) / T, dim=0)[:2]  # (2, V): softmax over the batch
        ok = torch.isfinite(col).all() and (col.sum(-1) > 0).all()
        return col / col.sum(-1, keepdim=True) if ok else None
    if slip == C.TOPK_OFF_BY_ONE:  # logits <= kth: the k-th token dropped too
        return F.softmax(mask_top_k(rows, k - 1) / T, dim=-1) if k is not None and k > 1 else None
    if slip == C.TOPK_INDEX:  # id r gets the r-th largest probability
        return right.sort(dim=-1, descending=True).values if k is not None else None
    if slip == C.ARGMAX:
        return torch.zeros_like(rows).scatter_(-1, rows.argmax(-1, keepdim=True), 1.0)
    return right


_SAMPLE_MISTAKES = [
    Mistake(C.TEMPERATURE_MULTIPLIED, "softmax(logits * T): the temperature multiplies the logits instead of "
            "dividing them", {"slip": C.TEMPERATURE_MULTIPLIED}),
    Mistake(C.TEMPERATURE_IGNORED, "softmax(logits): the temperature is ignored", {"slip": C.TEMPERATURE_IGNORED}),
    Mistake(C.TOPK_IGNORED, "softmax(logits / T) over all tokens: top_k is ignored", {"slip": C.TOPK_IGNORED}),
    Mistake(C.TOPK_ZERO, "the logits outside the top k set to 0 instead of -inf, so those tokens are still drawn",
            {"slip": C.TOPK_ZERO}),
    Mistake(C.SOFTMAX_TWICE, "a softmax of the probabilities: softmax applied twice", {"slip": C.SOFTMAX_TWICE}),
    Mistake(C.SOFTMAX_AXIS, "a softmax over the batch (dim=0) instead of over the vocabulary",
            {"slip": C.SOFTMAX_AXIS}),
    Mistake(C.TOPK_INDEX, "the position within the top-k list instead of the token id", {"slip": C.TOPK_INDEX}),
    Mistake(C.TOPK_OFF_BY_ONE, "the top k - 1 tokens: the k-th is dropped too (logits <= kth instead of logits "
            "< kth), one fewer than k", {"slip": C.TOPK_OFF_BY_ONE}),
    Mistake(C.ARGMAX, "the most likely token every time: argmax, not a random draw", {"slip": C.ARGMAX}),
]  # fmt: skip


def _sample_call(
    fn: Ref, logits: torch.Tensor, T: float, k: int | None, seed: int, what: str
) -> torch.Tensor:
    ex = SAMPLE
    call, crash = ex.attempt_run(what, fn, logits, T, k, build(Spec("Generator", (seed,))))
    if crash is not None:
        where = f"{first_line(crash, 200)}{crash.where}"  # as _crashed quotes it
        if "probability tensor contains" in crash.message or "element < 0" in crash.message:
            raise ex.fail(
                C.SAMPLED_LOGITS,
                f"{what} raised {where}: torch.multinomial was given negative numbers, the logits "
                "or their log, instead of probabilities.",
            )
        if "Dimension out of range" in crash.message:
            raise ex.fail(C.SOFTMAX_AXIS, f"{what} raised {where}.")
        raise _crashed(ex, what, crash)
    out = untouched(ex, what, call, "the logits")
    B, V = logits.shape
    reject_none_or_tuple(ex, what, out, "return the (B, 1) ids.")
    if not isinstance(out, torch.Tensor):
        raise ex.fail(C.NOT_A_TENSOR, f"{what} returned a {type_name(out)}, not a tensor.")
    if tuple(out.shape) != (B, 1):
        raise ex.fail(
            C.WRONG_SHAPE,
            f"{what} returned shape {tuple(out.shape)}; expected (B, 1) = ({B}, 1): one token id per row.",
        )
    if out.dtype != torch.long:
        raise ex.fail(C.WRONG_DTYPE, f"{what} returned dtype {out.dtype}; expected torch.long.")
    if int(out.min()) < 0 or int(out.max()) >= V:
        raise ex.fail(
            C.OUT_OF_RANGE,
            f"{what} returned token id {int(out.max()) if int(out.max()) >= V else int(out.min())}; "
            f"ids must be in 0..{V - 1}.",
        )
    return out


def _describe(probs: torch.Tensor) -> str:
    return "[" + ", ".join(f"{p:.2f}" for p in probs.tolist()) + "]"


def _fit(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """The chi-square of two rows of counts against two rows of probabilities, and the limit a right sampler
    stays under with probability ~1 - 1e-4."""
    stat = chi2(counts, probs)
    df = int((probs * counts.sum(-1, keepdim=True) >= 1e-9).sum()) - 2
    return stat, chi2_limit(df, _Z_1E4)


@SAMPLE.check
def check_sample(fn: Ref) -> None:
    """Check sample_next_token(logits, temperature, top_k, generator) -> (B, 1) ids, by their frequencies."""
    ex = SAMPLE
    expect_callable(ex, fn, "sample_next_token")
    _sample_call(fn, _ROWS[:1], 1.0, None, 0, "sample_next_token(logits of shape (1, 8))")
    logits = _ROWS.repeat(_DRAWS, 1)  # (2 * _DRAWS, V): rows alternate between the two types
    what = f"sample_next_token(logits (B={logits.shape[0]}, V=8), temperature=1.0, top_k=None, generator)"
    first = _sample_call(fn, logits, 1.0, None, 123, what)
    seed_learner(999)  # another global stream: a sampler that uses the generator does not notice
    again = _sample_call(fn, logits, 1.0, None, 123, what)
    if not torch.equal(first, again):
        raise ex.fail(
            C.GENERATOR_IGNORED,
            f"{what}: two calls with generators seeded alike gave different tokens "
            f"({(first != again).float().mean():.0%} of them differ): the draw does not use the generator passed in.",
        )
    for case, (T, k) in enumerate(_CASES):
        what = f"sample_next_token(logits, temperature={T}, top_k={k}, generator)"
        ids = _sample_call(fn, logits, T, k, 200 + case, what)[:, 0]  # (N,)
        counts = torch.stack([torch.bincount(ids[r::2], minlength=8).double() for r in range(2)])  # (2, V)
        right = _distribution(logits, T, k)
        stat, limit = _fit(counts, right)
        if stat <= limit:
            continue
        freq = counts[0] / counts[0].sum()
        fits = [
            (fit, m.code, m)
            for m in _SAMPLE_MISTAKES
            if (p := _distribution(logits, T, k, **m.kwargs)) is not None
            for fit, lim in [_fit(counts, p)]
            if fit <= lim
        ]
        best = min(fits, key=lambda f: f[:2])[2] if fits else None
        outside = (right == 0) & (counts > 0)
        if k is not None and outside.any():
            raise ex.fail(
                best.code if best else C.TOPK_IGNORED,
                f"{what}: {int(counts[outside].sum())} of {2 * _DRAWS} draws are tokens outside the top {k}; only "
                f"the {k} most likely tokens of each row may be drawn. Frequencies of row 0: {_describe(freq)}, "
                f"expected {_describe(right[0])}" + (f"; they fit {best.says}." if best else "."),
            )
        raise ex.fail(
            best.code if best else C.WRONG_DISTRIBUTION,
            f"{what}: the draws do not follow softmax(top_k(logits) / T). Row 0 gave frequencies "
            f"{_describe(freq)}, expected {_describe(right[0])}; they fit "
            f"{best.says if best else 'none of the usual slips'}.",
        )
    ex.passed(
        "(B, 1) long ids drawn with the generator; frequencies match softmax(logits / T) over the top k "
        "(T = 0.001, 0.5, 1, 2; k = 1, 3, none)."
    )
