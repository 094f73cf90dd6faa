"""The lesson-08 sampling checks: every correct variant passes, every known mistake gets its diagnosis.

The variants are written the ways learners write them: gptlib's "mass before" top-p, Hugging
Face's shifted mask, a threshold, a Python loop, ranks; sampling with multinomial or an
inverse CDF, with top-k before or after the temperature.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gptlib.checks import CheckFailure, NotDoneYet, check_sampling_strategies, check_top_p_filter, show_hints

NEG_INF = float("-inf")


def fails_with(check, arg, diagnosis: str) -> CheckFailure:
    """Run a check that must fail with `diagnosis`, and offer the hint for it; return the failure."""
    with pytest.raises(CheckFailure) as excinfo:
        check(arg)
    assert excinfo.value.diagnosis == diagnosis, str(excinfo.value)
    if diagnosis != "not-done":  # "not done yet" says what to do once, with no hint repeating it
        assert "\nHint: " in str(excinfo.value), f"no hint for {diagnosis!r}: {excinfo.value}"
    return excinfo.value


def not_done(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [check_top_p_filter, check_sampling_strategies])
def test_stub_is_not_done_yet_and_rng_is_left_alone(check):
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    with pytest.raises(NotDoneYet):
        check(not_done)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("check", [check_top_p_filter, check_sampling_strategies])
def test_not_a_function(check):
    fails_with(check, 42, "not-callable")


def test_every_exercise_has_hints():
    for exercise in ("top_p_filter", "sampling_strategies"):
        assert len(show_hints(exercise).entry.levels) >= 3


# ---- 8.1 top_p_filter ---------------------------------------------------------------------------------


def top_p_mass_before(logits, p):  # gptlib's
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    drop_sorted = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def top_p_hugging_face(logits, p):  # remove above p, then shift right so the crossing token stays
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cum > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(1, order, remove), NEG_INF)


def top_p_threshold(logits, p):  # find how many to keep, keep every logit >= the n-th (ties stay)
    probs = F.softmax(logits.double(), -1)
    sorted_probs, _ = probs.sort(-1, descending=True)
    n = (sorted_probs.cumsum(-1) - sorted_probs < p).sum(-1, keepdim=True)  # (B, 1)
    edge = logits.sort(-1, descending=True).values.gather(-1, n - 1)
    return torch.where(logits >= edge, logits, torch.full_like(logits, NEG_INF))


def top_p_loop(logits, p):  # row by row, in Python
    out = torch.full_like(logits, NEG_INF)
    for b in range(logits.size(0)):
        probs = torch.softmax(logits[b], 0).tolist()
        order = sorted(range(len(probs)), key=lambda i: -probs[i])
        total = 0.0
        for i in order:
            out[b, i] = logits[b, i]
            total += probs[i]
            if total >= p:
                break
    return out


def top_p_ranks(logits, p):  # rank of each token, keep the first n ranks; values scattered back
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    masked_sorted = sorted_logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)
    return torch.empty_like(logits).scatter(-1, order, masked_sorted)


def top_p_special_case(logits, p):
    if p >= 1:
        return logits.clone()
    return top_p_mass_before(logits, p)


@pytest.mark.parametrize(
    "fn",
    [top_p_mass_before, top_p_hugging_face, top_p_threshold, top_p_loop, top_p_ranks, top_p_special_case],
)
def test_top_p_correct_variants_pass(fn, capsys):
    check_top_p_filter(fn)
    assert "passed" in capsys.readouterr().out


def top_p_drops_crossing(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    drop = F.softmax(sorted_logits, dim=-1).cumsum(-1) > p
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_drops_crossing_top_kept(logits, p):  # the top token protected, the crossing one still dropped
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    drop = F.softmax(sorted_logits, dim=-1).cumsum(-1) > p
    drop[:, 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_drops_crossing_ge(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    drop = F.softmax(sorted_logits, dim=-1).cumsum(-1) >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_keeps_extra(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(-1) - probs
    drop = torch.cat([torch.zeros_like(before[:, :1]), before[:, :-1]], -1) >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_unsorted(logits, p):
    probs = F.softmax(logits, dim=-1)
    return logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)


def top_p_ascending(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1)
    probs = F.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_logit_mass(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    finite = sorted_logits.masked_fill(~torch.isfinite(sorted_logits), 0.0)
    drop = finite.cumsum(-1) - finite >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_sorted_order(logits, p):
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    return sorted_logits.masked_fill(probs.cumsum(-1) - probs >= p, NEG_INF)


def top_p_gather(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop.gather(-1, order), NEG_INF)


def top_p_probabilities(logits, p):
    return F.softmax(top_p_mass_before(logits, p), dim=-1)


def top_p_zeros(logits, p):
    out = top_p_mass_before(logits, p)
    return out.masked_fill(torch.isinf(out) & torch.isfinite(logits), 0.0)


def top_p_unchanged(logits, p):
    return logits


def top_p_log_probs(logits, p):
    return F.log_softmax(top_p_mass_before(logits, p), dim=-1)


def top_p_in_place(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill_(drop.scatter(-1, order, drop), NEG_INF)


def top_p_tolerance(logits, p):  # "safe" against rounding, but drops the tail at p = 1
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= p - 1e-3
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def top_p_one_tie(logits, p):  # keeps the tokens above the edge and only the first one equal to it
    out = top_p_threshold(logits, p)
    edge = out.masked_fill(torch.isinf(out), math.inf).min(-1, keepdim=True).values
    at_edge = logits == edge
    first = at_edge & (at_edge.cumsum(-1) == 1)
    return out.masked_fill(at_edge & ~first, NEG_INF)


def top_p_returns_tuple(logits, p):
    return top_p_mass_before(logits, p), p


def top_p_no_return(logits, p):
    top_p_mass_before(logits, p)


def top_p_first_row(logits, p):
    return top_p_mass_before(logits[:1], p)


@pytest.mark.parametrize(
    "fn, diagnosis",
    [
        (top_p_drops_crossing, "crossing-dropped"),
        (top_p_drops_crossing_ge, "crossing-dropped"),
        (top_p_drops_crossing_top_kept, "crossing-dropped"),
        (top_p_keeps_extra, "keeps-extra"),
        (top_p_unsorted, "not-sorted"),
        (top_p_ascending, "ascending"),
        (top_p_logit_mass, "mass-on-logits"),
        (top_p_sorted_order, "sorted-order"),
        (top_p_gather, "unsort-gather"),
        (top_p_probabilities, "probabilities"),
        (top_p_zeros, "zeros-not-inf"),
        (top_p_unchanged, "nothing-dropped"),
        (top_p_log_probs, "values-changed"),
        (top_p_in_place, "in-place"),
        (top_p_tolerance, "p-one"),
        (top_p_one_tie, "ties"),
        (top_p_returns_tuple, "returned-tuple"),
        (top_p_no_return, "returned-none"),
        (top_p_first_row, "wrong-shape"),
    ],
)
def test_top_p_mistakes_are_diagnosed(fn, diagnosis):
    fails_with(check_top_p_filter, fn, diagnosis)


def test_top_p_failure_says_what_was_kept():
    text = str(fails_with(check_top_p_filter, top_p_drops_crossing, "crossing-dropped"))
    assert "crosses p" in text or "cross p" in text


# ---- 8.2 choose_next ----------------------------------------------------------------------------------


def _top_k(logits, k, fill=NEG_INF):
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[:, [-1]]
    return logits.masked_fill(logits < kth, fill)


def choose_reference(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None:
        logits = top_p_mass_before(logits, top_p)
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


def choose_inverse_cdf(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if not temperature:
        return torch.max(logits, dim=-1, keepdim=True).indices
    x = logits / temperature
    if top_k:
        values, indices = torch.topk(x, top_k, dim=-1)
        x = torch.full_like(x, NEG_INF).scatter(-1, indices, values)
    if top_p is not None:
        x = top_p_hugging_face(x, top_p)
    cdf = x.softmax(-1).cumsum(-1)
    u = torch.rand(x.size(0), 1, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).clamp(max=x.size(-1) - 1)


def choose_filters_first(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    # top-k before the temperature: the same set (dividing by T > 0 keeps the order)
    if temperature <= 0:
        return logits.argmax(-1).unsqueeze(-1)
    if top_k is not None:
        logits = _top_k(logits, top_k)
    logits = logits / temperature
    if top_p is not None and top_p < 1.0:
        logits = top_p_loop(logits, top_p)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)


@pytest.mark.parametrize("fn", [choose_reference, choose_inverse_cdf, choose_filters_first])
def test_sampling_correct_variants_pass(fn, capsys):
    check_sampling_strategies(fn)
    assert "passed" in capsys.readouterr().out


def make_choose(mistake):
    def choose(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        if temperature == 0 and mistake not in ("greedy-samples", "no-greedy"):
            return logits.argmax(dim=-1, keepdim=True)
        if temperature == 0 and mistake == "greedy-samples":
            temperature = 1.0
        if mistake == "in-place":
            logits /= temperature
        elif mistake == "temperature-multiplied":
            logits = logits * temperature
        elif mistake != "temperature-ignored":
            logits = logits / temperature
        if mistake == "topp-before-temperature" and top_p is not None:
            kept = torch.isfinite(top_p_mass_before(logits * temperature, top_p))
            logits = logits.masked_fill(~kept, NEG_INF)
            top_p = None
        if mistake == "filters-swapped" and top_p is not None:
            logits = top_p_mass_before(logits, top_p)
            top_p = None
        if top_k is not None and mistake != "topk-ignored":
            if mistake == "topk-off-by-one":
                kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]
                logits = logits.masked_fill(logits <= kth, NEG_INF)
            else:
                logits = _top_k(logits, top_k, 0.0 if mistake == "topk-zero" else NEG_INF)
        if top_p is not None and mistake != "topp-ignored":
            logits = (top_p_keeps_extra if mistake == "topp-wrong" else top_p_mass_before)(logits, top_p)
        probs = F.softmax(logits, dim=-1)
        if mistake == "softmax-twice":
            probs = F.softmax(probs, dim=-1)
        if mistake == "rows-mixed":
            probs = probs.flip(0)
        out = torch.multinomial(probs, 1, generator=None if mistake == "generator-ignored" else generator)
        if mistake == "wrong-shape":
            return out.squeeze(-1)
        if mistake == "wrong-dtype":
            return out.float()
        return out

    return choose


@pytest.mark.parametrize(
    "mistake, diagnosis",
    [
        ("greedy-samples", "greedy-not-argmax"),
        ("no-greedy", "greedy-divides-by-zero"),
        ("in-place", "in-place"),
        ("temperature-multiplied", "temperature-multiplied"),
        ("temperature-ignored", "temperature-ignored"),
        ("topp-before-temperature", "topp-before-temperature"),
        ("filters-swapped", "filters-swapped"),
        ("topk-ignored", "topk-ignored"),
        ("topk-off-by-one", "topk-off-by-one"),
        ("topk-zero", "topk-zero"),
        ("topp-ignored", "topp-ignored"),
        ("topp-wrong", "topp-wrong"),
        ("softmax-twice", "softmax-twice"),
        ("rows-mixed", "rows-mixed"),
        ("generator-ignored", "generator-ignored"),
        ("wrong-shape", "wrong-shape"),
        ("wrong-dtype", "wrong-dtype"),
    ],
)
def test_sampling_mistakes_are_diagnosed(mistake, diagnosis):
    fails_with(check_sampling_strategies, make_choose(mistake), diagnosis)


def test_sampling_distribution_failure_shows_frequencies():
    def uniform(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        if temperature == 0:
            return logits.argmax(-1, keepdim=True)
        return torch.multinomial(torch.ones_like(logits), 1, generator=generator)

    text = str(fails_with(check_sampling_strategies, uniform, "wrong-distribution"))
    assert "drawn share vs exact probability" in text
