"""Hints for lesson 02's exercises (causal_average, masked_softmax, head, attention).

Each exercise gets a nudge, more detail and pseudocode, plus one hint per mistake
its check can diagnose (gptlib/checks/attention.py names the codes).
"""

from __future__ import annotations

from gptlib.checks.hints import register_hints

_IN_PLACE = "build a new tensor instead of writing into the input: masked_fill (no underscore), y = x + ..."
_FIXED_T = "take the length from the input (T = x.size(1), or scores.size(-1)) and slice any stored mask: mask[:T, :T]."
_SCALE = (
    "multiply the scores by head_size ** -0.5, where head_size = k.size(-1) is the number of channels of ONE "
    "head: q.k sums head_size products, so its variance grows with head_size (not with n_embd)."
)
_MASK = {
    "nan-0-inf": "multiplying by a 0/1 mask or adding (1 - mask) * float('-inf') computes 0 * -inf = NaN. "
    "Use scores.masked_fill(mask == 0, float('-inf')): it replaces values instead of doing arithmetic with -inf.",
    "row-masked": "keep the diagonal: torch.tril(torch.ones(T, T)) (diagonal=0). Every position may look at "
    "itself; with diagonal=-1 position 0 has no key left at all.",
    "softmax-axis": "softmax over dim=-1, the keys: each query's row of weights sums to 1. -1 stays right "
    "whatever leading dims (B, n_head) the scores have.",
    "no-mask": "hide the future: scores.masked_fill(tril[:T, :T] == 0, float('-inf')) BEFORE the softmax.",
    "mask-transposed": "torch.tril keeps the lower triangle (key <= query: the past); torch.triu keeps the future.",
    "mask-after-softmax": "mask first (with -inf), softmax second: the softmax then spreads each row over the "
    "allowed keys only, and exp(-inf) = 0 gives the future exactly 0.",
    "future-leak": "row t of the weights may only be non-zero in columns 0..t: mask with -inf before a softmax "
    "over dim=-1.",
    "fixed-T": _FIXED_T,
    "in-place": _IN_PLACE,
    "nan": "follow the -inf: fill the scores with it before the softmax, and take the softmax over dim=-1, "
    "so that every row keeps at least one finite score (its own position).",
}

_CLASS = {
    "instance-not-class": "the check builds your layer itself: pass the class name without parentheses.",
    "not-a-class": "pass the class you defined (its name, no parentheses).",
    "not-a-module": "a layer is a subclass of nn.Module: class Name(nn.Module):",
}


