"""Where a training step's time goes: torch.profiler over a few gptlib steps, grouped by operator."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from bench.training import BenchConfig, build_pair, make_step

# Operators that are matrix multiplications (forward or backward), the part MFU counts as useful.
MATMUL_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)


def profile_training(cfg: BenchConfig, steps: int = 3, top: int = 12, dropout: float = 0.0) -> dict:
    """Self CPU time per operator over `steps` gptlib training steps; the top ones and the matmul share."""
    model, _ = build_pair(cfg, dropout)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size))
    step = make_step(model, model.configure_optimizers(), x, x)
    step()  # warm up (allocations, optimizer state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [
        {
            "op": e.key,
            "ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "share": e.self_cpu_time_total / total,
            "calls_per_step": e.count / steps,
        }
        for e in events[:top]
    ]
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return {
        "config": cfg.name,
        "ms_per_step": total / 1e3 / steps,
        "matmul_share": matmul / total,
        "top_ops": rows,
    }
