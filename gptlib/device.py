"""Device selection: CPU by default, a GPU (CUDA, or Apple's MPS) when asked for and present.

Every part of the course runs on a CPU; a GPU only makes the same code faster.
`pick_device("auto")` takes CUDA if torch sees one, then MPS, else the CPU.
Asking by name for a device that is not there is an error that says what is
available, rather than a failure deep inside torch later on.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def cuda_available() -> bool:
    """True when torch was built with CUDA and sees at least one GPU."""
    return torch.cuda.is_available()


def mps_available() -> bool:
    """True on an Apple-silicon Mac whose torch build supports the MPS backend."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices() -> list[str]:
    """The device types this machine can run on, CPU first."""
    found = ["cpu"]
    if cuda_available():
        found.append("cuda")
    if mps_available():
        found.append("mps")
    return found


def pick_device(name: str | torch.device = "cpu") -> torch.device:
    """The torch.device to run on: "auto", "cpu", "cuda", "cuda:N" or "mps".

    "auto" prefers CUDA, then MPS, then the CPU. A named device that this machine
    lacks raises ValueError listing the ones it has.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or 'cuda:N'), got {name!r}.")
    name = name.strip().lower()
    if name == "auto":
        if cuda_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise ValueError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} or 'cuda:N'.")
    have = ", ".join(available_devices())
    if kind == "cuda":
        if not cuda_available():
            raise ValueError(
                f"device {name!r} was asked for, but this torch sees no CUDA GPU (available here: {have}). "
                "Use --device cpu, or --device auto to take a GPU only when there is one."
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise ValueError(
                f"device {name!r} was asked for, but this machine has {count} CUDA GPU(s): "
                f"use cuda:0 .. cuda:{count - 1}."
            )
    if kind == "mps" and not mps_available():
        raise ValueError(
            f"device {name!r} was asked for, but MPS (the GPU of Apple-silicon Macs) is not available here "
            f"(available: {have}). Use --device cpu or --device auto."
        )
    if kind in ("cpu", "mps") and index:
        raise ValueError(f"device {name!r}: only CUDA devices take an index; use {kind!r}.")
    return torch.device(name)
