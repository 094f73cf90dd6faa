"""Lesson 06's checks: correct optimizer splits, training steps and samplers pass; each classic
mistake fails with its diagnosis."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib.checks import CheckFailure, NotDoneYet
from gptlib.checks.training_and_sampling import check_optimizer_groups, check_sample, check_train_step
from gptlib.generate import next_token


def _fails_with(check, fn, diagnosis):
    with pytest.raises(CheckFailure) as excinfo:
        check(fn)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    return str(excinfo.value)


# --- optimizer_groups -------------------------------------------------------------------------


def groups_seed_style(model):
    """The seed's loop: named_parameters() of every module, recursing (the filter makes it right)."""
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters():
            full = f"{mn}.{pn}" if mn else pn
            if pn.endswith("bias"):
                no_decay.add(full)
            elif pn.endswith("weight") and isinstance(m, nn.Linear):
                decay.add(full)
            elif pn.endswith("weight") and isinstance(m, (nn.LayerNorm, nn.Embedding)):
                no_decay.add(full)
    no_decay |= {n for n, _ in model.named_parameters() if n.split(".")[-1] == "pos_emb"}
    return decay, no_decay


def groups_own_params(model):
    decay, no_decay = [], []
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            (decay if isinstance(m, nn.Linear) and pn == "weight" else no_decay).append(full)
    return decay, no_decay


def groups_as_param_groups(model):
    decay, no_decay = groups_own_params(model)
    params = dict(model.named_parameters())
    return [
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
        {"params": [params[n] for n in decay], "weight_decay": 0.1},
    ]


def groups_as_tensors(model):
    decay, no_decay = groups_own_params(model)
    params = dict(model.named_parameters())
    return [params[n] for n in decay], [params[n] for n in no_decay]


@pytest.mark.parametrize(
    "fn", [groups_seed_style, groups_own_params, groups_as_param_groups, groups_as_tensors]
)
def test_correct_splits_pass(fn, capsys):
    check_optimizer_groups(fn)
    assert "passed" in capsys.readouterr().out


def _split(model, rule):
    """decay/no_decay by rule(module, param_name, full_name) -> True (decay), False, or None (neither)."""
    decay, no_decay = set(), set()
    for mn, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            verdict = rule(m, pn, full)
            if verdict is True:
                decay.add(full)
            elif verdict is False:
                no_decay.add(full)
    return decay, no_decay


def seed_rule(m, pn, full):
    if pn.endswith("bias"):
        return False
    if isinstance(m, nn.Linear):
        return True
    return False


def groups_layernorm_decayed(model):
    return _split(model, lambda m, pn, f: isinstance(m, (nn.Linear, nn.LayerNorm)) and pn == "weight")


def groups_embedding_decayed(model):
    return _split(model, lambda m, pn, f: isinstance(m, (nn.Linear, nn.Embedding)) and pn == "weight")


def groups_pos_emb_forgotten(model):
    def rule(m, pn, f):
        if pn == "pos_emb":
            return None
        return seed_rule(m, pn, f)

    return _split(model, rule)


def groups_pos_emb_decayed(model):
    return _split(model, lambda m, pn, f: True if pn == "pos_emb" else seed_rule(m, pn, f))


def groups_pos_emb_seed_name(model):
    decay, no_decay = groups_pos_emb_forgotten(model)
    return decay, no_decay | {"pos_emb"}


def groups_bias_decayed(model):
    return _split(model, lambda m, pn, f: isinstance(m, nn.Linear))


def groups_in_both(model):
    decay, no_decay = groups_own_params(model)
    return set(decay) | {n for n in no_decay if n.endswith("ln1.weight")}, set(no_decay)


def groups_swapped(model):
    decay, no_decay = groups_own_params(model)
    return no_decay, decay


def groups_by_dim(model):
    """nanoGPT's rule: decay every parameter with two or more dimensions."""
    decay = {n for n, p in model.named_parameters() if p.dim() >= 2}
    return decay, {n for n, _ in model.named_parameters()} - decay


def groups_by_name(model):
    """Right on gptlib's GPT, whose names follow the seed's; wrong on a model named otherwise."""
    decay, no_decay = set(), set()
    for n, _ in model.named_parameters():
        no = n.endswith("bias") or "ln" in n or "emb" in n
        (no_decay if no else decay).add(n)
    return decay, no_decay


