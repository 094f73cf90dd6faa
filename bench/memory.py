"""Peak memory: the peak resident set size (RSS) of a fresh process that builds a model and runs it.

Each case runs in a spawned process, so that no earlier case's memory (or
memory the allocator kept from it) is counted. The child first imports what
every case needs, then records its RSS (the baseline), runs the case and reads
its peak RSS; `delta_mb` = peak - baseline is what the model, its optimizer
state, activations and gradients (or the KV cache) cost.

How the peak is read, by platform (`method` in the results):
- Linux: VmHWM from /proc/self/status, after resetting it to the current RSS
  through /proc/self/clear_refs, so the peak covers only the case itself;
- elsewhere on Unix: getrusage's ru_maxrss, the peak over the child's whole life;
- Windows: not measured (None).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path

try:
    import resource
except ImportError:  # Windows
    resource = None

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def reset_peak() -> str:
    """Restart the peak at the current RSS where the OS allows it; returns the method that reads the peak."""
    try:
        _CLEAR_REFS.write_text("5")
        if _status_mb("VmHWM") is not None:
            return "VmHWM (Linux, reset per case)"
    except OSError:
        pass
    if resource is not None:
        return "ru_maxrss (peak of the whole child process)"
    return "unavailable"


def current_rss_mb() -> float | None:
    """The RSS now (Linux), else the peak so far (other Unix), else None."""
    rss = _status_mb("VmRSS")
    if rss is not None:
        return rss
    return peak_rss_mb("ru_maxrss")


def peak_rss_mb(method: str) -> float | None:
    if method.startswith("VmHWM"):
        return _status_mb("VmHWM")
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _run_case(cfg, kind: str, impl: str, steps: int, new_tokens: int) -> None:
    import torch

    from bench.training import build_pair, make_step

    model, seed_model = build_pair(cfg, dropout=0.0)
    m = seed_model if impl == "seed_style" else model
    if kind == "train":
        x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size))
        step = make_step(m, m.configure_optimizers(), x, x)
        for _ in range(steps):
            step()
    elif impl == "seed_style":
        m.generate(torch.zeros(1, 1, dtype=torch.long), new_tokens)
    else:
        m.generate(torch.zeros(1, 1, dtype=torch.long), new_tokens, use_cache=(impl == "gptlib_cache"))


def _child(cases: list[tuple], steps: int, new_tokens: int, threads: int, queue) -> None:
    import gc

    import torch
    import torch._dynamo  # noqa: F401  (imported by the first optimizer; keep it out of every delta)

    import bench.training

    torch.set_num_threads(threads)
    # Warm up on a tiny model, so one-time costs (thread pools, first-call allocations) stay out of the deltas.
    for kind, impl in (("train", "gptlib"), ("generate", "gptlib_cache")):
        _run_case(bench.training.SMOKE, kind, impl, steps=1, new_tokens=2)
    out = []
    for cfg, kind, impl in cases:
        gc.collect()
        method = reset_peak()
        baseline = current_rss_mb()
        _run_case(cfg, kind, impl, steps, new_tokens)
        peak = peak_rss_mb(method)
        delta = None if peak is None or baseline is None else peak - baseline
        out.append({"baseline_rss_mb": baseline, "peak_rss_mb": peak, "delta_mb": delta, "method": method})
    queue.put(out)


def peak_memory(
    cases: list[tuple], steps: int = 2, new_tokens: int = 20, one_process: bool = False
) -> list[dict]:
    """Peak RSS (MiB) for each (BenchConfig, "train" | "generate", impl) case.

    Each case gets a fresh process; with one_process=True all share one (quicker, for the smoke test:
    later cases may then reuse memory that earlier ones freed).
    """
    import torch

    groups = [cases] if one_process else [[c] for c in cases]
    ctx = mp.get_context("spawn")
    results: list[dict] = []
    for group in groups:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(group, steps, new_tokens, torch.get_num_threads(), queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            names = ", ".join(f"{cfg.name}/{kind}/{impl}" for cfg, kind, impl in group)
            raise RuntimeError(f"the memory measurement of {names} failed (exit code {proc.exitcode}).")
        results.extend(queue.get(timeout=10))
    return results
