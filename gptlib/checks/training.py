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
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks.base import (
    CheckFailure,
    _learner_frame,
    attempt,
    first_line,
    one_thread,
    passed,
    reject_none_or_tuple,
    seeded,
)
from gptlib.checks.hints import register_hints
from gptlib.config import GPTConfig
from gptlib.model import GPT

__all__ = ["check_optimizer_groups", "check_train_step", "check_sample"]


def _first_line(e: BaseException) -> str:
    """The exception's type and first line, and where in the learner's code it was raised."""
    return first_line(e, 200) + _learner_frame(e)


def _is_function(exercise: str, fn: Any, name: str) -> None:
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(exercise, "not-a-function", f"expected the function {name}, got {fn!r:.80}.")


# ==== optimizer_groups =========================================================================

_GROUPS = "optimizer_groups"

register_hints(
    _GROUPS,
    levels=[
        "Weight decay pulls weights toward zero. It belongs on the matrices that mix channels (the weights "
        "of nn.Linear layers). Biases, LayerNorm gains and embedding tables (the token table and the "
        "position table pos_emb) are left alone. Decide by the type of the module that holds a parameter, "
        "not by its name.",
        "Loop over `model.named_modules()`; for each module loop over `module.named_parameters(recurse=False)` "
        "(only its own parameters) and build the full name `f'{mn}.{pn}' if mn else pn`. Names ending in "
        "'bias' never decay; a 'weight' of an nn.Linear decays; a 'weight' of nn.LayerNorm or nn.Embedding "
        "does not; a parameter called 'pos_emb' does not.",
        "decay, no_decay = set(), set()\n"
        "for mn, m in model.named_modules():\n"
        "    for pn, p in m.named_parameters(recurse=False):\n"
        "        full = f'{mn}.{pn}' if mn else pn\n"
        "        if pn.endswith('bias'):\n"
        "            no_decay.add(full)\n"
        "        elif pn.endswith('weight') and isinstance(m, nn.Linear):\n"
        "            decay.add(full)\n"
        "        elif pn.endswith('weight') and isinstance(m, (nn.LayerNorm, nn.Embedding)):\n"
        "            no_decay.add(full)\n"
        "        elif pn == 'pos_emb':\n"
        "            no_decay.add(full)\n"
        "return decay, no_decay",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_optimizer_groups(optimizer_groups).",
        "wrong-return": "return two sets of parameter names: `return decay, no_decay`.",
        "unknown-name": "use the full names that `model.named_parameters()` gives, e.g. "
        "'blocks.0.attn.key.weight': the module's name, a dot, the parameter's name.",
        "pos-emb-name": "in gptlib's GPT the position table is 'embeddings.pos_emb', not the seed's root-level "
        "'pos_emb': find it while looping (a parameter whose own name is 'pos_emb') instead of adding a "
        "fixed name.",
        "in-both": "each parameter goes in exactly one group: use if / elif so a name lands in one set only.",
        "pos-emb-missing": "the position table is a bare nn.Parameter called 'pos_emb', not a weight of any "
        "layer: add it to no_decay by its name (pn == 'pos_emb').",
        "missing": "every parameter must land in one group; look at the module types listed and which branch "
        "of your if / elif should take them.",
        "swapped": "you return the two groups the other way round: `return decay, no_decay`, decay first.",
        "by-dim": "'decay every parameter with 2 or more dimensions' is nanoGPT's rule; it decays the "
        "embedding tables too. This lesson follows the seed: only nn.Linear weights decay.",
        "layernorm-decayed": "a LayerNorm's weight is a gain per channel (it starts at 1); decaying it pulls the "
        "gains toward 0. Put nn.LayerNorm weights in no_decay (isinstance(m, nn.LayerNorm)).",
        "embedding-decayed": "embedding rows are looked up, one per token; decay would shrink the rows of rare "
        "tokens most. Put nn.Embedding weights in no_decay.",
        "pos-emb-decayed": "the position table pos_emb is an embedding too: no decay.",
        "bias-decayed": "biases never decay (any name ending in 'bias'): they shift values, they do not "
        "mix channels.",
        "linear-not-decayed": "every nn.Linear weight decays, whatever the layer is called and whether or not it "
        "has a bias; test with isinstance(m, nn.Linear), which also catches subclasses of nn.Linear.",
    },
)


class _SubLinear(nn.Linear):
    """A subclass of nn.Linear: a split by isinstance decays its weight, one by exact type misses it."""


