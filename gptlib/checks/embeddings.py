"""Checks for lesson 01 (the embedding stem): a lookup as a one-hot product, the Embeddings module,
and the cosine-similarity matrix of the position table.

`check_token_position_embedding` finds the learner's token table (vocab_size, C)
and position table (block_size, C) or (1, block_size, C) by shape, whatever
their names, gives them random values, copies them into gptlib's Embeddings,
and compares the two. Before comparing it looks for the usual mistakes:
positions missing or not learned, not sliced to T, looked up by token id,
the batch size taken for T, dropout missing, in the wrong place, or on in eval mode.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gptlib.checks import codes as C
from gptlib.checks.engine import (
    Exercise,
    Mistake,
    find_mistake,
    first_line,
    fraction_close,
    max_diff,
    parameters,
    seed_learner,
    set_parameters,
    shapes_str,
    train,
)
from gptlib.checks.learner import Backward, Ref, backend
from gptlib.checks.probes import (
    deterministic,
    dropout_at_work,
    dropout_scaled,
    expect_callable,
    expect_tensor,
    gradients,
    untouched,
)
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings as _RefEmbeddings

__all__ = ["check_one_hot_embedding", "check_token_position_embedding", "check_position_similarity"]


# ==== one_hot_embedding =============================================================================

ONE_HOT = Exercise(
    "one_hot_embedding",
    [C.NOT_CALLABLE, C.NOT_FLOAT, C.NUM_CLASSES, C.TRANSPOSED, C.ELEMENTWISE, C.RETURNED_ONE_HOT, C.IN_PLACE, C.NO_GRAD,
     C.WRONG_VALUES, *C.TENSOR],
)  # fmt: skip


@ONE_HOT.check
def check_one_hot_embedding(fn: Ref) -> None:
    """Check one_hot_embedding(idx (B, T), weight (V, C)) -> (B, T, C) == weight[idx]."""
    ex = ONE_HOT
    expect_callable(ex, fn, "one_hot_embedding")
    V, C_ = 9, 5
    weight = torch.randn(V, C_, generator=torch.Generator().manual_seed(0))
    full = torch.tensor([[3, 8, 0, 2], [7, 1, 8, 5]])  # every call below has B=2, T=4
    low = torch.tensor([[3, 1, 0, 2], [5, 1, 4, 5]])  # max id 5 < V - 1
    for idx in (full, low):
        B, T = idx.shape
        what = f"one_hot_embedding(idx {tuple(idx.shape)} with ids up to {int(idx.max())}, weight {(V, C_)})"
        call, crash = ex.attempt_run(what, fn, idx, weight, backward=Backward(wrt=(1,)))
        if crash is not None:
            msg = crash.message
            if "dtype" in msg or "scalar type" in msg or "Long" in msg:
                raise ex.fail(
                    C.NOT_FLOAT, f"{what} failed ({first_line(crash)}): the one-hot tensor is not a float."
                )
            if "cannot be multiplied" in msg or "size mismatch" in msg or "must match" in msg:
                if idx is low:
                    raise ex.fail(
                        C.NUM_CLASSES,
                        f"{what} failed ({first_line(crash)}) although the same call with id {V - 1} present "
                        f"worked: the one-hot vectors have max(idx) + 1 = {int(idx.max()) + 1} columns, not {V}.",
                    )
                if "size of tensor a" in msg:
                    raise ex.fail(
                        C.ELEMENTWISE,
                        f"{what} failed ({first_line(crash)}): `*` multiplies elementwise, and a (B, T, V) "
                        "one-hot tensor cannot be multiplied elementwise by a (V, C) weight. The lookup is the "
                        "matrix product one_hot @ weight.",
                    )
                flipped = f"{C_}x{V}" in msg
                raise ex.fail(
                    C.TRANSPOSED,
                    f"{what} failed ({first_line(crash)}): the shapes do not line up"
                    + (
                        f": the second matrix is ({C_}, {V}), weight.T. weight is already (V, C) = {(V, C_)}: "
                        "one_hot @ weight, without a transpose."
                        if flipped
                        else "."
                    ),
                )
            raise ex.fail(C.CRASHED, f"{what} raised {first_line(crash)}.", crash, what)
        out = call.value
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, V):
            raise ex.fail(
                C.RETURNED_ONE_HOT, f"{what} returned shape {(B, T, V)}, the one-hot vectors themselves."
            )
        out = expect_tensor(ex, what, out, shape=(B, T, C_), dtype=torch.float32, shape_names="(B, T, C)")
        untouched(ex, what, call)
        want = weight[idx]  # (B, T, C)
        if not torch.allclose(out, want, atol=1e-6):
            raise ex.fail(
                C.WRONG_VALUES,
                f"{what}: only {fraction_close(out, want):.0%} of the values equal weight[idx] (largest difference "
                f"{max_diff(out, want):.3g}).",
            )
        if not call.grads.connected:
            raise ex.fail(C.NO_GRAD, f"{what}'s result does not depend on weight for autograd.")
        counts = torch.bincount(idx.flatten(), minlength=V).float()[:, None].expand(V, C_)
        grad = call.grads.inputs[1]
        if grad is None or not torch.allclose(grad, counts):
            raise ex.fail(C.NO_GRAD, f"{what}: the gradient does not reach weight's rows correctly.")
    ex.passed(
        "one_hot(idx) @ weight equals the lookup weight[idx] (shape (B, T, C)), and gradients reach weight."
    )


# ==== token_position_embedding ======================================================================

STEM = Exercise(
    "token_position_embedding",
    [C.NOT_A_CLASS, C.INSTANCE_NOT_CLASS, C.NOT_A_MODULE, C.NO_TOKEN_TABLE, C.POSITIONS_MISSING,
     C.POSITIONS_NOT_LEARNED, C.POSITIONS_NOT_ADDED, C.TOKENS_NOT_ADDED, C.SCALED, C.CONCATENATED,
     C.POSITIONS_MULTIPLIED,
     C.POSITIONS_NOT_SLICED, C.POSITIONS_BY_TOKEN_ID, C.POSITIONS_FROM_ONE, C.BATCH_DIMENSION, C.NO_DROPOUT, C.DROPOUT_IN_EVAL,
     C.DROPOUT_ON_TOKENS_ONLY, C.DROPOUT_ON_POSITIONS_ONLY, C.DROPOUT_RATE, C.DROPOUT_NOT_SCALED, C.WRONG_VALUES,
     C.NO_GRAD, C.IN_PLACE, *C.TENSOR],
)  # fmt: skip
_RATES = {"embd_pdrop": 0.5, "resid_pdrop": 0.25, "attn_pdrop": 0.125}  # each rate tells its field


def _find(
    params: dict[str, torch.Tensor], shapes: list[tuple[int, ...]], prefer: tuple[str, ...]
) -> str | None:
    names = [n for n, p in params.items() if tuple(p.shape) in shapes]
    for word in prefer:
        for n in names:
            if word in n.lower():
                return n
    return names[0] if names else None


def _stem_mistakes(idx: torch.Tensor, tok_rows: torch.Tensor, pos: torch.Tensor) -> list[Mistake]:
    """The usual wrong stems, as outputs computed from the learner's tables: ids (B, T), tables (V, C), (T, C)."""
    (B, T), C_ = idx.shape, pos.size(1)
    tok = tok_rows[idx]  # (B, T, C)
    return [
        Mistake(
            C.POSITIONS_NOT_ADDED, "equals the token rows alone: the positions are not added", {"v": tok}
        ),
        Mistake(
            C.TOKENS_NOT_ADDED,
            "equals the position rows alone: no token rows",
            {"v": pos[:T].expand(B, T, C_)},
        ),
        Mistake(
            C.POSITIONS_MULTIPLIED,
            "equals tok * pos: the token and position rows are multiplied instead of added",
            {"v": tok * pos[:T]},
        ),
        Mistake(C.SCALED, "equals tok * sqrt(C) + pos", {"v": tok * math.sqrt(C_) + pos[:T]}),
        Mistake(C.SCALED, "equals tok + pos * sqrt(C)", {"v": tok + pos[:T] * math.sqrt(C_)}),
        Mistake(
            C.POSITIONS_BY_TOKEN_ID,
            "equals tok + pos[idx % block_size]: the position rows are looked up by token id. The position of "
            "the token at t is t: rows 0, 1, ..., T-1 of the table (torch.arange(T))",
            {"v": tok + pos[idx % pos.size(0)]},
        ),
        Mistake(
            C.BATCH_DIMENSION,
            "equals tok + pos[b] for every token of row b: each row of the batch gets one position row, "
            "counted over the batch (torch.arange(B), idx.size(0)), instead of positions torch.arange(T), the "
            "same for every row",
            {"v": tok + pos[:B, None, :]},
        ),
    ]


