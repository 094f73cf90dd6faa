"""Precision: the number format a model computes in, what each device can do, and what "auto" picks.

float32 is the reference: 8 exponent bits and 24 of mantissa for every weight,
activation and gradient. Two 16-bit formats halve the bytes, and on hardware
built for them multiply the matmul rate:
- bfloat16 keeps float32's 8 exponent bits (the same range) and 8 of mantissa
  (about 3 significant digits). CPUs with AVX512-BF16 or AMX and recent GPUs
  (CUDA compute capability 8.0 and up) run it natively.
- float16 has 11 bits of mantissa but only 5 of exponent: gradients smaller than
  ~6e-8 become zero, so the loss is scaled up before backward and the gradients
  scaled back down before the step (a GradScaler). It is the fast format of older
  GPUs; on a CPU gptlib does not offer it (use bfloat16 there).

Training uses a 16-bit format through autocast ("mixed precision"): the weights
and the optimizer's state stay float32 (the master copy, in which small updates
add up), matmuls and attention run in the 16-bit format, and the loss (a
log-softmax over the vocabulary) is computed in float32. Generation instead runs
a 16-bit copy of the weights: a one-token step reads every weight once, so half
the bytes is close to half the time.

"auto" chooses a 16-bit format only where a short probe measures it faster on
this device, at this model's shapes, than float32; otherwise it is float32, and
the run is exactly a float32 run. Probes are cached per device and shape.

Taught in lesson 08: lessons/08_generation_and_speed.ipynb.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable

import torch

# The names a dtype option takes, and the torch dtype each means.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DTYPE_CHOICES = (*DTYPES, "auto")

# "auto" takes a 16-bit format only if it makes the probed step at least this much faster: a smaller
# gain is within the noise of a short probe, and does not pay for the digits the format gives up.
AUTO_MIN_SPEEDUP = 1.1

# (device, what was probed, dtype) -> the probe's speed-up of that dtype over float32
_probed: dict[tuple, float] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16' or 'float16'."""
    return str(dtype).removeprefix("torch.")


def cpu_has_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX): where bf16 can beat float32."""
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in probes)


def cuda_has_bf16(device: torch.device) -> bool:
    """True when the CUDA GPU computes in bfloat16 natively (compute capability 8.0, Ampere, and up)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def supported(device: torch.device) -> tuple[str, ...]:
    """The dtype names this device can train and generate in."""
    if device.type == "cuda":
        return ("float32", "bfloat16", "float16") if cuda_has_bf16(device) else ("float32", "float16")
    if device.type == "mps":
        return ("float32", "float16", "bfloat16")
    return ("float32", "bfloat16")


def fast_dtype(device: torch.device) -> torch.dtype | None:
    """The 16-bit format this device is built to be fast at, or None where there is none to try."""
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def check_dtype(name: str, device: torch.device) -> None:
    """Raise ValueError, saying what to use instead, unless `name` is a dtype choice this device can run."""
    if name not in DTYPE_CHOICES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_CHOICES)}.")
    if name == "auto" or name in supported(device):
        return
    have = ", ".join(supported(device))
    if device.type == "cpu" and name == "float16":
        why = "gptlib trains and generates in float16 on GPUs only; a CPU's 16-bit format is bfloat16"
    elif device.type == "cuda" and name == "bfloat16":
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        why = (
            f"this GPU ({torch.cuda.get_device_name(device)}, compute capability {capability}) has no native "
            "bfloat16 (it needs 8.0 or later); its 16-bit format is float16"
        )
    else:
        why = f"{name} is not available on {device.type}"
    raise ValueError(f"dtype {name!r} on device {str(device)!r}: {why}. Use one of: {have}, or auto.")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The context that runs a forward pass in `dtype` with float32 weights (nothing at all for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler | None:
    """A GradScaler for float16 training (its gradients underflow without one); None for other dtypes."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def copy_in(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of `model` whose weights are stored in `dtype` (the model itself is untouched)."""
    return copy.deepcopy(model).to(dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def probe_speedup(
    run: Callable[[torch.dtype], Callable[[], object]],
    dtype: torch.dtype,
    device: torch.device,
    rounds: int = 3,
) -> float:
    """How many times faster run(dtype)() is than run(float32)(): the fastest of `rounds`, interleaved."""
    fns = {torch.float32: run(torch.float32), dtype: run(dtype)}
    best = {d: float("inf") for d in fns}
    for fn in fns.values():  # warm up: first calls allocate and pick kernels
        fn()
    _sync(device)
    for r in range(rounds):
        for d in fns if r % 2 == 0 else reversed(fns):
            start = time.perf_counter()
            fns[d]()
            _sync(device)
            best[d] = min(best[d], time.perf_counter() - start)
    return best[torch.float32] / best[dtype]


def choose(
    name: str,
    device: torch.device,
    key: tuple,
    run: Callable[[torch.dtype], Callable[[], object]],
) -> torch.dtype:
    """The dtype to compute in: `name`'s, or for "auto" the fast format if the probe measures it faster.

    `run(dtype)` gives a function doing the work to compare (a training step, a generation
    step) in that dtype; it is called only for "auto", once per device and `key` (the shapes).
    """
    check_dtype(name, device)
    if name != "auto":
        return DTYPES[name]
    fast = fast_dtype(device)
    if fast is None:
        return torch.float32
    cache_key = (str(device), key, fast)
    if cache_key not in _probed:
        _probed[cache_key] = probe_speedup(run, fast, device)
    return fast if _probed[cache_key] >= AUTO_MIN_SPEEDUP else torch.float32
