"""What this machine can do at best: the matmul rate of each number format (the compute ceilings) and bandwidth.

MFU (model-FLOPs utilization) is a model's useful FLOP/s over the matmul rate
measured here for the format the model computed in (float32, bfloat16, float16),
not over a datasheet number. Bandwidth sets the floor for one-token generation
steps, which must read every weight once per token.
"""

from __future__ import annotations

import torch

from bench.timing import interleaved


def matmul_gflops(
    sizes: tuple[int, ...] = (1024, 2048), rounds: int = 5, dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """Measured GFLOP/s of square n x n @ n x n matmuls in `dtype`, per size; 'best' is the ceiling."""
    out: dict[str, float] = {}
    fns = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        c = torch.empty(n, n, dtype=dtype)
        fns[str(n)] = lambda a=a, b=b, c=c: torch.mm(a, b, out=c)
    secs = interleaved(fns, rounds=rounds, repeat=max(1, 3), warmup=2)
    for n in sizes:
        out[str(n)] = 2 * n**3 / secs[str(n)] / 1e9
    out["best"] = max(out[str(n)] for n in sizes)
    return out


def read_bandwidth_gbs(nbytes: int, rounds: int = 5) -> float:
    """GB/s at which torch reads (sums) a float32 buffer of `nbytes`, the way a matrix-vector product streams weights.

    A buffer much larger than the last-level cache measures main-memory bandwidth; one the size of a
    model's weights measures what a generation step can get if the weights stay in cache.
    """
    n = max(1, nbytes // 4)
    buf = torch.ones(n)
    secs = interleaved({"sum": lambda: buf.sum()}, rounds=rounds, repeat=3, warmup=2)["sum"]
    return n * 4 / secs / 1e9