@STEM.check
def check_token_position_embedding(cls: Ref) -> None:
    """Check an Embeddings(config) module: idx (B, T) -> tok_emb(idx) + pos rows[:T], then dropout."""
    ex = STEM
    V, Tmax, C_ = 13, 8, 32
    cfg = GPTConfig(vocab_size=V, block_size=Tmax, n_layer=1, n_head=4, n_embd=C_, **_RATES)
    name = cls.info.name or "Embeddings"
    mod = ex.build(cls, cfg)

    # find the two tables by shape, whatever they are called
    params = parameters(mod)
    tok_name = _find(params, [(V, C_)], ("tok", "wte", "token"))
    expected = f"a token table ({V}, {C_}) = (vocab_size, n_embd) and a position table ({Tmax}, {C_}) or (1, {Tmax}, {C_})"
    if tok_name is None:
        raise ex.fail(
            C.NO_TOKEN_TABLE,
            f"{name}(config) has no ({V}, {C_}) token table. Expected {expected}; found parameters: {shapes_str(params)}.",
        )
    pos_shapes = [(Tmax, C_), (1, Tmax, C_)]
    pos_name = _find({n: p for n, p in params.items() if n != tok_name}, pos_shapes, ("pos", "wpe"))
    if pos_name is None:
        buffers = backend().buffers(mod)
        buf = _find(buffers, pos_shapes, ("pos",))
        if buf is not None:
            raise ex.fail(
                C.POSITIONS_NOT_LEARNED,
                f"the position table `{buf}` {tuple(buffers[buf].shape)} is a buffer, so it never learns.",
            )
        raise ex.fail(
            C.POSITIONS_MISSING,
            f"{name}(config) has no learned position table. Expected {expected}; found parameters: {shapes_str(params)}.",
        )
    g = torch.Generator().manual_seed(1)
    tables = {  # random values, so that a missing or misplaced term shows in the output
        tok_name: torch.randn(params[tok_name].shape, generator=g),
        pos_name: torch.randn(params[pos_name].shape, generator=g),
    }
    set_parameters(mod, tables)
    ref = _RefEmbeddings(cfg)
    with torch.no_grad():
        ref.tok_emb.weight.copy_(tables[tok_name])
        ref.pos_emb.copy_(tables[pos_name].reshape(1, Tmax, C_))
    tok_rows, pos_rows = tables[tok_name], tables[pos_name].reshape(Tmax, C_)
    changed: list[tuple] = []  # what each call changed in place

    B = 3
    idx = torch.randint(V, (B, Tmax), generator=g)
    idx[0, :2] = torch.tensor([V - 1, Tmax + 1])  # ids above block_size - 1
    train(ex, mod, False)
    what = f"{name}.forward(idx of shape {(B, Tmax)}) in eval mode"
    out, crash = _forward(mod, idx, what, changed)
    if crash is not None:
        short = idx[:, : Tmax - 1]
        out_s, _ = _forward(mod, short, what, changed)
        if isinstance(out_s, torch.Tensor) and out_s.shape == (B, Tmax - 1, C_):
            if torch.allclose(out_s, tok_rows[short] + pos_rows[1:Tmax], atol=1e-5):
                raise ex.fail(
                    C.POSITIONS_FROM_ONE,
                    f"{what} raised {first_line(crash)}, and for T = {Tmax - 1} the output is tok + the position "
                    f"rows 1..T: the positions are off by one, they start at 1 (torch.arange(1, T + 1) or "
                    f"pos_emb[:, 1:T + 1]) and skip position 0, so at T = block_size = {Tmax} they run past the "
                    "last row. Positions are 0, 1, ..., T-1: torch.arange(T).",
                )
        if crash.isa("IndexError") and "out of range" in crash.message:
            raise ex.fail(
                C.POSITIONS_BY_TOKEN_ID,
                f"{what} raised {first_line(crash)}: a table was looked up with an index beyond its rows. Token "
                f"ids go up to {V - 1} but the position table has only {Tmax} rows: are the positions looked up "
                "with idx?",
            )
        _, crash2 = _forward(mod, torch.randint(V, (Tmax, Tmax), generator=g), what, changed)
        if crash2 is None:
            raise ex.fail(
                C.BATCH_DIMENSION,
                f"{what} raised {first_line(crash)}, but works when B == T: the positions follow the batch size "
                "instead of the sequence length.",
            )
        raise ex.fail(C.CRASHED, f"{what} raised {first_line(crash)}.", crash, what)
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, Tmax, 2 * C_):
        raise ex.fail(C.CONCATENATED, f"{what} returned shape {(B, Tmax, 2 * C_)}: twice n_embd channels.")
    out = expect_tensor(ex, what, out, shape=(B, Tmax, C_), dtype=torch.float32, shape_names="(B, T, C)")

    # eval mode must be deterministic (no dropout)
    again, _ = _forward(mod, idx, what, changed)
    deterministic(ex, what.removesuffix(" in eval mode"), out, again, "idx")

    want = ref.eval()(idx)
    if not torch.allclose(out, want, atol=1e-5):
        mistakes = _stem_mistakes(idx, tok_rows, pos_rows)
        found = find_mistake(mistakes, lambda v: torch.allclose(out, v, atol=1e-5), False)
        if found:
            raise ex.fail(found[0].code, f"{what}: the output {found[0].says}.")
        raise ex.fail(
            C.WRONG_VALUES,
            f"{what}: {fraction_close(out, want):.0%} of the values equal tok_emb(idx) + pos_emb[:T] "
            f"(largest difference {max_diff(out, want):.3g}).",
        )

    # shorter sequences use the first T position rows
    for T in (5, 1):
        short = idx[:, :T].clone()
        what_t = f"{name}.forward(idx of shape {(B, T)}), T < block_size={Tmax}"
        out_t, crash = _forward(mod, short, what_t, changed)
        if crash is not None:
            raise ex.fail(
                C.POSITIONS_NOT_SLICED,
                f"{what_t} raised {first_line(crash)}, while T = block_size works: all {Tmax} position rows are "
                f"added to a sequence of {T}.",
            )
        if isinstance(out_t, torch.Tensor) and out_t.dim() == 3 and out_t.shape[1] != T:
            raise ex.fail(
                C.POSITIONS_NOT_SLICED,
                f"{what_t} returned shape {tuple(out_t.shape)}; expected {(B, T, C_)}.",
            )
        out_t = expect_tensor(
            ex, what_t, out_t, shape=(B, T, C_), dtype=torch.float32, shape_names="(B, T, C)"
        )
        if not torch.allclose(out_t, ref(short), atol=1e-5):
            raise ex.fail(
                C.POSITIONS_NOT_SLICED,
                f"{what_t}: the output is not tok_emb(idx) + the FIRST {T} position rows.",
            )
    if any(changed):
        raise ex.fail(C.IN_PLACE, f"{name}.forward changed idx in place.")

    # dropout, in train mode: rate embd_pdrop, applied to the sum
    train(ex, mod, True)
    seed_learner(2)
    big = torch.randint(V, (16, Tmax), generator=g)
    what_tr = f"{name}.forward(idx of shape {tuple(big.shape)}) in train mode"
    out_tr = expect_tensor(ex, what_tr, ex.call(what_tr, mod, big), shape=(16, Tmax, C_))
    out_ev = ref.eval()(big)
    dropout_at_work(ex, what_tr, out_tr, out_ev, "embd_pdrop", _RATES)
    for code, other, words in (
        (C.DROPOUT_ON_TOKENS_ONLY, pos_rows, "the token rows are dropped before the positions are added"),
        (
            C.DROPOUT_ON_POSITIONS_ONLY,
            tok_rows[big],
            "the position rows are dropped before the tokens are added",
        ),
    ):
        same = ((out_tr - other).abs() < 1e-6).float().mean().item()
        if same > 0.3:
            raise ex.fail(code, f"{what_tr}: {same:.0%} of the outputs equal one table alone: {words}.")
    unscaled = f" = {1 - _RATES['embd_pdrop']}; they are not."
    dropout_scaled(ex, what_tr, out_tr, out_ev, "embd_pdrop", _RATES, unscaled)

    # gradients reach both tables
    train(ex, mod, False)
    gradients(ex, what, mod, idx, backward=Backward(), names=[tok_name, pos_name])
    ex.passed(
        f"tables `{tok_name}` {tuple(params[tok_name].shape)} and `{pos_name}` {tuple(params[pos_name].shape)}; "
        "output equals gptlib's Embeddings for T = block_size, 5 and 1; dropout at embd_pdrop in train mode only; "
        "gradients reach both tables."
    )


