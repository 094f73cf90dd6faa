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

from gptlib.checks.base import (
    CheckFailure,
    attempt,
    build_module,
    call,
    dropout_rate_failure,
    expect_tensor,
    first_line,
    fraction_close,
    max_diff,
    one_thread,
    passed,
)
from gptlib.checks.hints import register_hints
from gptlib.config import GPTConfig
from gptlib.embeddings import Embeddings as _RefEmbeddings

__all__ = ["check_one_hot_embedding", "check_token_position_embedding", "check_position_similarity"]


# --- one_hot_embedding ------------------------------------------------------------------------

_ONE = "one_hot_embedding"

register_hints(
    _ONE,
    levels=[
        "A one-hot vector of id i has a 1 at position i and 0 elsewhere; multiplying it by the table W picks "
        "row i of W. Do that for every id at once.",
        "`F.one_hot(idx, num_classes)` gives (B, T, V) integers. Give it num_classes=V (the number of rows of "
        "W, so ids that happen not to occur still get their column), make it a float, and matrix-multiply by "
        "W (V, C): (B, T, V) @ (V, C) -> (B, T, C).",
        "V = weight.shape[0]\n"
        "one_hot = F.one_hot(idx, num_classes=V).float()  # (B, T, V)\n"
        "return one_hot @ weight  # (B, T, C)",
    ],
    diagnoses={
        "not-float": "F.one_hot gives integers (long); convert with .float() (or .to(weight.dtype)) before @.",
        "num-classes": "without num_classes, F.one_hot makes only max(idx) + 1 columns; pass "
        "num_classes=weight.shape[0].",
        "transposed": "weight is (V, C): one_hot (B, T, V) @ weight (V, C), no transpose.",
        "returned-one-hot": "you returned the one-hot vectors: multiply them by the weight to pick the rows.",
        "wrong-values": "row i of the result must be row idx[i] of weight: one_hot(idx) @ weight.",
        "no-grad": "build the result from weight with torch operations (no .detach(), .data, numpy or "
        "torch.no_grad()) so gradients reach the table.",
        "modifies-input": "do not change idx or weight in place.",
    },
)


def check_one_hot_embedding(fn: Any) -> None:
    """Check one_hot_embedding(idx (B, T), weight (V, C)) -> (B, T, C) == weight[idx]."""
    with one_thread():
        _check_one_hot_embedding(fn)


def _check_one_hot_embedding(fn: Any) -> None:
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(
            _ONE, "not-a-function", f"expected the function one_hot_embedding, got {fn!r:.80}."
        )
    V, C = 9, 5
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(V, C, generator=g)
    full = torch.tensor([[3, 8, 0, 2], [7, 1, 8, 5]])  # every call below has B=2, T=4
    low = torch.tensor([[3, 1, 0, 2], [5, 1, 4, 5]])  # max id 5 < V - 1
    for idx in (full, low):
        B, T = idx.shape
        what = f"one_hot_embedding(idx {tuple(idx.shape)} with ids up to {int(idx.max())}, weight {(V, C)})"
        w = weight.clone().requires_grad_(True)
        i = idx.clone()
        out, err = attempt(_ONE, what, fn, i, w)
        if err is not None:
            msg = str(err)
            if "dtype" in msg or "scalar type" in msg or "Long" in msg:
                raise CheckFailure(
                    _ONE,
                    "not-float",
                    f"{what} failed ({first_line(err)}): the one-hot tensor is not a float.",
                ) from None
            if "cannot be multiplied" in msg or "size mismatch" in msg or "must match" in msg:
                if idx is low:
                    raise CheckFailure(
                        _ONE,
                        "num-classes",
                        f"{what} failed ({first_line(err)}) although the same call with id {V - 1} present "
                        f"worked: the one-hot vectors have max(idx) + 1 = {int(idx.max()) + 1} columns, not {V}.",
                    ) from None
                raise CheckFailure(
                    _ONE, "transposed", f"{what} failed ({first_line(err)}): the shapes do not line up."
                ) from None
            raise CheckFailure(_ONE, "crashed", f"{what} raised {first_line(err)}.") from None
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, T, V):
            raise CheckFailure(
                _ONE,
                "returned-one-hot",
                f"{what} returned shape {(B, T, V)}, the one-hot vectors themselves.",
            )
        out = expect_tensor(_ONE, what, out, shape=(B, T, C), dtype=torch.float32, shape_names="(B, T, C)")
        if not torch.equal(i, idx) or not torch.equal(w.detach(), weight):
            raise CheckFailure(_ONE, "modifies-input", f"{what} changed its input in place.")
        want = weight[idx]  # (B, T, C)
        if not torch.allclose(out.detach(), want, atol=1e-6):
            share = fraction_close(out, want)
            raise CheckFailure(
                _ONE,
                "wrong-values",
                f"{what}: only {share:.0%} of the values equal weight[idx] (largest difference "
                f"{max_diff(out, want):.3g}).",
            )
        if not out.requires_grad:
            raise CheckFailure(_ONE, "no-grad", f"{what}'s result does not depend on weight for autograd.")
        out.sum().backward()
        counts = torch.bincount(idx.flatten(), minlength=V).float()[:, None].expand(V, C)
        if w.grad is None or not torch.allclose(w.grad, counts):
            raise CheckFailure(
                _ONE, "no-grad", f"{what}: the gradient does not reach weight's rows correctly."
            )
    passed(
        _ONE,
        "one_hot(idx) @ weight equals the lookup weight[idx] (shape (B, T, C)), and gradients reach weight.",
    )