def groups_exact_type(model):
    """type(m) is nn.Linear misses subclasses of nn.Linear: their weight lands in no group."""

    def rule(m, pn, f):
        if pn.endswith("bias") or isinstance(m, (nn.LayerNorm, nn.Embedding)) or pn == "pos_emb":
            return False
        if type(m) is nn.Linear:
            return True
        return None

    return _split(model, rule)


def groups_short_names(model):
    decay, no_decay = set(), set()
    for _, m in model.named_modules():
        for pn, _ in m.named_parameters(recurse=False):
            (decay if isinstance(m, nn.Linear) and pn == "weight" else no_decay).add(pn)
    return decay, no_decay


def groups_returns_none(model):
    groups_own_params(model)


def groups_returns_one_set(model):
    return set(groups_own_params(model)[0])


def groups_stub(model):
    raise NotImplementedError()


def groups_crash(model):
    return model.no_such_thing


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (groups_layernorm_decayed, "layernorm-decayed"),
        (groups_embedding_decayed, "embedding-decayed"),
        (groups_pos_emb_forgotten, "pos-emb-missing"),
        (groups_pos_emb_decayed, "pos-emb-decayed"),
        (groups_pos_emb_seed_name, "pos-emb-name"),
        (groups_bias_decayed, "bias-decayed"),
        (groups_in_both, "in-both"),
        (groups_swapped, "swapped"),
        (groups_by_dim, "by-dim"),
        (groups_by_name, "layernorm-decayed"),
        (groups_exact_type, "missing"),
        (groups_short_names, "unknown-name"),
        (groups_returns_none, "returned-none"),
        (groups_returns_one_set, "wrong-return"),
        (groups_crash, "crashed"),
    ],
)
def test_wrong_splits_are_diagnosed(fn, diagnosis):
    _fails_with(check_optimizer_groups, fn, diagnosis)


def test_split_by_name_is_told_to_go_by_type():
    msg = _fails_with(check_optimizer_groups, groups_by_name, "layernorm-decayed")
    assert "right on gptlib's GPT" in msg and "module's type" in msg


def test_exact_type_names_the_subclass():
    msg = _fails_with(check_optimizer_groups, groups_exact_type, "missing")
    assert "layers.up.weight" in msg and "subclass of nn.Linear" in msg


def test_groups_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_optimizer_groups(groups_stub)


def test_groups_check_rejects_a_class():
    _fails_with(check_optimizer_groups, nn.Linear, "not-callable")


# --- train_step -------------------------------------------------------------------------------