class _OtherModel(nn.Module):
    """A model with module types and names that gptlib's GPT lacks, for the second half of the check.

    Its names mislead a split by name ('emb_proj' and 'ln_gate' are Linear layers, 'norm' and
    'final' are LayerNorms, 'vocab' and 'segment' are embedding tables); the split must go by type.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vocab = nn.Embedding(7, 8)
        self.segment = nn.Embedding(3, 8)
        self.pos_emb = nn.Parameter(torch.zeros(1, 5, 8))  # at the root, as in the seed
        self.layers = nn.ModuleDict(
            {
                "norm": nn.LayerNorm(8, bias=False),
                "mix": nn.Linear(8, 8, bias=False),
                "up": _SubLinear(8, 16),
                "emb_proj": nn.Linear(16, 8),
                "ln_gate": nn.Linear(8, 8),
            }
        )
        self.seq = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8))
        self.final = nn.LayerNorm(8)
        self.out = nn.Linear(8, 7, bias=False)


def _reference_split(model: nn.Module) -> tuple[set[str], set[str]]:
    """(decay, no_decay) names as gptlib's GPT.configure_optimizers splits `model` (any nn.Module)."""
    opt = GPT.configure_optimizers(model, weight_decay=0.1)  # type: ignore[arg-type]
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in opt.param_groups[0]["params"]}
    no_decay = {names[id(p)] for p in opt.param_groups[1]["params"]}
    return decay, no_decay


def _kind(model: nn.Module, name: str) -> str:
    """What a parameter is: 'bias', 'linear', 'layernorm', 'embedding', 'pos_emb' or 'other'."""
    mn, _, pn = name.rpartition(".")
    module = model.get_submodule(mn) if mn else model
    if pn.endswith("bias"):
        return "bias"
    if pn == "pos_emb":
        return "pos_emb"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, nn.Embedding):
        return "embedding"
    return "other"


def _owner(model: nn.Module, name: str) -> str:
    """The type of the module that holds a parameter, for messages."""
    mn, _, pn = name.rpartition(".")
    module = model.get_submodule(mn) if mn else model
    if pn == "pos_emb":
        return f"the position table, a bare nn.Parameter of {type(module).__name__}"
    kind = type(module).__name__
    if type(module) is not nn.Linear and isinstance(module, nn.Linear):
        kind += " (a subclass of nn.Linear)"
    return kind


def _names_of(items: Any, model: nn.Module, what: str) -> set[str]:
    """A collection of parameter names, or of parameters (matched by identity), as a set of names."""
    if isinstance(items, str) or not hasattr(items, "__iter__"):
        raise CheckFailure(
            _GROUPS,
            "wrong-return",
            f"{what} is a {type(items).__name__}; expected a set (or list) of parameter names.",
        )
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = set()
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, torch.Tensor) and id(item) in by_id:
            names.add(by_id[id(item)])
        elif isinstance(item, torch.Tensor):
            raise CheckFailure(
                _GROUPS,
                "unknown-name",
                f"{what} holds a tensor of shape {tuple(item.shape)} that is not one of the model's "
                "parameters; return the names from model.named_parameters().",
            )
        else:
            raise CheckFailure(
                _GROUPS,
                "wrong-return",
                f"{what} holds {item!r:.60} ({type(item).__name__}); expected parameter names (strings).",
            )
    return names


def _read_split(out: Any, model: nn.Module, what: str) -> tuple[set[str], set[str]]:
    """The learner's (decay, no_decay), from two collections of names or two AdamW param groups."""
    if out is None:
        raise CheckFailure(
            _GROUPS, "returned-none", f"{what} returned None: is `return decay, no_decay` missing?"
        )
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        size = f" of {len(out)} items" if isinstance(out, (tuple, list)) else ""
        raise CheckFailure(
            _GROUPS,
            "wrong-return",
            f"{what} returned a {type(out).__name__}{size}; expected two sets of names: (decay, no_decay).",
        )
    if all(isinstance(g, dict) for g in out):  # AdamW param groups: the one with weight_decay > 0 decays
        if not all("params" in g and "weight_decay" in g for g in out):
            raise CheckFailure(
                _GROUPS,
                "wrong-return",
                f"{what} returned two dicts, but a param group needs both 'params' and 'weight_decay' keys.",
            )
        groups = sorted(out, key=lambda g: -float(g["weight_decay"]))
        if not float(groups[0]["weight_decay"]) > 0 or float(groups[1]["weight_decay"]) != 0:
            raise CheckFailure(
                _GROUPS,
                "wrong-return",
                f"{what} returned param groups with weight_decay {[g['weight_decay'] for g in out]}; "
                "one group needs weight decay > 0, the other weight_decay 0.0.",
            )
        return (
            _names_of(groups[0]["params"], model, f"{what}'s decay group"),
            _names_of(groups[1]["params"], model, f"{what}'s no-decay group"),
        )
    return _names_of(out[0], model, f"{what}[0] (decay)"), _names_of(out[1], model, f"{what}[1] (no_decay)")


def _listed(names: set[str] | list[str], model: nn.Module | None = None, n: int = 4) -> str:
    items = sorted(names)
    shown = [f"'{x}' ({_owner(model, x)})" if model is not None else f"'{x}'" for x in items[:n]]
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(shown) + more


