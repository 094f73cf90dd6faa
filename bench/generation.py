"""Generation speed: ms per new token with gptlib's KV cache, without it, the seed's way, and in 16-bit formats.

Greedy decoding of `new_tokens` tokens from a one-token prompt, batch 1, the
shape of sampling text on a laptop. With the cache each step runs one position
through the model, so it is bound by reading the weights: the floor is
(bytes of weights read per token) / (memory bandwidth), and a 16-bit copy of the
weights halves those bytes. The 16-bit runs' greedy tokens are compared with
float32's: where they first differ, the margin is float32's lead of its own
choice over the 16-bit run's choice (in logits), i.e. how close a call it was.
"""

from __future__ import annotations

import torch

from bench.timing import interleaved
from bench.training import BenchConfig, build_pair
from gptlib import precision
from gptlib.model import GPT


def weight_bytes_per_token(model: GPT, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of parameters one generation step reads in `dtype`: every weight, but one row of each table."""
    emb = model.embeddings
    skipped = emb.tok_emb.weight.numel() + emb.pos_emb.numel() - 2 * model.config.n_embd
    return (model.num_parameters() - skipped) * dtype.itemsize


def first_divergence(model: GPT, reference: torch.Tensor, other: torch.Tensor, prompt_len: int) -> dict:
    """Where two greedy continuations (1, T) first differ, and float32's logit margin there."""
    differ = (reference[0] != other[0]).nonzero()
    if len(differ) == 0:
        return {"same_tokens": reference.size(1) - prompt_len, "position": None, "logit_margin": None}
    pos = int(differ[0])
    with torch.inference_mode():
        logits, _ = model(reference[:, max(0, pos - model.block_size) : pos])  # the context both runs shared
    last = logits[0, -1].float()
    margin = (last[reference[0, pos]] - last[other[0, pos]]).item()
    return {"same_tokens": pos - prompt_len, "position": pos, "logit_margin": margin}


def measure_generation(
    cfg: BenchConfig,
    new_tokens: int,
    rounds: int,
    bandwidths_gbs: dict[str, dict[str, float]],
    dtypes: tuple[torch.dtype, ...] = (),
) -> dict:
    """Per-token times (ms) for cached, uncached, seed-style and 16-bit greedy generation, and the floors.

    bandwidths_gbs maps each format's name to the bandwidths ({"main_memory": ..., "weights_sized": ...})
    its floor is computed at.
    """
    model, seed_model = build_pair(cfg, dropout=0.0)
    model.eval()
    seed_model.eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    outs = {}

    def run(name, fn):
        def call():
            outs[name] = fn()

        return call

    fns = {
        "cache": run("cache", lambda: model.generate(prompt, new_tokens, use_cache=True)),
        "no_cache": run("no_cache", lambda: model.generate(prompt, new_tokens, use_cache=False)),
        "seed_style": run("seed_style", lambda: seed_model.generate(prompt, new_tokens)),
    }
    copies = {precision.dtype_name(d): precision.copy_in(model, d) for d in dtypes}  # made once, untimed
    for fmt, copy in copies.items():
        fns[f"cache_{fmt}"] = run(fmt, lambda copy=copy: copy.generate(prompt, new_tokens, use_cache=True))
    secs = interleaved(fns, rounds=rounds, repeat=1, warmup=1)
    ms = {name: s / new_tokens * 1e3 for name, s in secs.items()}
    floors = {}
    for dtype in (torch.float32, *dtypes):
        fmt = precision.dtype_name(dtype)
        nbytes = weight_bytes_per_token(model, dtype)
        floors[fmt] = {n: nbytes / (bw * 1e9) * 1e3 for n, bw in bandwidths_gbs[fmt].items()}
    result = {
        "config": cfg.__dict__,
        "new_tokens": new_tokens,
        "prompt_tokens": 1,
        "tokens_identical": bool(torch.equal(outs["cache"], outs["no_cache"]))
        and bool(torch.equal(outs["cache"], outs["seed_style"])),
        "ms_per_token": ms,
        "cache_speedup": ms["no_cache"] / ms["cache"],
        "cache_speedup_vs_seed_style": ms["seed_style"] / ms["cache"],
        "weight_bytes_per_token": weight_bytes_per_token(model),
        "floor_ms_per_token": floors["float32"],
        "cache_over_floor": {name: ms["cache"] / f for name, f in floors["float32"].items()},
        "by_dtype": {},
    }
    for fmt in copies:
        result["by_dtype"][fmt] = {
            "ms_per_token": ms[f"cache_{fmt}"],
            "speedup_vs_float32": ms["cache"] / ms[f"cache_{fmt}"],
            "weight_bytes_per_token": weight_bytes_per_token(model, precision.DTYPES[fmt]),
            "floor_ms_per_token": floors[fmt],
            "over_floor": {name: ms[f"cache_{fmt}"] / f for name, f in floors[fmt].items()},
            "greedy_vs_float32": first_divergence(model, outs["cache"], outs[fmt], prompt.size(1)),
        }
    return result