def step_ref(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_zero_grad_first_tensor_loss(model, optimizer, x, y, lr, grad_clip=1.0):
    model.train()
    optimizer.zero_grad()
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits, _ = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # clearing afterwards is fine too
    return loss.detach()


def step_no_zero_grad(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_no_clip(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_clip_after_step(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss.item()


def step_clip_by_value(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_before_backward(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    optimizer.step()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss.item()


def step_zero_grad_after_backward(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def step_zero_grad_to_zeros_after_backward(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    _, loss = model(x, y)
    loss.backward()
    optimizer.zero_grad(set_to_none=False)
    optimizer.step()
    return loss.item()


def step_eval_mode(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_lr_not_set(model, optimizer, x, y, lr, grad_clip=1.0):
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_lr_first_group(model, optimizer, x, y, lr, grad_clip=1.0):
    optimizer.param_groups[0]["lr"] = lr
    model.train()
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_eval_and_no_clip(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_returns_nothing(model, optimizer, x, y, lr, grad_clip=1.0):
    step_ref(model, optimizer, x, y, lr, grad_clip)


def step_returns_logits_and_loss(model, optimizer, x, y, lr, grad_clip=1.0):
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    logits, loss = model(x, y)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return logits, loss


def step_returns_string(model, optimizer, x, y, lr, grad_clip=1.0):
    return f"{step_ref(model, optimizer, x, y, lr, grad_clip):.3f}"


def step_returns_loss_after_update(model, optimizer, x, y, lr, grad_clip=1.0):
    step_ref(model, optimizer, x, y, lr, grad_clip)
    with torch.no_grad():
        return model(x, y)[1].item()


def step_stub(model, optimizer, x, y, lr, grad_clip=1.0):
    raise NotImplementedError()


def step_modifies_batch(model, optimizer, x, y, lr, grad_clip=1.0):
    loss = step_ref(model, optimizer, x, y, lr, grad_clip)
    y.zero_()
    return loss


def step_no_grad(model, optimizer, x, y, lr, grad_clip=1.0):
    with torch.no_grad():
        return step_ref(model, optimizer, x, y, lr, grad_clip)


def step_clip_by_hand(model, optimizer, x, y, lr, grad_clip=1.0):
    """model.zero_grad, the global norm clipped by hand, the rate set through a loop over the groups."""
    model.train()
    model.zero_grad(set_to_none=True)
    _, loss = model(x, targets=y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    scale = min(1.0, grad_clip / (float(norm) + 1e-6))
    for g in grads:
        g.mul_(scale)
    for group in optimizer.param_groups:
        group.update(lr=lr)
    optimizer.step()
    return loss.detach().item()


@pytest.mark.parametrize("fn", [step_ref, step_zero_grad_first_tensor_loss, step_clip_by_hand])
def test_correct_steps_pass(fn, capsys):
    check_train_step(fn)
    assert "passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (step_no_zero_grad, "no-zero-grad"),
        (step_no_clip, "no-clip"),
        (step_clip_after_step, "clip-after-step"),
        (step_clip_by_value, "clip-by-value"),
        (step_before_backward, "step-before-backward"),
        (step_zero_grad_after_backward, "zero-grad-after-backward"),
        (step_zero_grad_to_zeros_after_backward, "zero-grad-after-backward"),
        (step_eval_mode, "eval-mode"),
        (step_lr_not_set, "lr-not-set"),
        (step_lr_first_group, "lr-one-group"),
        (step_eval_and_no_clip, "eval-mode"),
        (step_returns_nothing, "returned-none"),
        (step_returns_logits_and_loss, "returned-tuple"),
        (step_returns_string, "loss-not-returned"),
        (step_returns_loss_after_update, "wrong-loss"),
        (step_modifies_batch, "in-place"),
        (step_no_grad, "crashed"),
    ],
)
def test_wrong_steps_are_diagnosed(fn, diagnosis):
    _fails_with(check_train_step, fn, diagnosis)


def test_two_slips_are_both_named():
    msg = _fails_with(check_train_step, step_eval_and_no_clip, "eval-mode")
    assert "eval mode" in msg and "not clipped" in msg


def test_step_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_train_step(step_stub)


def test_step_check_leaves_rng_and_threads_alone():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    check_train_step(step_ref)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


# --- sample -----------------------------------------------------------------------------------


def sample_ref(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def sample_gptlib(logits, temperature=1.0, top_k=None, generator=None):
    return next_token(logits, temperature, do_sample=True, top_k=top_k, generator=generator)


def sample_topk_gather(logits, temperature=1.0, top_k=None, generator=None):
    """Draw among the top k values, then map the position back to a token id."""
    k = logits.size(-1) if top_k is None else min(top_k, logits.size(-1))
    values, indices = torch.topk(logits / temperature, k, dim=-1)
    pick = torch.multinomial(F.softmax(values, dim=-1), 1, generator=generator)
    return indices.gather(-1, pick)


def sample_gumbel(logits, temperature=1.0, top_k=None, generator=None):
    """The Gumbel-max trick: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T)."""
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
    u = torch.rand(logits.shape, generator=generator).clamp_min(1e-20)
    return (logits - torch.log(-torch.log(u))).argmax(dim=-1, keepdim=True)


def sample_sorted_cdf(logits, temperature=1.0, top_k=None, generator=None):
    """Sorted probabilities, top k kept by position, inverse-CDF draw with searchsorted."""
    probs, order = torch.sort(F.softmax(logits / temperature, dim=-1), dim=-1, descending=True)
    if top_k is not None:
        probs[:, top_k:] = 0
    cdf = probs.cumsum(-1)
    u = torch.rand(logits.size(0), 1, generator=generator) * cdf[:, -1:]
    pos = torch.searchsorted(cdf, u).clamp_max(logits.size(-1) - 1)
    return order.gather(-1, pos)


@pytest.mark.parametrize(
    "fn", [sample_ref, sample_gptlib, sample_topk_gather, sample_gumbel, sample_sorted_cdf]
)
def test_correct_samplers_pass(fn, capsys):
    check_sample(fn)
    assert "passed" in capsys.readouterr().out


def sample_temperature_multiplied(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits * temperature, 1.0, top_k, generator)


def sample_temperature_ignored(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, 1.0, top_k, generator)


def sample_topk_ignored(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, temperature, None, generator)


def sample_topk_zero(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, 0.0)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)


def sample_softmax_twice(logits, temperature=1.0, top_k=None, generator=None):
    probs = F.softmax(logits / temperature, dim=-1)
    if top_k is not None:
        kth = torch.topk(probs, top_k, dim=-1).values[:, [-1]]
        probs = probs.masked_fill(probs < kth, 0.0)
    return torch.multinomial(F.softmax(probs, dim=-1), 1, generator=generator)


def sample_topk_index(logits, temperature=1.0, top_k=None, generator=None):
    if top_k is None:
        return sample_ref(logits, temperature, None, generator)
    values, _ = torch.topk(logits / temperature, top_k, dim=-1)
    return torch.multinomial(F.softmax(values, dim=-1), 1, generator=generator)


def sample_argmax(logits, temperature=1.0, top_k=None, generator=None):
    return (logits / temperature).argmax(dim=-1, keepdim=True)


def sample_from_logits(logits, temperature=1.0, top_k=None, generator=None):
    return torch.multinomial(logits / temperature, 1, generator=generator)


def sample_from_log_probs(logits, temperature=1.0, top_k=None, generator=None):
    return torch.multinomial(F.log_softmax(logits / temperature, dim=-1), 1, generator=generator)


def sample_softmax_dim0(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=0), 1, generator=generator)


def sample_flat(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, temperature, top_k, generator)[:, 0]


def sample_float_ids(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, temperature, top_k, generator).float()


def sample_as_list(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, temperature, top_k, generator).tolist()


def sample_global_rng(logits, temperature=1.0, top_k=None, generator=None):
    return sample_ref(logits, temperature, top_k, None)


def sample_in_place(logits, temperature=1.0, top_k=None, generator=None):
    logits /= temperature
    return sample_ref(logits, 1.0, top_k, generator)


def sample_unnormalised_cdf(logits, temperature=1.0, top_k=None, generator=None):
    """Inverse-CDF sampling by hand from top-k probabilities that are not renormalised."""
    probs = F.softmax(logits / temperature, dim=-1)
    if top_k is not None:
        kth = torch.topk(probs, top_k, dim=-1).values[:, [-1]]
        probs = probs.masked_fill(probs < kth, 0.0)
    u = torch.rand(probs.shape[0], 1, generator=generator)
    return (probs.cumsum(-1) < u).sum(-1, keepdim=True)


def sample_stub(logits, temperature=1.0, top_k=None, generator=None):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (sample_temperature_multiplied, "temperature-multiplied"),
        (sample_temperature_ignored, "temperature-ignored"),
        (sample_topk_ignored, "topk-ignored"),
        (sample_topk_zero, "topk-zero"),
        (sample_softmax_twice, "softmax-twice"),
        (sample_topk_index, "topk-index"),
        (sample_argmax, "argmax"),
        (sample_from_logits, "sampled-logits"),
        (sample_from_log_probs, "sampled-logits"),
        (sample_softmax_dim0, "softmax-axis"),
        (sample_flat, "wrong-shape"),
        (sample_float_ids, "wrong-dtype"),
        (sample_as_list, "not-a-tensor"),
        (sample_global_rng, "generator-ignored"),
        (sample_in_place, "in-place"),
        (sample_unnormalised_cdf, "out-of-range"),
    ],
)
def test_wrong_samplers_are_diagnosed(fn, diagnosis):
    _fails_with(check_sample, fn, diagnosis)


def test_sample_stub_is_not_done_yet():
    with pytest.raises(NotDoneYet):
        check_sample(sample_stub)


def test_sample_failure_shows_frequencies_and_hint():
    msg = _fails_with(check_sample, sample_temperature_multiplied, "temperature-multiplied")
    assert "expected [" in msg and "Hint: divide the logits by the temperature" in msg


def test_sample_check_leaves_rng_alone():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    check_sample(sample_ref)
    assert torch.equal(torch.get_rng_state(), state)