_WRONG_WORDS = {
    "layernorm": ("layernorm-decayed", "LayerNorm weights are decayed"),
    "embedding": ("embedding-decayed", "embedding tables are decayed"),
    "pos_emb": ("pos-emb-decayed", "the position table pos_emb is decayed"),
    "bias": ("bias-decayed", "biases are decayed"),
    "other": ("missing", "parameters that are no weight of Linear are decayed"),
}


def _compare_split(model: nn.Module, what: str, decay: set[str], no_decay: set[str], note: str) -> None:
    params = dict(model.named_parameters())
    unknown = (decay | no_decay) - params.keys()
    if unknown:
        if unknown == {"pos_emb"}:
            raise CheckFailure(
                _GROUPS,
                "pos-emb-name",
                f"{what}: your groups name 'pos_emb', but this model's position table is called "
                f"{_listed([n for n in params if n.endswith('pos_emb')])}.",
            )
        near = [n for n in params if any(n.endswith("." + u) for u in unknown)]
        seen = f" Did you mean {_listed(near)}?" if near else ""
        raise CheckFailure(
            _GROUPS,
            "unknown-name",
            f"{what}: {_listed(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the model's "
            f"parameter names (e.g. {_listed(list(params)[:3])}).{seen}",
        )
    both = decay & no_decay
    if both:
        raise CheckFailure(_GROUPS, "in-both", f"{what}: {_listed(both, model)} are in both groups.{note}")
    missing = params.keys() - decay - no_decay
    if missing:
        code = "pos-emb-missing" if any(_kind(model, n) == "pos_emb" for n in missing) else "missing"
        raise CheckFailure(
            _GROUPS,
            code,
            f"{what}: {_listed(missing, model)} {'is' if len(missing) == 1 else 'are'} in "
            f"neither group.{note}",
        )
    ref_decay, ref_no_decay = _reference_split(model)
    if decay == ref_decay:
        return
    if decay == ref_no_decay:
        raise CheckFailure(
            _GROUPS,
            "swapped",
            f"{what}: your first set holds exactly the parameters that must NOT decay ({len(decay)} of them), "
            "and the second the ones that must: the groups are swapped.",
        )
    wrongly_decayed = decay - ref_decay
    not_decayed = ref_decay - decay
    two_d = {n for n, p in params.items() if p.dim() >= 2}
    if decay == two_d:
        raise CheckFailure(
            _GROUPS,
            "by-dim",
            f"{what}: you decay every parameter with 2 or more dimensions, so "
            f"{_listed(wrongly_decayed, model)} decay too.{note}",
        )
    for kind in ("layernorm", "embedding", "pos_emb", "bias", "other"):
        wrong = {n for n in wrongly_decayed if _kind(model, n) == kind}
        if wrong:
            code, words = _WRONG_WORDS[kind]
            raise CheckFailure(
                _GROUPS,
                code,
                f"{what}: {words}: {_listed(wrong, model)} should be in no_decay.{note}",
            )
    raise CheckFailure(
        _GROUPS,
        "linear-not-decayed",
        f"{what}: Linear weights {_listed(not_decayed, model)} are not decayed; every nn.Linear weight "
        f"should be.{note}",
    )


def check_optimizer_groups(optimizer_groups: Any) -> None:
    """Check optimizer_groups(model) -> (decay, no_decay) against GPT.configure_optimizers' split."""
    _is_function(_GROUPS, optimizer_groups, "optimizer_groups")
    with one_thread(), seeded(0):
        config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
        models = [
            ("gptlib's GPT (2 layers)", GPT(config), ""),
            (
                "a model with other module types and names",
                _OtherModel(),
                " (Your split was right on gptlib's GPT, whose names follow the seed's; this model names its "
                "layers differently and has a LayerNorm without bias, a Linear subclass and a second "
                "embedding: decide by the module's type.)",
            ),
        ]
        sizes = []
        for label, model, note in models:
            what = f"optimizer_groups({label})"
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            out, err = attempt(_GROUPS, what, optimizer_groups, model)
            if err is not None:
                raise CheckFailure(
                    _GROUPS,
                    "crashed",
                    f"{what} raised {_first_line(err)}. Fix that line and run the cell again.",
                ) from None
            decay, no_decay = _read_split(out, model, what)
            _compare_split(model, what, decay, no_decay, note)
            if any(not torch.equal(p, before[n]) for n, p in model.named_parameters()):
                raise CheckFailure(
                    _GROUPS, "changes-model", f"{what} changed the model's weights; only read them."
                )
            sizes.append((len(decay), len(no_decay)))
    (d, nd), _ = sizes
    passed(
        _GROUPS,
        f"the same split as GPT.configure_optimizers on gptlib's GPT ({d} tensors decay, {nd} don't) and on "
        "a model with other module types and names.",
    )


