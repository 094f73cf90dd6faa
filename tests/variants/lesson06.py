"""Lesson 06, training and sampling: optimizer_groups (6.1), train_step (6.2), sample_next_token (6.3)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 6.1 optimizer_groups


@V.correct("6.1", "by-module-type")
def groups_by_type(model):
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            if isinstance(m, nn.Linear) and pn == "weight":
                decay.add(full)
            else:
                no_decay.add(full)  # biases, LayerNorm and Embedding weights, pos_emb
    return decay, no_decay


@V.correct("6.1", "owner-lookup")
def groups_owner(model):
    modules = dict(model.named_modules())
    decay, no_decay = set(), set()
    for name, _ in model.named_parameters():
        owner_name, _, pn = name.rpartition(".")
        owner = modules[owner_name]
        if pn == "weight" and isinstance(owner, nn.Linear):
            decay.add(name)
        else:
            no_decay.add(name)
    return decay, no_decay


@V.correct("6.1", "complement")
def groups_complement(model):
    decay = {
        f"{mn}.{pn}" if mn else pn
        for mn, m in model.named_modules()
        if isinstance(m, nn.Linear)
        for pn, _ in m.named_parameters(recurse=False)
        if pn == "weight"
    }
    no_decay = {n for n, _ in model.named_parameters()} - decay
    return decay, no_decay


def _split(model, decays):
    """(decay, no_decay) by a rule decays(module_name, module, param_name) -> bool."""
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            (decay if decays(mn, m, pn) else no_decay).add(full)
    return decay, no_decay


@V.mistake(
    "6.1",
    "every-weight-decayed",
    ["layernorm", "embedding", "type", "isinstance"],
    "Every parameter called weight is decayed, LayerNorm and Embedding weights too: decide by the module's type.",
)
def groups_by_weight_name(model):
    decay, no_decay = set(), set()
    for name, _ in model.named_parameters():
        (decay if name.endswith("weight") else no_decay).add(name)
    return decay, no_decay


@V.mistake(
    "6.1",
    "decided-by-name",
    ["name", "type", "isinstance"],
    "'ln' or 'emb' in the name is not the module's type: emb_proj is a Linear, ln_gate is not a LayerNorm.",
)
def groups_by_names(model):
    decay, no_decay = set(), set()
    for name, _ in model.named_parameters():
        if name.endswith("bias") or "ln" in name or "emb" in name:
            no_decay.add(name)
        else:
            decay.add(name)
    return decay, no_decay


@V.mistake(
    "6.1",
    "pos-emb-forgotten",
    ["pos_emb", "position", "neither", "missing", "forgot", "not in"],
    "pos_emb belongs to no Linear, LayerNorm or Embedding: it is in neither group. Put it in no_decay.",
)
def groups_no_pos(model):
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            if pn.endswith("bias"):
                no_decay.add(full)
            elif isinstance(m, nn.Linear):
                decay.add(full)
            elif isinstance(m, (nn.LayerNorm, nn.Embedding)):
                no_decay.add(full)
    return decay, no_decay


@V.mistake(
    "6.1",
    "embedding-decayed",
    ["embedding"],
    "Embedding weights are decayed: a rare token's row would fade. They belong in no_decay.",
)
def groups_emb_decay(model):
    return _split(model, lambda mn, m, pn: pn == "weight" and isinstance(m, (nn.Linear, nn.Embedding)))


@V.mistake(
    "6.1",
    "layernorm-decayed",
    ["layernorm"],
    "LayerNorm gains are decayed toward 0: they belong in no_decay.",
)
def groups_ln_decay(model):
    return _split(model, lambda mn, m, pn: pn == "weight" and isinstance(m, (nn.Linear, nn.LayerNorm)))


@V.mistake("6.1", "biases-decayed", ["bias"], "Linear biases are decayed: every bias belongs in no_decay.")
def groups_bias_decay(model):
    return _split(model, lambda mn, m, pn: isinstance(m, nn.Linear))


@V.mistake(
    "6.1",
    "groups-swapped",
    ["swap", "other way", "reversed", "the wrong way"],
    "You return (no_decay, decay): decay comes first.",
)
def groups_swapped(model):
    decay, no_decay = groups_by_type(model)
    return no_decay, decay


@V.mistake(
    "6.1",
    "short-names",
    ["full name", "full names", "named_parameters", "prefix", "parameter names"],
    "'weight' alone is not a full name: prefix the module's name, as named_parameters() does.",
)
def groups_short(model):
    decay, no_decay = set(), set()
    for _mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            (decay if pn == "weight" and isinstance(m, nn.Linear) else no_decay).add(
                f"{type(m).__name__}.{pn}"
            )
    return decay, no_decay


@V.mistake(
    "6.1",
    "exact-type",
    ["subclass", "isinstance", "type("],
    "type(m) == nn.Linear misses subclasses of nn.Linear: use isinstance.",
)
def groups_exact_type(model):
    return _split(model, lambda mn, m, pn: pn == "weight" and type(m) is nn.Linear)


@V.mistake(
    "6.1",
    "bias-in-both-groups",
    ["both"],
    "A Linear's bias lands in decay with its weight and in no_decay as a bias: each parameter in one group only.",
)
def groups_both(model):
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            if isinstance(m, nn.Linear):
                decay.add(full)
            if pn.endswith("bias") or not isinstance(m, nn.Linear):
                no_decay.add(full)
    return decay, no_decay


# ---------------------------------------------------------------- 6.2 train_step


@V.correct("6.2", "model-zero-grad-update")
def step_model_zero(model, optimizer, x, y, lr, grad_clip=1.0):
    for g in optimizer.param_groups:
        g.update(lr=lr)
    model.train()
    model.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_norm_(list(model.parameters()), max_norm=grad_clip)
    optimizer.step()
    return float(loss.detach())


@V.correct("6.2", "own-loss")
def step_own_loss(model, optimizer, x, y, lr, grad_clip=1.0):
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.correct("6.2", "zero-grad-false-detach")
def step_zero_false(model, optimizer, x, y, lr, grad_clip=1.0):
    model.train(True)
    optimizer.zero_grad(set_to_none=False)
    logits, loss = model(x, targets=y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for pg in optimizer.param_groups:
        pg["lr"] = lr  # set before step(): that is when it is used
    optimizer.step()
    return loss.detach().item()


@V.mistake(
    "6.2",
    "no-zero-grad",
    ["zero_grad", "accumulat"],
    "Without zero_grad the second step also applies the first step's gradient again.",
)
def step_no_zero(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake("6.2", "no-clip", ["clip"], "The gradient norm is never clipped.")
def step_no_clip(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "clip-after-step",
    [("clip", "after"), ("clip", "before")],
    "Clipping after optimizer.step() is too late: the step already used the gradients.",
)
def step_clip_late(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss.item()


@V.mistake(
    "6.2",
    "clip-before-backward",
    [
        ("clip", "before backward"),
        ("clip", "before the backward"),
        ("clip", "after backward"),
        ("clip", "between"),
    ],
    "Clipping before backward clips nothing (the gradients do not exist yet): clip between backward and step.",
)
def step_clip_early(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    loss.backward()
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "step-before-backward",
    ["before backward", "before the backward", "before loss.backward", "step before", "order"],
    "optimizer.step() runs before loss.backward(): the step has no gradient to use.",
)
def step_before_backward(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    optimizer.step()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss.item()


@V.mistake(
    "6.2",
    "no-train-mode",
    ["train()", "train mode", "eval mode"],
    "The model may come in eval mode (after sampling): call model.train() so that dropout is on.",
)
def step_no_train(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake("6.2", "lr-not-set", ["lr", "learning rate"], "lr is never written into the optimizer's groups.")
def step_no_lr(model, optimizer, x, y, lr, grad_clip=1.0):
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "lr-on-first-group",
    ["group", "every group", "first group", "one group"],
    "Only param_groups[0] gets the new lr: set it on every group.",
)
def step_lr_first(model, optimizer, x, y, lr, grad_clip=1.0):
    optimizer.param_groups[0]["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake("6.2", "returns-tensor", ["float", "item"], "Return loss.item(), a Python float, not the tensor.")
def step_tensor(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


@V.mistake(
    "6.2",
    "loss-after-the-update",
    ["before the step", "after the step", "before the update", "this step", "second forward", "forward pass"],
    "The returned loss comes from a second forward after the update: return the loss this step trained on.",
)
def step_loss_after(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        _, after = model(x, y)
    return after.item()


@V.mistake(
    "6.2",
    "clip-by-value",
    ["clip_grad_value", "by value", "norm"],
    "clip_grad_value_ clips each entry; the step clips the norm of the whole gradient (clip_grad_norm_).",
)
def step_clip_value(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "eval-mode",
    ["eval", "train mode", "train()"],
    "model.eval() turns dropout off: a training step runs in train mode.",
)
def step_eval(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.eval()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "zero-grad-after-backward",
    ["zero_grad", "after backward", "wipe", "cleared before", "order"],
    "zero_grad between backward and step wipes the gradient the step needs.",
)
def step_zero_late(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    loss.backward()
    optimizer.zero_grad(set_to_none=True)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@V.mistake(
    "6.2",
    "hard-coded-clip",
    ["grad_clip", "1.0", "argument"],
    "clip_grad_norm_(..., 1.0) ignores the grad_clip argument.",
)
def step_clip_const(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


# ---------------------------------------------------------------- 6.3 sample_next_token


@V.correct("6.3", "topk-scatter")
def sample_scatter(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        vals, ix = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1)
        logits = torch.full_like(logits, float("-inf")).scatter(-1, ix, vals)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@V.correct("6.3", "draw-within-top-k")
def sample_within(logits, temperature=1.0, top_k=None, generator=None):
    scaled = logits / temperature
    if top_k is None:
        return torch.multinomial(F.softmax(scaled, -1), 1, generator=generator)
    vals, ix = scaled.topk(min(top_k, scaled.size(-1)), dim=-1)  # (B, k)
    choice = torch.multinomial(F.softmax(vals, -1), 1, generator=generator)  # (B, 1) positions in the top k
    return ix.gather(-1, choice)  # back to token ids


@V.correct("6.3", "where-and-reciprocal")
def sample_where(logits, temperature=1.0, top_k=None, generator=None):
    z = logits * (1.0 / temperature)
    if top_k:
        kth = z.topk(top_k, dim=1).values[:, -1:]
        z = torch.where(z < kth, torch.tensor(float("-inf")), z)
    p = z.softmax(dim=1)
    idx = torch.multinomial(p, num_samples=1, replacement=True, generator=generator)
    return idx.long()


def _topk(logits, k, fill=float("-inf")):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[:, [-1]]
    return logits.masked_fill(logits < kth, fill)


@V.mistake(
    "6.3",
    "temperature-multiplied",
    W.SCALE_MULTIPLIED + ("divide",),
    "logits * temperature sharpens where it should flatten: divide by the temperature.",
)
def sample_mul(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits * temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@V.mistake("6.3", "temperature-ignored", ["temperature"], "The temperature is never used.")
def sample_no_temp(logits, temperature=1.0, top_k=None, generator=None):
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@V.mistake("6.3", "top-k-ignored", ["top_k", "top-k"], "top_k is never used.")
def sample_no_topk(logits, temperature=1.0, top_k=None, generator=None):
    return torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=generator)


@V.mistake(
    "6.3", "top-k-filled-with-zero", W.FILL_ZERO, "Logits set to 0 keep probability: set them to -inf."
)
def sample_topk_zero(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k, fill=0.0)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@V.mistake(
    "6.3",
    "softmax-twice",
    ["twice", "second softmax", "double"],
    "softmax(softmax(...)) flattens the distribution: one softmax.",
)
def sample_double(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    probs = F.softmax(F.softmax(logits, dim=-1), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@V.mistake(
    "6.3",
    "top-k-positions-returned",
    ["positions in the top", "position in the", "index into", "token id", "gather", "indices"],
    "You return positions in the top-k list; map them back to token ids (gather with the top-k indices).",
)
def sample_positions(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is None:
        return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
    vals, _ = torch.topk(logits, top_k, dim=-1)
    return torch.multinomial(F.softmax(vals, dim=-1), 1, generator=generator)


@V.mistake(
    "6.3",
    "argmax",
    ["argmax", "greedy", "always the most likely", "most likely"],
    "argmax always takes the most likely token: draw with torch.multinomial.",
)
def sample_argmax(logits, temperature=1.0, top_k=None, generator=None):
    return (logits / temperature).argmax(dim=-1, keepdim=True)


@V.mistake(
    "6.3",
    "multinomial-on-logits",
    ["on logits", "on the logits", "multinomial", "probabilit"],
    "torch.multinomial needs probabilities: take the softmax first.",
)
def sample_on_logits(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(logits, 1, generator=generator)


@V.mistake(
    "6.3",
    "softmax-over-batch",
    W.SOFTMAX_AXIS + ("dim=0", "dim 0", "batch"),
    "softmax(dim=0) normalises across the batch; each row is a distribution over the vocabulary.",
)
def sample_axis(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=0), 1, generator=generator)


@V.mistake("6.3", "generator-ignored", ["generator"], "torch.multinomial must draw with generator=generator.")
def sample_no_gen(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1)


@V.mistake("6.3", "in-place", W.IN_PLACE, "logits /= temperature changes the caller's logits.")
def sample_inplace(logits, temperature=1.0, top_k=None, generator=None):
    logits /= temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@V.mistake(
    "6.3",
    "top-k-keeps-one-less",
    ["off by one", "k - 1", "k-1", "<=", "one fewer", "one less"],
    "logits <= kth drops the k-th token too: keep it (logits < kth is what goes).",
)
def sample_topk_le(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits <= kth, float("-inf"))
        logits = torch.nan_to_num(logits, neginf=-1e30)  # k = 1 would leave nothing: "fix" the NaN
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


@V.mistake("6.3", "flat-shape", ["shape", "(b, 1)"], "Return (B, 1): keep num_samples' dimension.")
def sample_flat(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        logits = _topk(logits, top_k)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