def register() -> None:
    """Register the hints of lesson 02 (called when gptlib.checks.attention is imported)."""
    register_hints(
        "causal_average",
        levels=[
            "Output position t is the mean of x[:, 0], ..., x[:, t] (over time, dim 1). A loop over t with "
            "x[:, :t+1].mean(dim=1) is correct; the fast way is one matrix product.",
            "Build a (T, T) matrix whose row t holds 1/(t+1) in columns 0..t and 0 after them: "
            "torch.tril(torch.ones(T, T)) gives the ones; dividing each row by its sum makes it an average. "
            "Then wei @ x: (T, T) @ (B, T, C) broadcasts over the batch and gives (B, T, C).",
            "T = x.size(1)\n"
            "wei = torch.tril(torch.ones(T, T))          # 1 where s <= t\n"
            "wei = wei / wei.sum(dim=1, keepdim=True)    # each row sums to 1\n"
            "return wei @ x                              # (T, T) @ (B, T, C) -> (B, T, C)",
        ],
        diagnoses={
            "not-causal": "average only up to position t: multiply by the lower triangle torch.tril(...), and divide "
            "each row by its own count.",
            "mask-transposed": "torch.triu keeps the upper triangle, the future; torch.tril keeps the past.",
            "wrong-divisor": "divide row t by its own count, t + 1: wei / wei.sum(dim=1, keepdim=True), not by T.",
            "sum-not-mean": "a running sum is not a mean: normalise each row of the triangle so it sums to 1.",
            "excludes-self": "include position t itself: torch.tril(ones) keeps the diagonal; diagonal=-1 drops it "
            "and leaves row 0 empty (0/0 = NaN).",
            "wrong-axis": "time is dim 1 of (B, T, C): average over it (wei @ x with wei of shape (T, T)), not over "
            "the channels.",
            "fixed-T": _FIXED_T,
            "in-place": _IN_PLACE,
            "nan": "0/0 gives NaN: a row with no allowed positions has sum 0. Keep the diagonal in the triangle.",
            "wrong-values": "row t of the weight matrix holds 1/(t+1) in columns 0..t; print it for T = 4 "
            "and compare with the picture above the exercise.",
            "not-a-tensor": "stay in torch from start to end: no .numpy(), .tolist() or Python lists.",
            "wrong-dtype": "keep x's dtype: torch.ones(T, T) is float32 like x (or pass dtype=x.dtype).",
        },
    )

    register_hints(
        "masked_softmax",
        levels=[
            "Two steps: hide the future by setting those scores to -inf, then take a softmax over the last axis "
            "(the keys). exp(-inf) = 0, so the future gets weight exactly 0 and each row still sums to 1.",
            "T = scores.size(-1). torch.tril(torch.ones(T, T)) is 1 where key <= query. "
            "scores.masked_fill(tril == 0, float('-inf')) returns a copy with the future replaced (it broadcasts "
            "over any leading dims). F.softmax(..., dim=-1) then normalises over the keys.",
            "T = scores.size(-1)\n"
            "tril = torch.tril(torch.ones(T, T))\n"
            "scores = scores.masked_fill(tril == 0, float('-inf'))\n"
            "return F.softmax(scores, dim=-1)",
        ],
        diagnoses={
            **_MASK,
            "extra-scale": "scale the scores where they are made (in the head); masked_softmax only masks and normalises.",
            "not-normalised": "the weights must come out of F.softmax(..., dim=-1): every row sums to 1.",
            "wrong-values": "use the scores as they come: masked_fill with -inf where key > query, then "
            "F.softmax(..., dim=-1). Nothing else.",
        },
    )

    register_hints(
        "head",
        levels=[
            "Three Linear layers map x (B, T, C) to q, k, v of shape (B, T, head_size). The scores q @ k^T, scaled "
            "by head_size ** -0.5, masked and softmaxed, are the weights; the output is weights @ v.",
            "In __init__: self.query, self.key, self.value = nn.Linear(config.n_embd, head_size, bias=False) each, "
            "and a lower-triangular (block_size, block_size) buffer: self.register_buffer('tril', ...). "
            "In forward: wei = q @ k.transpose(-2, -1) * head_size ** -0.5 -> (B, T, T); mask with "
            "self.tril[:T, :T] == 0; softmax over dim=-1; return wei @ v -> (B, T, head_size).",
            "# __init__\n"
            "self.key = nn.Linear(config.n_embd, head_size, bias=False)   # same for query, value\n"
            "self.register_buffer('tril', torch.tril(torch.ones(config.block_size, config.block_size)))\n"
            "# forward\n"
            "B, T, C = x.shape\n"
            "k, q, v = self.key(x), self.query(x), self.value(x)           # (B, T, hs) each\n"
            "wei = q @ k.transpose(-2, -1) * k.size(-1) ** -0.5             # (B, T, T)\n"
            "wei = wei.masked_fill(self.tril[:T, :T] == 0, float('-inf'))\n"
            "wei = F.softmax(wei, dim=-1)\n"
            "return wei @ v                                                 # (B, T, hs)",
        ],
        diagnoses={
            **_MASK,
            **_CLASS,
            "missing-scale": _SCALE,
            "wrong-scale": _SCALE,
            "qk-swapped": "the scores are q @ k.transpose(-2, -1): row t is query t compared with every key.",
            "wrong-shape": "a head maps (B, T, n_embd) to (B, T, head_size): its three Linears are "
            "nn.Linear(config.n_embd, head_size).",
            "wrong-params": "name the layers query, key and value, each nn.Linear(config.n_embd, head_size).",
            "dropout-in-eval": "use an nn.Dropout module (it follows .train()/.eval()), or F.dropout(..., "
            "training=self.training).",
            "no-grad": "every layer must be used in forward, without .detach(), .data or torch.no_grad().",
            "mask-parameter": "self.register_buffer('tril', torch.tril(...)) keeps the mask with the module "
            "(it moves with .to(device)) without making it a learned parameter.",
            "wrong-values": "go through your forward next to the pseudocode (the last hint): q, k, v come from "
            "their own layers, the scores are q @ k^T * head_size ** -0.5, and the output is weights @ v.",
            "crashed": "print the shapes: k, q, v should be (B, T, head_size) and the scores (B, T, T).",
        },
    )

    register_hints(
        "attention",
        levels=[
            "This is n_head Heads side by side, computed at once. One Linear(C, C) each for query, key and value "
            "holds every head's projection. Reshape (B, T, C) to (B, n_head, T, head_size) so that one batched "
            "matmul runs all the heads; afterwards put the heads side by side again and apply the output projection.",
            "q = self.query(x).view(B, T, nh, hs).transpose(1, 2) -> (B, nh, T, hs), the same for k and v. "
            "att = q @ k.transpose(-2, -1) * hs ** -0.5 -> (B, nh, T, T); mask with self.mask[:, :, :T, :T] == 0; "
            "softmax(dim=-1); self.attn_drop(att); y = att @ v -> (B, nh, T, hs); "
            "y.transpose(1, 2).contiguous().view(B, T, C) puts the heads side by side; then "
            "self.resid_drop(self.proj(y)). (F.scaled_dot_product_attention(q, k, v, is_causal=True) does the "
            "middle part in one call.)",
            "# __init__: self.key, self.query, self.value, self.proj = nn.Linear(C, C) each;\n"
            "#           self.attn_drop = nn.Dropout(config.attn_pdrop); self.resid_drop = nn.Dropout(config.resid_pdrop)\n"
            "#           self.register_buffer('mask', torch.tril(torch.ones(bs, bs)).view(1, 1, bs, bs))\n"
            "B, T, C = x.shape\n"
            "hs = C // self.n_head\n"
            "q = self.query(x).view(B, T, self.n_head, hs).transpose(1, 2)   # (B, nh, T, hs); same for k, v\n"
            "att = (q @ k.transpose(-2, -1)) * hs ** -0.5                     # (B, nh, T, T)\n"
            "att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float('-inf'))\n"
            "att = self.attn_drop(F.softmax(att, dim=-1))\n"
            "y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)         # heads side by side\n"
            "return self.resid_drop(self.proj(y))",
        ],
        diagnoses={
            **_MASK,
            **_CLASS,
            "missing-scale": _SCALE,
            "wrong-scale": _SCALE,
            "qk-swapped": "the scores are q @ k.transpose(-2, -1): row t is query t compared with every key.",
            "merge-order": "first y.transpose(1, 2) -> (B, T, nh, hs), so each position's heads sit together; then "
            ".contiguous().view(B, T, C) (or .reshape(B, T, C)).",
            "head-split": "split the channels, not the positions: .view(B, T, n_head, hs) and only then "
            ".transpose(1, 2) -> (B, nh, T, hs).",
            "no-proj": "end with y = self.resid_drop(self.proj(y)): the projection mixes what the heads found.",
            "wrong-shape": "the output has the input's shape (B, T, C): merge the heads back "
            "(transpose(1, 2), then view(B, T, C)) before the projection.",
            "wrong-params": "the simplest layout: self.query, self.key, self.value and self.proj, each "
            "nn.Linear(config.n_embd, config.n_embd).",
            "dropout-in-eval": "nn.Dropout follows .train()/.eval(). With F.scaled_dot_product_attention pass "
            "dropout_p=self.attn_pdrop if self.training else 0.0.",
            "no-dropout": "two dropouts: self.attn_drop on the weights after the softmax, self.resid_drop on the "
            "output after the projection.",
            "dropout-rate": "attn_pdrop on the attention weights, resid_pdrop on the output.",
            "no-grad": "every layer must be used in forward, without .detach(), .data or torch.no_grad().",
            "mask-parameter": "self.register_buffer('mask', torch.tril(...)) keeps the mask with the module "
            "(it moves with .to(device)) without making it a learned parameter.",
            "wrong-values": "go through your forward next to the pseudocode (the last hint), printing shapes: "
            "q, k, v (B, nh, T, hs); att (B, nh, T, T); y (B, nh, T, hs), then (B, T, C) before the projection.",
            "crashed": "print the shapes: q, k, v should be (B, nh, T, hs) and att (B, nh, T, T). After a transpose, "
            "use .reshape (or .contiguous().view).",
        },
    )
