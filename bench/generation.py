"""Generation speed: ms per new token with gptlib's KV cache, without it, and the seed's way.

Greedy decoding of `new_tokens` tokens from a one-token prompt, batch 1, the
shape of sampling text on a laptop. With the cache each step runs one position
through the model, so it is bound by reading the weights: the floor is
(bytes of weights read per token) / (memory bandwidth).
"""

from __future__ import annotations

import torch

from bench.timing import interleaved
from bench.training import BenchConfig, build_pair
from gptlib.model import GPT


def weight_bytes_per_token(model: GPT) -> int:
    """Bytes of parameters one generation step reads: every weight, but one row of each embedding table."""
    emb = model.embeddings
    skipped = emb.tok_emb.weight.numel() + emb.pos_emb.numel() - 2 * model.config.n_embd
    return (model.num_parameters() - skipped) * 4


def measure_generation(
    cfg: BenchConfig, new_tokens: int, rounds: int, bandwidths_gbs: dict[str, float]
) -> dict:
    """Per-token times (ms) for cached, uncached and seed-style greedy generation, and the bandwidth floors."""
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
    secs = interleaved(fns, rounds=rounds, repeat=1, warmup=1)
    ms = {name: s / new_tokens * 1e3 for name, s in secs.items()}
    nbytes = weight_bytes_per_token(model)
    floors = {name: nbytes / (bw * 1e9) * 1e3 for name, bw in bandwidths_gbs.items()}
    return {
        "config": cfg.__dict__,
        "new_tokens": new_tokens,
        "prompt_tokens": 1,
        "tokens_identical": bool(torch.equal(outs["cache"], outs["no_cache"]))
        and bool(torch.equal(outs["cache"], outs["seed_style"])),
        "ms_per_token": ms,
        "cache_speedup": ms["no_cache"] / ms["cache"],
        "cache_speedup_vs_seed_style": ms["seed_style"] / ms["cache"],
        "weight_bytes_per_token": nbytes,
        "floor_ms_per_token": floors,
        "cache_over_floor": {name: ms["cache"] / f for name, f in floors.items()},
    }