# --- token_position_embedding -----------------------------------------------------------------

_EMB = "token_position_embedding"
_P_EMBD, _P_RESID, _P_ATTN = 0.5, 0.25, 0.125

register_hints(
    _EMB,
    levels=[
        "Two learned tables: one row per token id (vocab_size, C) and one row per position (block_size, C). "
        "The output is the token's row plus its position's row, then dropout.",
        "In __init__: `nn.Embedding(config.vocab_size, config.n_embd)` for tokens; for positions either "
        "`nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))` or `nn.Embedding(config.block_size, "
        "config.n_embd)`; `nn.Dropout(config.embd_pdrop)`. In forward, T = idx.size(1), and only the first T "
        "positions are used: the (1, T, C) position rows broadcast over the batch.",
        "__init__:\n"
        "    self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)\n"
        "    self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))\n"
        "    self.drop = nn.Dropout(config.embd_pdrop)\n"
        "forward(idx):\n"
        "    B, T = idx.shape\n"
        "    tok = self.tok_emb(idx)           # (B, T, C)\n"
        "    pos = self.pos_emb[:, :T, :]      # (1, T, C)\n"
        "    return self.drop(tok + pos)       # (B, T, C)",
    ],
    diagnoses={
        "no-token-table": "the token table is `nn.Embedding(config.vocab_size, config.n_embd)`: one row per token id.",
        "positions-missing": "add a learned position table with one row per position: "
        "`nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))` or "
        "`nn.Embedding(config.block_size, config.n_embd)`.",
        "positions-not-learned": "a buffer (register_buffer) or a fixed sinusoid does not learn; GPT's positions "
        "are parameters: wrap the table in nn.Parameter, or use nn.Embedding.",
        "positions-not-added": "forward must add the position rows to the token rows: `tok + pos`.",
        "tokens-not-added": "forward must start from the token rows, `self.tok_emb(idx)`, and add the positions.",
        "scaled": "GPT adds the two tables as they are; the sqrt(C) scaling belongs to the original "
        "Transformer's tied embeddings, not to GPT.",
        "concatenated": "add the tables (tok + pos), do not concatenate them: the output keeps C channels.",
        "positions-not-sliced": "use only the first T rows of the position table, T = idx.size(1): "
        "`self.pos_emb[:, :T, :]` or `self.pos_emb(torch.arange(T))`.",
        "positions-by-token-id": "positions are 0, 1, ..., T-1 (`torch.arange(T)`), not the token ids in idx.",
        "batch-dimension": "idx is (B, T): T is idx.size(1) (or idx.shape[1]); idx.size(0) is the batch size.",
        "dropout-missing": "finish with dropout: `self.drop = nn.Dropout(config.embd_pdrop)` in __init__, "
        "`return self.drop(tok + pos)` in forward.",
        "dropout-in-eval": "nn.Dropout switches itself off in eval mode; F.dropout(x, p) does not unless you "
        "pass training=self.training. Use the nn.Dropout module.",
        "dropout-on-tokens-only": "apply dropout to the sum, after adding the positions: `self.drop(tok + pos)`.",
        "dropout-on-positions-only": "apply dropout to the sum, after adding the positions: `self.drop(tok + pos)`.",
        "wrong-dropout-rate": "the stem's dropout rate is config.embd_pdrop.",
        "dropout-not-scaled": "use nn.Dropout: in train mode it zeroes a share p of the values and divides the "
        "rest by 1 - p, so the expected value stays the same.",
        "wrong-values": "the output is tok_emb(idx) + the first T position rows; check which rows you add.",
        "no-grad": "use the tables through torch operations (no .detach(), .data or torch.no_grad()) so both "
        "learn.",
        "modifies-input": "do not change idx in place.",
    },
)


