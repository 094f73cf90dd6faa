"""Data-parallel training: two CPU processes over 127.0.0.1 stay in sync and match one process.

The multi-process tests launch torchrun as a subprocess, exactly as a user
would; each run starts three Python processes, so they take a few seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import train_tiny

from gptlib import cli, distributed, precision
from gptlib.checkpoint import load_checkpoint
from gptlib.distributed import DistInfo

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in distributed._TORCHRUN_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args]


# --- without processes ------------------------------------------------------------------------


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    for var in distributed._TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    info = distributed.setup("cpu")
    assert info == DistInfo() and info.is_main and not info.is_distributed
    assert distributed.current() == DistInfo()
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, info) is model
    x = torch.arange(6.0).view(3, 2)
    assert distributed.shard(x, info) is x
    assert distributed.mean_across(x, info) is x
    assert distributed.parameters_in_sync(model, info)
    distributed.teardown()  # no process group: nothing to do, no error


def test_shard_gives_each_rank_its_own_equal_slice():
    batch = torch.arange(12).view(6, 2)
    parts = [distributed.shard(batch, DistInfo(rank=r, local_rank=r, world_size=3)) for r in range(3)]
    assert [p.shape for p in parts] == [(2, 2)] * 3
    assert torch.equal(torch.cat(parts), batch)


def test_a_batch_that_does_not_split_evenly_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"batch_size=5 does not split evenly over 2 processes.*e\.g\. 4 or 6"
    ):
        distributed.shard(torch.zeros(5, 3), DistInfo(rank=0, world_size=2))


def test_half_set_torchrun_environment_is_a_clear_error(monkeypatch):
    for var in distributed._TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not.*torchrun"):
        distributed.setup("cpu")


# --- two processes ----------------------------------------------------------------------------


def test_two_processes_stay_in_sync_and_match_one_process_on_the_same_global_batch(tmp_path):
    """Each rank trains on half of the global batch; DDP's averaged gradients make the step of one process."""
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    port = free_port()
    run(
        torchrun(
            "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(port), str(WORKER), str(two)
        ),
        ROOT,
    )
    train_tiny(one)  # the same run in this process: no torchrun, the whole batch

    ranks = [torch.load(two / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = torch.load(one / "rank0.pt", weights_only=True)
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1
    assert all(r["in_sync"] for r in ranks)
    assert [r["agreed"] for r in ranks] == ["rank 0's", "rank 0's"]  # what dtype "auto" relies on
    start = single["state"]
    for name, p in ranks[0]["state"].items():
        assert torch.equal(p, ranks[1]["state"][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(
            p, start[name], rtol=1e-5, atol=1e-5, msg=f"{name} differs from one process"
        )
    # The recorded loss is the mean over the whole global batch, as one process records it.
    assert ranks[0]["losses"] == ranks[1]["losses"]
    torch.testing.assert_close(
        torch.tensor(ranks[0]["losses"]), torch.tensor(single["losses"]), rtol=1e-5, atol=1e-6
    )
    # Training moved the weights, so the comparison above compares something.
    moved = max((single["state"][k] - v).abs().max().item() for k, v in single["initial"].items())
    assert moved > 1e-3


def _train_args(tmp_path: Path, *more: str) -> list[str]:
    corpus = tmp_path / "fox.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    args = ["train", "--corpus", str(corpus), "--preset", "gpt-nano", "--n-layer", "1", "--n-embd", "12"]
    args += ["--block-size", "8", "--batch-size", "4", "--max-iters", "4", "--eval-interval", "2"]
    return args + ["--eval-iters", "1", "--no-progress", "--sample-tokens", "0", "--dropout", "0", *more]


# AdamW takes the very step one process takes. Muon (the main job's optimizer) orthogonalises the gradient in
# bfloat16, which turns the last-bit differences between one process's summed gradient and the processes'
# all-reduced one into differences of a bfloat16 rounding step in the update: close, not equal.
# Compared in float32: in a 16-bit format the two runs round differently, and Adam turns the rounding noise of
# a gradient that is ~0 (the key bias: softmax ignores a shift common to a row) into lr-sized steps: measured
# ~1e-2 apart after 4 steps in bfloat16 with either optimizer, against 3e-6 (AdamW) and 9e-5 (Muon) in float32.
@pytest.mark.parametrize("optimizer, tolerance", [("adamw", 1e-5), ("muon", 2e-3)])
def test_torchrun_dash_m_gptlib_train_matches_a_single_process_run(tmp_path, optimizer, tolerance):
    args = _train_args(tmp_path, "--optimizer", optimizer, "--dtype", "float32")
    result = run(torchrun("--standalone", "-m", "gptlib", *args, "--out", str(tmp_path / "two.pt")), tmp_path)
    assert result.stdout.count("final validation loss") == 1  # only rank 0 reports
    assert cli.main([*args, "--out", str(tmp_path / "one.pt")]) == 0

    two, one = load_checkpoint(tmp_path / "two.pt"), load_checkpoint(tmp_path / "one.pt")
    assert two["trainer"]["step"] == one["trainer"]["step"] == 4
    for name, p in one["model"].items():
        torch.testing.assert_close(
            two["model"][name], p, rtol=tolerance, atol=tolerance, msg=f"{name} differs"
        )


def test_torchrun_with_dtype_auto_trains_in_the_format_rank_0_chose(tmp_path):
    """'auto' times a probe in each process; they all take rank 0's choice (the worker test checks the
    agreement itself), and the checkpoint records it."""
    args = _train_args(tmp_path, "--dtype", "auto", "--out", str(tmp_path / "two.pt"))
    result = run(torchrun("--standalone", "-m", "gptlib", *args), tmp_path)
    chosen = load_checkpoint(tmp_path / "two.pt")["trainer"]["dtype"]
    assert chosen in precision.DTYPES
    assert result.stdout.count(f"computing in {chosen}") == 1  # one process reports, in the format it used