def _forward(mod: Ref, idx: torch.Tensor, what: str, changed: list) -> tuple[Any, Any]:
    """The stem on idx: (output, None) or (None, the crash); what it changed in place goes into `changed`."""
    call, crash = STEM.attempt_run(what, mod, idx)
    if call is not None:
        changed.append(call.changed)
    return (call.value if call else None), crash


# ==== position_similarity ===========================================================================

SIMILARITY = Exercise(
    "position_similarity",
    [
        C.NOT_CALLABLE,
        C.NOT_NORMALISED,
        C.WRONG_DIM,
        C.WRONG_ORIENTATION,
        C.ONE_SIDE_NORMALISED,
        C.NORM_SQUARED,
        C.DISTANCE,
        C.IN_PLACE,
        C.WRONG_VALUES,
        *C.TENSOR,
    ],
)


@SIMILARITY.check
def check_position_similarity(fn: Ref) -> None:
    """Check position_similarity(pos (T, C)) -> (T, T) cosine similarities of the rows."""
    ex = SIMILARITY
    expect_callable(ex, fn, "position_similarity")
    T, C_ = 6, 4
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(T, C_, generator=g) * torch.linspace(0.5, 3.0, T)[:, None]  # rows of different lengths
    what = f"position_similarity(pos of shape {(T, C_)})"
    call = ex.run(what, fn, pos)
    out = untouched(ex, what, call, "pos")
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (C_, C_):
        raise ex.fail(
            C.WRONG_ORIENTATION,
            f"{what} returned shape {(C_, C_)} = (C, C), which compares the channels (unit.T @ unit); expected "
            f"{(T, T)}: the positions are the rows, so compare the rows, unit @ unit.T.",
        )
    out = expect_tensor(ex, what, out, shape=(T, T), shape_names="(T, T)").double()
    p = pos.double()
    unit = p / p.norm(dim=-1, keepdim=True)
    want = unit @ unit.T
    if torch.allclose(out, want, atol=1e-5):
        ex.passed(
            "(T, T) cosine similarities of the rows: 1 on the diagonal, symmetric, matches F.cosine_similarity."
        )
        return
    col = p / p.norm(dim=0, keepdim=True)
    squared = p / p.norm(dim=-1, keepdim=True) ** 2
    for code, value, words in (
        (C.NOT_NORMALISED, p @ p.T, "the raw dot products pos @ pos.T"),
        (C.WRONG_DIM, col @ col.T, "the product of pos normalised along the columns (dim=0)"),
        (
            C.ONE_SIDE_NORMALISED,
            unit @ p.T,
            "unit @ pos.T: only one side of each pair is divided by its length; both rows must be",
        ),
        (
            C.ONE_SIDE_NORMALISED,
            p @ unit.T,
            "pos @ unit.T: only one side of each pair is divided by its length; both rows must be",
        ),
        (
            C.NORM_SQUARED,
            squared @ squared.T,
            "rows divided by their squared length (the sum of squares) instead of the length, its square root",
        ),
        (
            C.DISTANCE,
            torch.cdist(p, p),
            "the distances between the rows (torch.cdist), not their cosine similarities, unit @ unit.T",
        ),
    ):
        if torch.allclose(out, value, atol=1e-5):
            raise ex.fail(code, f"{what} returned {words}; the diagonal should be all 1.")
    raise ex.fail(
        C.WRONG_VALUES,
        f"{what}: {fraction_close(out, want):.0%} of the entries are the cosine similarities (largest "
        f"difference {max_diff(out, want):.3g}); diagonal found {out.diagonal()[:3].tolist()}...",
    )