def _find(
    params: dict[str, torch.Tensor], shapes: list[tuple[int, ...]], prefer: tuple[str, ...]
) -> str | None:
    names = [n for n, p in params.items() if tuple(p.shape) in shapes]
    if not names:
        return None
    for word in prefer:
        for n in names:
            if word in n.lower():
                return n
    return names[0]


def _shapes(params: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()) or "none"


def check_token_position_embedding(cls: Any) -> None:
    """Check an Embeddings(config) module: idx (B, T) -> tok_emb(idx) + pos rows[:T], then dropout."""
    with one_thread(), torch.random.fork_rng(devices=[]):
        _check_token_position_embedding(cls)


def _check_token_position_embedding(cls: Any) -> None:
    V, Tmax, C = 13, 8, 32
    cfg = GPTConfig(
        vocab_size=V,
        block_size=Tmax,
        n_layer=1,
        n_head=4,
        n_embd=C,
        embd_pdrop=_P_EMBD,
        resid_pdrop=_P_RESID,
        attn_pdrop=_P_ATTN,
    )
    name = getattr(cls, "__name__", "Embeddings")
    torch.manual_seed(0)
    mod = build_module(_EMB, cls, cfg)

    # find the two tables by shape, whatever they are called
    params = dict(mod.named_parameters())
    tok_name = _find(params, [(V, C)], ("tok", "wte", "token"))
    expected = f"a token table ({V}, {C}) = (vocab_size, n_embd) and a position table ({Tmax}, {C}) or (1, {Tmax}, {C})"
    if tok_name is None:
        raise CheckFailure(
            _EMB,
            "no-token-table",
            f"{name}(config) has no ({V}, {C}) token table. Expected {expected}; found parameters: {_shapes(params)}.",
        )
    pos_shapes = [(Tmax, C), (1, Tmax, C)]
    pos_name = _find({n: p for n, p in params.items() if n != tok_name}, pos_shapes, ("pos", "wpe"))
    if pos_name is None:
        buffers = dict(mod.named_buffers())
        buf = _find(buffers, pos_shapes, ("pos",))
        if buf is not None:
            raise CheckFailure(
                _EMB,
                "positions-not-learned",
                f"the position table `{buf}` {tuple(buffers[buf].shape)} is a buffer, so it never learns.",
            )
        raise CheckFailure(
            _EMB,
            "positions-missing",
            f"{name}(config) has no learned position table. Expected {expected}; found parameters: "
            f"{_shapes(params)}.",
        )
    tok_p, pos_p = params[tok_name], params[pos_name]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random values, so that a missing or misplaced term shows in the output
        tok_p.copy_(torch.randn(tok_p.shape, generator=g))
        pos_p.copy_(torch.randn(pos_p.shape, generator=g))
    ref = _RefEmbeddings(cfg)
    with torch.no_grad():
        ref.tok_emb.weight.copy_(tok_p)
        ref.pos_emb.copy_(pos_p.reshape(1, Tmax, C))
    pos_rows = pos_p.detach().reshape(Tmax, C)
    tok_rows = tok_p.detach()

    def forward(idx: torch.Tensor, what: str) -> tuple[Any, Exception | None]:
        return attempt(_EMB, what, mod, idx)

    B = 3
    idx = torch.randint(V, (B, Tmax), generator=g)
    idx[0, :2] = torch.tensor([V - 1, Tmax + 1])  # ids above block_size - 1
    mod.eval()
    what = f"{name}.forward(idx of shape {(B, Tmax)}) in eval mode"
    out, err = forward(idx.clone(), what)
    if err is not None:
        if isinstance(err, IndexError) and "out of range" in str(err):
            raise CheckFailure(
                _EMB,
                "positions-by-token-id",
                f"{what} raised {first_line(err)}: a table was looked up with an index beyond its rows. Token "
                f"ids go up to {V - 1} but the position table has only {Tmax} rows: are the positions looked up "
                "with idx?",
            ) from None
        _, err2 = forward(torch.randint(V, (Tmax, Tmax), generator=g), what)
        if err2 is None:
            raise CheckFailure(
                _EMB,
                "batch-dimension",
                f"{what} raised {first_line(err)}, but works when B == T: the positions follow the batch size "
                "instead of the sequence length.",
            ) from None
        raise CheckFailure(_EMB, "crashed", f"{what} raised {first_line(err)}.") from None
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, Tmax, 2 * C):
        raise CheckFailure(
            _EMB, "concatenated", f"{what} returned shape {(B, Tmax, 2 * C)}: twice n_embd channels."
        )
    out = expect_tensor(_EMB, what, out, shape=(B, Tmax, C), dtype=torch.float32, shape_names="(B, T, C)")

    # eval mode must be deterministic (no dropout)
    again, _ = forward(idx.clone(), what)
    if isinstance(again, torch.Tensor) and not torch.equal(again, out):
        raise CheckFailure(
            _EMB,
            "dropout-in-eval",
            f"two calls of {what} gave different outputs: dropout is still on in eval mode.",
        )

    want = ref.eval()(idx)
    if not torch.allclose(out, want, atol=1e-5):
        tok = tok_rows[idx]  # (B, T, C)
        candidates = [
            ("positions-not-added", tok, "equals the token rows alone: the positions are not added"),
            (
                "tokens-not-added",
                pos_rows.expand(B, Tmax, C),
                "equals the position rows alone: no token rows",
            ),
            ("scaled", tok * math.sqrt(C) + pos_rows, "equals tok * sqrt(C) + pos"),
            ("scaled", tok + pos_rows * math.sqrt(C), "equals tok + pos * sqrt(C)"),
        ]
        for code, value, words in candidates:
            if torch.allclose(out, value, atol=1e-5):
                raise CheckFailure(_EMB, code, f"{what}: the output {words}.")
        raise CheckFailure(
            _EMB,
            "wrong-values",
            f"{what}: {fraction_close(out, want):.0%} of the values equal tok_emb(idx) + pos_emb[:T] "
            f"(largest difference {max_diff(out, want):.3g}).",
        )

    # shorter sequences use the first T position rows
    for T in (5, 1):
        short = idx[:, :T].clone()
        what_t = f"{name}.forward(idx of shape {(B, T)}), T < block_size={Tmax}"
        out_t, err = forward(short, what_t)
        if err is not None:
            raise CheckFailure(
                _EMB,
                "positions-not-sliced",
                f"{what_t} raised {first_line(err)}, while T = block_size works: all {Tmax} position rows are "
                f"added to a sequence of {T}.",
            ) from None
        if isinstance(out_t, torch.Tensor) and out_t.dim() == 3 and out_t.shape[1] != T:
            raise CheckFailure(
                _EMB,
                "positions-not-sliced",
                f"{what_t} returned shape {tuple(out_t.shape)}; expected {(B, T, C)}.",
            )
        out_t = expect_tensor(
            _EMB, what_t, out_t, shape=(B, T, C), dtype=torch.float32, shape_names="(B, T, C)"
        )
        if not torch.allclose(out_t, ref(short), atol=1e-5):
            raise CheckFailure(
                _EMB,
                "positions-not-sliced",
                f"{what_t}: the output is not tok_emb(idx) + the FIRST {T} position rows.",
            )
    if not torch.equal(idx[0, :2], torch.tensor([V - 1, Tmax + 1])):
        raise CheckFailure(_EMB, "modifies-input", f"{name}.forward changed idx in place.")

    # dropout, in train mode: rate embd_pdrop, applied to the sum
    mod.train()
    torch.manual_seed(2)
    big = torch.randint(V, (16, Tmax), generator=g)
    what_tr = f"{name}.forward(idx of shape {tuple(big.shape)}) in train mode"
    out_tr = expect_tensor(_EMB, what_tr, call(_EMB, what_tr, mod, big), shape=(16, Tmax, C))
    out_ev = ref.eval()(big)
    if torch.allclose(out_tr, out_ev, atol=1e-6):
        raise CheckFailure(
            _EMB,
            "dropout-missing",
            f"{what_tr} equals the eval-mode output: no dropout (embd_pdrop={_P_EMBD}).",
        )
    tok_b = tok_rows[big]
    for code, other, words in (
        ("dropout-on-tokens-only", pos_rows, "the token rows are dropped before the positions are added"),
        ("dropout-on-positions-only", tok_b, "the position rows are dropped before the tokens are added"),
    ):
        same = (out_tr - other).abs() < 1e-6
        if same.float().mean().item() > 0.3:
            raise CheckFailure(
                _EMB,
                code,
                f"{what_tr}: {same.float().mean().item():.0%} of the outputs equal one table alone: {words}.",
            )
    zero = out_tr == 0
    rate = zero.float().mean().item()
    others = {_P_RESID: "resid_pdrop", _P_ATTN: "attn_pdrop"}
    failure = dropout_rate_failure(_EMB, what_tr, rate, _P_EMBD, "embd_pdrop", others)
    if failure:
        raise failure
    if not torch.allclose(out_tr[~zero], out_ev[~zero] / (1 - _P_EMBD), atol=1e-5):
        raise CheckFailure(
            _EMB,
            "dropout-not-scaled",
            f"{what_tr}: the values that survive dropout should be the eval-mode values divided by "
            f"1 - p = {1 - _P_EMBD}; they are not.",
        )

    # gradients reach both tables
    mod.zero_grad(set_to_none=True)
    mod.eval()
    out, _ = forward(idx, what)
    out.sum().backward()
    missing = [n for n in (tok_name, pos_name) if params[n].grad is None or params[n].grad.abs().sum() == 0]
    if missing:
        raise CheckFailure(_EMB, "no-grad", f"after backward, {missing} got no gradient.")
    mod.zero_grad(set_to_none=True)
    passed(
        _EMB,
        f"tables `{tok_name}` {tuple(tok_p.shape)} and `{pos_name}` {tuple(pos_p.shape)}; output equals "
        "gptlib's Embeddings for T = block_size, 5 and 1; dropout at embd_pdrop in train mode only; "
        "gradients reach both tables.",
    )