# ==== train_step ===============================================================================

_STEP = "train_step"

register_hints(
    _STEP,
    levels=[
        "One step, in this order: set the learning rate of every param group, put the model in training "
        "mode, forward the batch to get the loss, clear the old gradients, backpropagate, clip the gradient "
        "norm, let the optimizer update the weights. Return the loss as a float.",
        "`for group in optimizer.param_groups: group['lr'] = lr`; `model.train()`; `_, loss = model(x, y)`; "
        "`optimizer.zero_grad(set_to_none=True)`; `loss.backward()`; "
        "`torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)`; `optimizer.step()`; "
        "`return loss.item()`. zero_grad may also come first; clipping must come between backward and step.",
        "for group in optimizer.param_groups:\n"
        "    group['lr'] = lr\n"
        "model.train()\n"
        "_, loss = model(x, y)\n"
        "optimizer.zero_grad(set_to_none=True)\n"
        "loss.backward()\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)\n"
        "optimizer.step()\n"
        "return loss.item()",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_train_step(train_step).",
        "loss-not-returned": "return the loss of the batch as a number: `return loss.item()`.",
        "wrong-loss": "return the loss computed by the forward pass of this step (before the update): "
        "`_, loss = model(x, y)` ... `return loss.item()`.",
        "no-zero-grad": "loss.backward() adds to .grad; without optimizer.zero_grad() each step also applies "
        "every earlier step's gradients. Call optimizer.zero_grad(set_to_none=True) before backward.",
        "zero-grad-after-backward": "optimizer.zero_grad() must come before loss.backward() (or before the "
        "forward pass), not between backward and step: there it throws away the gradients the step needs.",
        "step-before-backward": "optimizer.step() uses the gradients in .grad, so it comes after "
        "loss.backward() (and after clipping).",
        "no-clip": "clip the gradient norm between backward and step: "
        "torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).",
        "clip-after-step": "clipping after optimizer.step() is too late: the update has already used the "
        "unclipped gradients. Clip between loss.backward() and optimizer.step().",
        "clip-by-value": "clip the gradients' overall norm (clip_grad_norm_), not each value (clip_grad_value_): "
        "scaling keeps the gradient's direction.",
        "clip-value": "clip to the grad_clip argument, not to a fixed number.",
        "eval-mode": "call model.train() in the step: evaluation or sampling may have left the model in eval "
        "mode, where dropout is off.",
        "lr-not-set": "set the learning rate the schedule gives before stepping: "
        "`for group in optimizer.param_groups: group['lr'] = lr`.",
        "lr-one-group": "the optimizer has two param groups (decay and no decay); set the lr of every group "
        "in a loop, not only param_groups[0].",
        "modifies-input": "do not change x or y in place.",
        "wrong-update": "follow the order: lr, train(), forward, zero_grad, backward, clip, step.",
    },
)

_CLIP = 0.05  # far below the tiny model's gradient norm, so clipping always acts
_OPT_LR = 0.5  # the lr the optimizer is built with; the steps ask for others
_STEP_LRS = (0.2, 0.1)
_DROP_SEEDS = (11, 12)


def _step_model() -> GPT:
    config = GPTConfig(
        vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16,
        embd_pdrop=0.2, resid_pdrop=0.2, attn_pdrop=0.2,
    )  # fmt: skip
    return GPT(config)


def _sgd(model: nn.Module) -> torch.optim.SGD:
    """Plain SGD with two param groups (decay and no decay), as configure_optimizers makes for AdamW."""
    decay, no_decay = _reference_split(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in sorted(decay)], "weight_decay": 0.1},
        {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=_OPT_LR)


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
    opt = _sgd(model)
    snapshots, losses = [], []
    for (x, y), lr, seed in zip(batches, _STEP_LRS, _DROP_SEEDS, strict=False):
        if set_lr == "all":
            for g in opt.param_groups:
                g["lr"] = lr
        elif set_lr == "first":
            opt.param_groups[0]["lr"] = lr
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


