"""Generation: turn a trained GPT's next-token distribution into text, one token at a time.

Strategies: greedy (take the most likely token), temperature (sharpen or flatten
the distribution), top-k (sample among the k most likely) and top-p / nucleus
(sample among the smallest set of tokens whose probability reaches p).
With `use_cache=True` the keys and values of earlier positions are kept (see
kvcache.py), so each new token costs one position instead of the whole context;
the tokens are the same as without the cache. With `dtype="bfloat16"` (or
"float16", or "auto": where measured faster) it runs a 16-bit copy of the weights,
and its KV cache is 16-bit too: a one-token step reads every weight, so half the
bytes can be nearly half the time; the choices are scored in float32.

Taught in lessons 06 and 08: lessons/06_training_and_sampling.ipynb, lessons/08_generation_and_speed.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from gptlib import precision
from gptlib.kvcache import KVCache

if TYPE_CHECKING:
    from gptlib.model import GPT


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError for settings that have no meaning."""
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature!r}. Use do_sample=False for greedy decoding "
            "(the limit temperature -> 0)."
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a whole number >= 1 (or None for no limit), got {top_k!r}.")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (or None for no limit), got {top_p!r}.")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest in its row to -inf. logits (B, V)."""
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose total probability reaches p. logits (B, V)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # already reached p without this token (never drops the first)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    do_sample: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token from the last position's logits (B, V); returns (B, 1)."""
    if not do_sample:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    do_sample: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    dtype: str | None = None,
) -> torch.Tensor:
    """Extend idx (B, T) by max_new_tokens tokens; returns (B, T + max_new_tokens).

    The context is cropped to the last block_size tokens. The model runs in eval
    mode (no dropout) and is put back in the mode it was in. dtype None runs the
    model's weights as they are; a dtype name runs a copy in that format if it differs.
    """
    check_sampling_args(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}.")
    block_size = model.block_size
    model.check_input(idx[:, -block_size:] if isinstance(idx, torch.Tensor) and idx.dim() == 2 else idx)
    runner = in_dtype(model, dtype, idx.size(0))
    was_training = model.training
    model.eval()
    runner.eval()
    # inference_mode: no_grad without autograd's bookkeeping, which is a fair share of the cost of
    # a one-token step. Its tensors cannot enter autograd later, so the result is cloned outside it.
    try:
        with torch.inference_mode():
            cache = KVCache(len(model.blocks), block_size) if use_cache else None
            logits, _ = runner(idx[:, -block_size:], cache=cache)
            for i in range(max_new_tokens):
                last = logits[:, -1, :].float()  # (B, V), scored in float32 whatever the format
                tok = next_token(last, temperature, do_sample, top_k, top_p, generator)
                idx = torch.cat((idx, tok), dim=1)
                if i == max_new_tokens - 1:
                    break
                if cache is not None and cache.length < block_size:
                    logits, _ = runner(tok, cache=cache)  # one new position; the rest comes from the cache
                else:
                    # Positions are absolute: once the window slides, every position moves, so recompute.
                    logits, _ = runner(idx[:, -block_size:])
    finally:
        model.train(was_training)
    return idx.clone()


def weights_dtype(model: GPT) -> torch.dtype:
    """The format `model`'s weights are stored in."""
    return next(model.parameters()).dtype


def in_dtype(model: GPT, name: str | None, batch_size: int = 1) -> GPT:
    """`model` itself, or a copy whose weights are in the format `name` asks for (None: as they are).

    "auto" takes the device's 16-bit format if a probe of one-token steps measures it faster
    at this model's size and batch, once per device and shape (see precision.choose).
    """
    if name is None:
        return model
    device = next(model.parameters()).device
    c = model.config
    dtype = precision.choose(
        name,
        device,
        key=("generate", c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size, batch_size),
        run=lambda d: _probe_decode(model, d, batch_size),
    )
    return model if dtype == weights_dtype(model) else precision.copy_in(model, dtype)


def _probe_decode(model: GPT, dtype: torch.dtype, batch_size: int, steps: int = 16) -> Callable[[], None]:
    """`steps` one-token steps through a KV cache, with the weights in `dtype`: what "auto" times."""
    runner = model if dtype == weights_dtype(model) else precision.copy_in(model, dtype)
    runner.eval()
    device = next(model.parameters()).device
    tok = torch.zeros(batch_size, 1, dtype=torch.long, device=device)

    def run() -> None:
        with torch.inference_mode():
            cache = KVCache(len(runner.blocks), runner.block_size)
            for _ in range(min(steps, runner.block_size)):
                runner(tok, cache=cache)

    return run