# --- position_similarity ----------------------------------------------------------------------

_SIM = "position_similarity"

register_hints(
    _SIM,
    levels=[
        "The cosine similarity of two vectors is their dot product divided by both lengths. Do it for every "
        "pair of rows at once: normalise each row to length 1, then one matrix product gives all dot products.",
        "Each ROW of pos (one position, C numbers) gets length 1: divide by `pos.norm(dim=-1, keepdim=True)` "
        "(or use F.normalize(pos, dim=-1)). Then (T, C) @ (C, T) -> (T, T).",
        "unit = pos / pos.norm(dim=-1, keepdim=True)  # (T, C), every row of length 1\n"
        "return unit @ unit.T  # (T, T)",
    ],
    diagnoses={
        "not-normalized": "divide each row by its length before the product; raw dot products grow with "
        "the vectors' sizes.",
        "wrong-dim": "normalise the rows (dim=-1, over the C channels), not the columns.",
        "wrong-orientation": "pos is (T, C): unit @ unit.T is (T, T); unit.T @ unit would be (C, C).",
        "modifies-input": "do not normalise pos in place (no /= or .div_ on it): make a new tensor.",
        "wrong-values": "entry (i, j) is the cosine of the angle between rows i and j: 1 on the diagonal.",
    },
)


def check_position_similarity(fn: Any) -> None:
    """Check position_similarity(pos (T, C)) -> (T, T) cosine similarities of the rows."""
    with one_thread():
        _check_position_similarity(fn)