def _same_params(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    return all(
        torch.allclose(p.detach(), snapshot[n], atol=1e-6, rtol=1e-5) for n, p in model.named_parameters()
    )


def _share_same(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> float:
    total = sum(p.numel() for p in model.parameters())
    same = sum(
        int(torch.isclose(p.detach(), snapshot[n], atol=1e-6, rtol=1e-5).sum())
        for n, p in model.named_parameters()
    )
    return same / total


_SLIPS = {
    "eval-mode": "the model was left in eval mode (dropout off)",
    "no-clip": "the gradients were not clipped before the step",
    "clip-value": f"the gradients were clipped to norm 1.0, not to grad_clip={_CLIP}",
    "clip-by-value": "each gradient value was clipped (clip_grad_value_), not the norm",
    "lr-not-set": f"the optimizer kept its own lr ({_OPT_LR}) instead of the lr argument",
    "lr-one-group": "the lr was set on the first param group only",
}


def _step_variants() -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Each combination of the one-step slips, with the settings that reproduce it."""
    for train in (True, False):
        for clip in ("norm", "none", "norm-1", "value"):
            for set_lr in ("all", "none", "first"):
                slips = []
                if not train:
                    slips.append("eval-mode")
                slips += {
                    "norm": [],
                    "none": ["no-clip"],
                    "norm-1": ["clip-value"],
                    "value": ["clip-by-value"],
                }[clip]
                slips += {"all": [], "none": ["lr-not-set"], "first": ["lr-one-group"]}[set_lr]
                if slips:
                    yield slips, {"train": train, "clip": clip, "set_lr": set_lr}


def _grad_norm(model: nn.Module) -> float | None:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def _diagnose_first_step(
    model: GPT, model0: GPT, batch: tuple[torch.Tensor, torch.Tensor], what: str
) -> None:
    """The learner's parameters after one step differ from the reference's: say which slip explains it."""
    unchanged = _same_params(model, {n: p.detach() for n, p in model0.named_parameters()})
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads and all(not g.any() for g in grads):
        raise CheckFailure(
            _STEP,
            "zero-grad-after-backward",
            f"{what} left only zeros in .grad, and the update used no gradient: optimizer.zero_grad() ran "
            "between loss.backward() and optimizer.step().",
        )
    if unchanged:
        norm = _grad_norm(model)
        if norm is None or norm == 0:
            raise CheckFailure(
                _STEP,
                "zero-grad-after-backward",
                f"{what} left every parameter unchanged and no gradient in .grad: the gradients were cleared "
                "before optimizer.step() could use them (or backward never ran).",
            )
        raise CheckFailure(
            _STEP,
            "step-before-backward",
            f"{what} left every parameter unchanged although .grad holds gradients: optimizer.step() ran "
            "before loss.backward() (or not at all).",
        )
    for slips, settings in _step_variants():
        snaps, _ = _reference_steps(model0, [batch], **settings)
        if _same_params(model, snaps[0]):
            if slips == ["no-clip"]:
                norm = _grad_norm(model)
                if norm is not None and abs(norm - _CLIP) < 1e-3 * _CLIP:
                    raise CheckFailure(
                        _STEP,
                        "clip-after-step",
                        f"{what}: the update used the unclipped gradients, but .grad holds gradients clipped "
                        f"to norm {_CLIP}: the clipping ran after optimizer.step().",
                    )
            words = "; ".join(_SLIPS[s] for s in slips)
            raise CheckFailure(_STEP, slips[0], f"{what} gives the parameters of a step in which {words}.")
    snaps, _ = _reference_steps(model0, [batch])
    raise CheckFailure(
        _STEP,
        "wrong-update",
        f"{what}: after your step {_share_same(model, snaps[0]):.0%} of the parameter values match a correct "
        "step's, and no single usual slip explains the difference.",
    )


def _as_loss(out: Any, what: str) -> float:
    reject_none_or_tuple(_STEP, what, out, "return only the loss (a float).", missing="`return loss.item()`")
    if isinstance(out, torch.Tensor) and out.numel() == 1 and out.is_floating_point():
        return float(out.detach())
    if isinstance(out, (float, int)) and not isinstance(out, bool):
        return float(out)
    shape = f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else ""
    raise CheckFailure(
        _STEP,
        "loss-not-returned",
        f"{what} returned a {type(out).__name__}{shape}; expected the batch's loss as a float (loss.item()).",
    )


def check_train_step(train_step: Any) -> None:
    """Check train_step(model, optimizer, x, y, lr, grad_clip) against reference steps on copies."""
    _is_function(_STEP, train_step, "train_step")
    with one_thread(), seeded(0):
        model0 = _step_model()
        g = torch.Generator().manual_seed(1)
        batches = [
            (torch.randint(13, (3, 8), generator=g), torch.randint(13, (3, 8), generator=g)) for _ in range(2)
        ]
        ref_snaps, ref_losses = _reference_steps(model0, batches)
        model = copy.deepcopy(model0).eval()  # as sampling or evaluation would leave it
        opt = _sgd(model)
        for i, ((x, y), lr, seed) in enumerate(zip(batches, _STEP_LRS, _DROP_SEEDS, strict=True)):
            what = f"train_step (call {i + 1}, lr={lr}, grad_clip={_CLIP})"
            xc, yc = x.clone(), y.clone()
            torch.manual_seed(seed)  # the same dropout masks as the reference step
            out, err = attempt(_STEP, what, train_step, model, opt, xc, yc, lr, _CLIP)
            if err is not None:
                raise CheckFailure(
                    _STEP,
                    "crashed",
                    f"{what} raised {_first_line(err)}. Fix that line and run the cell again.",
                ) from None
            if not (torch.equal(xc, x) and torch.equal(yc, y)):
                raise CheckFailure(_STEP, "modifies-input", f"{what} changed the batch x or y in place.")
            loss = _as_loss(out, what)
            if not _same_params(model, ref_snaps[i]):
                if i == 0:
                    _diagnose_first_step(model, model0, batches[0], what)
                no_zero, _ = _reference_steps(model0, batches, zero_grad=False)
                if _same_params(model, no_zero[1]):
                    raise CheckFailure(
                        _STEP,
                        "no-zero-grad",
                        f"{what}: the first step was right, but the second also applied the first step's "
                        "gradients: .grad was not cleared, so the gradients accumulate.",
                    )
                raise CheckFailure(
                    _STEP,
                    "wrong-update",
                    f"{what}: the first step was right, the second is not: "
                    f"{_share_same(model, ref_snaps[1]):.0%} of the parameter values match a correct step's.",
                )
            if not math.isclose(loss, ref_losses[i], rel_tol=1e-4, abs_tol=1e-5):
                raise CheckFailure(
                    _STEP,
                    "wrong-loss",
                    f"{what} returned {loss:.4f}, but the loss of this batch before the update is "
                    f"{ref_losses[i]:.4f}.",
                )
    passed(
        _STEP,
        "two steps match reference steps: lr set on every group, train mode, fresh gradients, norm clipped "
        "between backward and step; returns the loss.",
    )


# ==== sample ===================================================================================

_SAMPLE = "sample"

register_hints(
    _SAMPLE,
    levels=[
        "Three moves on the logits (B, V): divide by the temperature; if top_k is given, set every logit "
        "below the k-th largest of its row to -inf; turn the logits into probabilities with softmax over the "
        "last dimension and draw one token per row with torch.multinomial, passing the generator.",
        "`logits / temperature` (a small T sharpens, a large T flattens). "
        "`torch.topk(logits, k, dim=-1).values[:, [-1]]` is the k-th largest per row, shape (B, 1); "
        "`logits.masked_fill(logits < kth, float('-inf'))` removes the rest (exp(-inf) = 0 after softmax, "
        "and softmax renormalises the k left). `torch.multinomial(probs, num_samples=1, generator=generator)` "
        "returns (B, 1) token ids.",
        "logits = logits / temperature                                   # (B, V)\n"
        "if top_k is not None:\n"
        "    k = min(top_k, logits.size(-1))\n"
        "    kth = torch.topk(logits, k, dim=-1).values[:, [-1]]         # (B, 1)\n"
        "    logits = logits.masked_fill(logits < kth, float('-inf'))\n"
        "probs = F.softmax(logits, dim=-1)                               # (B, V)\n"
        "return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)",
    ],
    diagnoses={
        "not-a-function": "pass the function itself: check_sample(sample_next_token).",
        "wrong-shape": "return one token id per row, shape (B, 1): torch.multinomial(probs, num_samples=1) "
        "already has that shape (do not squeeze it).",
        "wrong-dtype": "return integer token ids (torch.long), as torch.multinomial gives.",
        "modifies-input": "do not change the logits in place (no `logits /= T`, no `logits[...] = -inf`): "
        "write `logits = logits / temperature` and use masked_fill, which make new tensors.",
        "generator-ignored": "pass the generator to the sampler: torch.multinomial(probs, 1, generator=generator).",
        "sampled-logits": "torch.multinomial takes probabilities (>= 0), not logits or log-probabilities: apply "
        "F.softmax(logits, dim=-1) first.",
        "argmax": "torch.argmax always takes the most likely token; sample instead with torch.multinomial "
        "on the softmax probabilities.",
        "temperature-multiplied": "divide the logits by the temperature: a small temperature must make the "
        "distribution sharper (logits / 0.5 doubles the gaps).",
        "temperature-ignored": "divide the logits by the temperature before the softmax.",
        "topk-ignored": "when top_k is given, set every logit below the k-th largest of its row to -inf before "
        "the softmax.",
        "topk-zero": "set the logits outside the top k to -inf, not 0: a logit of 0 is still a likely token, "
        "only exp(-inf) = 0 removes it.",
        "softmax-twice": "apply softmax once, to the (filtered) logits; a softmax of probabilities flattens "
        "the distribution and gives back mass to the tokens you removed.",
        "topk-index": "torch.topk returns the values and their positions (indices) in the vocabulary; a "
        "draw among the top k gives a position in that list: map it back with indices.gather(-1, pick).",
        "softmax-dim": "softmax over the vocabulary, the last dimension: F.softmax(logits, dim=-1).",
        "out-of-range": "every id must be in 0..V-1: if you sample by hand from a cumulative sum, the "
        "probabilities left after top-k must be renormalised to sum to 1 (or use torch.multinomial, "
        "which does that).",
        "wrong-distribution": "compare your probabilities with F.softmax(top_k_filtered(logits / T), dim=-1).",
    },
)

# Two rows of logits (V = 8), with no ties, negative values and the maximum not at id 0.
_ROWS = torch.tensor(
    [
        [0.3, 2.1, -1.2, 1.4, 0.0, -0.4, 0.9, -2.0],
        [-0.5, 0.2, 1.7, -1.0, 1.1, 0.6, -1.6, 0.0],
    ],
    dtype=torch.float32,
)
_DRAWS = 1500  # draws per row: chi-square tells the usual slips apart by a wide margin
_CASES: list[tuple[float, int | None]] = [(1.0, None), (2.0, None), (0.5, 3), (1.0, 1), (1e-3, None)]
_Z_1E4 = 3.719  # standard normal quantile for p = 1e-4


def _chi2_limit(df: int) -> float:
    """The chi-square value a correct sampler exceeds with probability ~1e-4 (Wilson-Hilferty)."""
    if df <= 0:
        return 0.5
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + _Z_1E4 * math.sqrt(a)) ** 3


def _mask_top_k(logits: torch.Tensor, k: int | None, fill: float = float("-inf")) -> torch.Tensor:
    if k is None:
        return logits
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, fill)


def _distributions(logits: torch.Tensor, T: float, k: int | None) -> dict[str, torch.Tensor]:
    """Row type -> probabilities (2, V), for the right sampler and the usual slips. logits (N, V)."""
    rows = logits[:2].double()  # (2, V)
    out = {
        "ok": F.softmax(_mask_top_k(rows, k) / T, dim=-1),
        "temperature-multiplied": F.softmax(_mask_top_k(rows, k) * T, dim=-1),
        "temperature-ignored": F.softmax(_mask_top_k(rows, k), dim=-1),
        "topk-ignored": F.softmax(rows / T, dim=-1),
        "topk-zero": F.softmax(_mask_top_k(rows, k, 0.0) / T, dim=-1),
        "softmax-twice": F.softmax(
            F.softmax(rows / T, dim=-1).masked_fill(_mask_top_k(rows, k) == float("-inf"), 0.0), dim=-1
        ),
    }
    with torch.no_grad():
        col = F.softmax(_mask_top_k(logits.double(), k) / T, dim=0)[:2]  # (2, V): softmax over the batch
    if torch.isfinite(col).all() and (col.sum(-1) > 0).all():
        out["softmax-dim"] = col / col.sum(-1, keepdim=True)
    if k is not None:
        ranked = out["ok"].sort(dim=-1, descending=True).values  # id r gets the r-th largest probability
        out["topk-index"] = ranked
    argmax = torch.zeros_like(rows)
    argmax[torch.arange(2), rows.argmax(-1)] = 1.0
    out["argmax"] = argmax
    return out


def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Chi-square distance of counts (2, V) from probabilities (2, V), and its degrees of freedom."""
    n = counts.sum(-1, keepdim=True).double()
    expected = probs * n
    if ((expected < 1e-9) & (counts > 0)).any():
        return math.inf, 0
    live = expected >= 1e-9
    stat = (((counts - expected) ** 2) / expected.clamp_min(1e-300))[live].sum().item()
    df = int(live.sum()) - 2
    return stat, df


def _sample_call(
    fn: Any, logits: torch.Tensor, T: float, k: int | None, seed: int, what: str
) -> torch.Tensor:
    arg = logits.clone()
    gen = torch.Generator().manual_seed(seed)
    out, err = attempt(_SAMPLE, what, fn, arg, T, k, gen)
    if err is not None:
        msg = str(err)
        if "probability tensor contains" in msg or "element < 0" in msg:
            raise CheckFailure(
                _SAMPLE,
                "sampled-logits",
                f"{what} raised {_first_line(err)}: torch.multinomial was given negative numbers, the logits "
                "or their log, instead of probabilities.",
            ) from None
        if "Dimension out of range" in msg:
            raise CheckFailure(_SAMPLE, "softmax-dim", f"{what} raised {_first_line(err)}.") from None
        raise CheckFailure(
            _SAMPLE, "crashed", f"{what} raised {_first_line(err)}. Fix that line and run the cell again."
        ) from None
    if not torch.equal(arg, logits):
        raise CheckFailure(_SAMPLE, "modifies-input", f"{what} changed the logits passed in.")
    B, V = logits.shape
    reject_none_or_tuple(_SAMPLE, what, out, "return the (B, 1) ids.")
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(_SAMPLE, "wrong-dtype", f"{what} returned a {type(out).__name__}, not a tensor.")
    if tuple(out.shape) != (B, 1):
        raise CheckFailure(
            _SAMPLE,
            "wrong-shape",
            f"{what} returned shape {tuple(out.shape)}; expected (B, 1) = ({B}, 1): one token id per row.",
        )
    if out.dtype != torch.long:
        raise CheckFailure(_SAMPLE, "wrong-dtype", f"{what} returned dtype {out.dtype}; expected torch.long.")
    if int(out.min()) < 0 or int(out.max()) >= V:
        raise CheckFailure(
            _SAMPLE,
            "out-of-range",
            f"{what} returned token id {int(out.max()) if int(out.max()) >= V else int(out.min())}; "
            f"ids must be in 0..{V - 1}.",
        )
    return out


def _describe(probs: torch.Tensor) -> str:
    return "[" + ", ".join(f"{p:.2f}" for p in probs.tolist()) + "]"


_SAMPLE_WORDS = {
    "temperature-multiplied": "softmax(logits * T): the temperature multiplies the logits instead of dividing them",
    "temperature-ignored": "softmax(logits): the temperature is ignored",
    "topk-ignored": "softmax(logits / T) over all tokens: top_k is ignored",
    "topk-zero": "the logits outside the top k set to 0 instead of -inf, so those tokens are still drawn",
    "softmax-twice": "a softmax of the probabilities: softmax applied twice",
    "softmax-dim": "a softmax over the batch (dim=0) instead of over the vocabulary",
    "topk-index": "the position within the top-k list instead of the token id",
    "argmax": "the most likely token every time: argmax, not a random draw",
}


def check_sample(sample_next_token: Any) -> None:
    """Check sample_next_token(logits, temperature, top_k, generator) -> (B, 1) ids, by their frequencies."""
    fn = sample_next_token
    _is_function(_SAMPLE, fn, "sample_next_token")
    with one_thread(), seeded(0):
        one = _ROWS[:1]
        _sample_call(fn, one, 1.0, None, 0, "sample_next_token(logits of shape (1, 8))")
        logits = _ROWS.repeat(_DRAWS, 1)  # (2 * _DRAWS, V): rows alternate between the two types
        what = f"sample_next_token(logits (B={logits.shape[0]}, V=8), temperature=1.0, top_k=None, generator)"
        first = _sample_call(fn, logits, 1.0, None, 123, what)
        torch.manual_seed(999)  # another global stream: a sampler that uses the generator does not notice
        again = _sample_call(fn, logits, 1.0, None, 123, what)
        if not torch.equal(first, again):
            raise CheckFailure(
                _SAMPLE,
                "generator-ignored",
                f"{what}: two calls with generators seeded alike gave different tokens "
                f"({(first != again).float().mean():.0%} of them differ): the draw does not use the "
                "generator passed in.",
            )
        for case, (T, k) in enumerate(_CASES):
            what = f"sample_next_token(logits, temperature={T}, top_k={k}, generator)"
            ids = _sample_call(fn, logits, T, k, 200 + case, what)[:, 0]  # (N,)
            counts = torch.stack(
                [torch.bincount(ids[r::2], minlength=8).double() for r in range(2)]
            )  # (2, V): draws per token, for each row type
            dists = _distributions(logits, T, k)
            stat, df = _chi2(counts, dists["ok"])
            if stat <= _chi2_limit(df):
                continue
            freq = counts[0] / counts[0].sum()
            outside = (dists["ok"] == 0) & (counts > 0)
            if k is not None and outside.any():
                n_out = int(counts[outside].sum())
                raise CheckFailure(
                    _SAMPLE,
                    _best_slip(counts, dists, default="topk-ignored"),
                    f"{what}: {n_out} of {2 * _DRAWS} draws are tokens outside the top {k}; only the "
                    f"{k} most likely tokens of each row may be drawn. Frequencies of row 0: "
                    f"{_describe(freq)}, expected {_describe(dists['ok'][0])}.",
                )
            code = _best_slip(counts, dists, default="wrong-distribution")
            words = _SAMPLE_WORDS.get(code, "none of the usual slips")
            raise CheckFailure(
                _SAMPLE,
                code,
                f"{what}: the draws do not follow softmax(top_k(logits) / T). Row 0 gave frequencies "
                f"{_describe(freq)}, expected {_describe(dists['ok'][0])}; they fit {words}.",
            )
    passed(
        _SAMPLE,
        "(B, 1) long ids drawn with the generator; frequencies match softmax(logits / T) over the top k "
        "(T = 0.001, 0.5, 1, 2; k = 1, 3, none).",
    )


def _best_slip(counts: torch.Tensor, dists: dict[str, torch.Tensor], default: str) -> str:
    """The slip whose distribution fits the counts (chi-square below the limit), else `default`."""
    best, best_stat = default, math.inf
    for code, probs in dists.items():
        if code == "ok":
            continue
        stat, df = _chi2(counts, probs)
        if stat <= _chi2_limit(df) and stat < best_stat:
            best, best_stat = code, stat
    return best
