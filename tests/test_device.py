"""pick_device: CPU by default, GPUs only when present, clear errors for absent devices."""

from __future__ import annotations

import pytest
import torch

import gptlib.device as device_mod
from gptlib.config import GPTConfig
from gptlib.device import available_devices, pick_device
from gptlib.model import GPT


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    monkeypatch.setattr(device_mod, "mps_available", lambda: False)


def test_cpu_by_default_and_by_name():
    assert pick_device() == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(" CPU ") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_without_gpu_is_cpu(no_gpu):
    assert pick_device("auto") == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(device_mod, "mps_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    assert pick_device("auto") == torch.device("mps")
    assert available_devices() == ["cpu", "mps"]


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_absent_device_is_a_clear_error(no_gpu, name):
    with pytest.raises(ValueError, match=rf"'{name}' was asked for.*available.*cpu.*--device (cpu|auto)"):
        pick_device(name)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"2 CUDA GPU\(s\): use cuda:0 \.\. cuda:1"):
        pick_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "tpu", "cuda:x", "", "  ", 3, None])
def test_unknown_names_are_rejected(name):
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        pick_device(name)


def test_index_only_for_cuda():
    with pytest.raises(ValueError, match="only CUDA devices take an index"):
        pick_device("cpu:0")


def test_the_model_runs_on_the_picked_device():
    device = pick_device("auto")  # whatever this machine has; CPU on the CI runners
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)).to(device)
    idx = torch.randint(0, 11, (2, 8), device=device)
    logits, loss = model(idx, idx)
    assert logits.device.type == device.type
    assert logits.shape == (2, 8, 11) and torch.isfinite(loss)