def _check_position_similarity(fn: Any) -> None:
    if isinstance(fn, type) or not callable(fn):
        raise CheckFailure(
            _SIM, "not-a-function", f"expected the function position_similarity, got {fn!r:.80}."
        )
    T, C = 6, 4
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(T, C, generator=g) * torch.linspace(0.5, 3.0, T)[:, None]  # rows of different lengths
    arg = pos.clone()
    what = f"position_similarity(pos of shape {(T, C)})"
    out = call(_SIM, what, fn, arg)
    if not torch.equal(arg, pos):
        raise CheckFailure(_SIM, "modifies-input", f"{what} changed pos in place.")
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (C, C):
        raise CheckFailure(_SIM, "wrong-orientation", f"{what} returned shape {(C, C)}; expected {(T, T)}.")
    out = expect_tensor(_SIM, what, out, shape=(T, T), shape_names="(T, T)").double()
    p = pos.double()
    unit = p / p.norm(dim=-1, keepdim=True)
    want = unit @ unit.T
    if torch.allclose(out, want, atol=1e-5):
        passed(
            _SIM,
            "(T, T) cosine similarities of the rows: 1 on the diagonal, symmetric, matches F.cosine_similarity.",
        )
        return
    col = p / p.norm(dim=0, keepdim=True)
    for code, value, words in (
        ("not-normalized", p @ p.T, "the raw dot products pos @ pos.T"),
        ("wrong-dim", col @ col.T, "the product of pos normalised along the columns (dim=0)"),
    ):
        if torch.allclose(out, value, atol=1e-5):
            raise CheckFailure(_SIM, code, f"{what} returned {words}; the diagonal should be all 1.")
    raise CheckFailure(
        _SIM,
        "wrong-values",
        f"{what}: {fraction_close(out, want):.0%} of the entries are the cosine similarities (largest "
        f"difference {max_diff(out, want):.3g}); diagonal found {out.diagonal()[:3].tolist()}...",
    )
