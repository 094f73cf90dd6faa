"""The benchmark runs end to end in its tiny "smoke" mode and writes JSON with every field.

Timings are not checked (no timed tests): the numbers come from `python -m bench`
on a quiet machine. What is checked is that each measurement is there, is a
positive number where it must be, and that the two implementations the bench
races compute the same function.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--main-job", "--threads", "1", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for title in ("Machine", "Training step", "Generation", "Peak memory", "Main job"):
        assert title in result.stdout
    return json.loads(out.read_text())


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_meta_says_what_was_measured(smoke):
    meta = smoke["meta"]
    assert meta["smoke"] is True and meta["threads"] == 1
    assert meta["torch"] == torch.__version__
    for key in ("commit", "date", "platform", "rounds", "dropout", "dtype"):
        assert key in meta


def test_hardware_ceilings_of_each_format_and_bandwidth(smoke):
    hw = smoke["hardware"]
    timed = smoke["meta"]["dtypes_timed"]
    assert timed[0] == "float32" and set(timed) <= {"float32", "bfloat16", "float16"}
    assert set(hw["ceilings_gflops"]) == set(timed) == set(hw["matmul_gflops_by_dtype"])
    for fmt, mm in hw["matmul_gflops_by_dtype"].items():
        assert positive(mm["best"]) and mm["best"] == max(v for k, v in mm.items() if k != "best")
        assert hw["ceilings_gflops"][fmt] == mm["best"]
    assert hw["matmul_gflops"] == hw["matmul_gflops_by_dtype"]["float32"]
    assert positive(hw["read_bandwidth_gbs"]["main_memory"])
    assert positive(hw["read_bandwidth_gbs"]["weights_sized"])
    half = {f: n for f, n in hw["weight_bytes_by_dtype"].items() if f != "float32"}
    assert all(n * 2 == hw["weight_bytes_by_dtype"]["float32"] for n in half.values())


def test_training_reports_both_implementations_and_their_ratio(smoke):
    (t,) = smoke["training"]
    assert t["config"]["name"] == "smoke"
    # gptlib and the seed-style model hold the same weights and compute the same logits.
    assert t["max_logit_diff_vs_seed_style"] < 1e-5
    impls = ["gptlib", "seed_style", "nanogpt_style"]
    impls += [f"gptlib_{fmt}" for fmt in smoke["meta"]["dtypes_timed"][1:]]
    for impl in impls:
        run = t[impl]
        assert positive(run["ms_per_step"]) and positive(run["tokens_per_s"]) and positive(run["mfu"])
        # MFU against the ceiling of the format the run computed in
        assert run["ceiling_gflops"] == t["ceilings_gflops"][run["dtype"]]
        assert run["mfu"] == pytest.approx(
            run["tokens_per_s"] * t["flops_per_token"] / (run["ceiling_gflops"] * 1e9)
        )
        assert run["dtype"] == (impl.removeprefix("gptlib_") if impl.startswith("gptlib_") else "float32")
    for fmt in smoke["meta"]["dtypes_timed"][1:]:
        assert t[f"speedup_{fmt}_vs_float32"] == pytest.approx(
            t["gptlib"]["ms_per_step"] / t[f"gptlib_{fmt}"]["ms_per_step"]
        )
    assert t["speedup_vs_seed_style"] == pytest.approx(
        t["seed_style"]["ms_per_step"] / t["gptlib"]["ms_per_step"]
    )
    assert t["speedup_vs_nanogpt_style"] == pytest.approx(
        t["nanogpt_style"]["ms_per_step"] / t["gptlib"]["ms_per_step"]
    )
    # nanoGPT's estimate: 6 N + 12 L C T, N without the two embedding tables.
    c = t["config"]
    assert (
        t["flops_per_token"] == 6 * t["matmul_parameters"] + 12 * c["n_layer"] * c["n_embd"] * c["block_size"]
    )
    tables = c["vocab_size"] * c["n_embd"] + c["block_size"] * c["n_embd"]
    assert t["matmul_parameters"] == t["parameters"] - tables


def test_generation_with_and_without_the_cache(smoke):
    g = smoke["generation"]
    assert g["tokens_identical"] is True
    for method in ("cache", "no_cache", "seed_style"):
        assert positive(g["ms_per_token"][method])
    assert g["cache_speedup"] == pytest.approx(g["ms_per_token"]["no_cache"] / g["ms_per_token"]["cache"])
    assert set(g["floor_ms_per_token"]) == {"main_memory", "weights_sized"}
    assert all(positive(v) for v in g["floor_ms_per_token"].values())
    assert set(g["by_dtype"]) == set(smoke["meta"]["dtypes_timed"][1:])
    for d in g["by_dtype"].values():
        assert positive(d["ms_per_token"]) and d["weight_bytes_per_token"] * 2 == g["weight_bytes_per_token"]
        assert d["over_floor"]["main_memory"] == pytest.approx(
            d["ms_per_token"] / d["floor_ms_per_token"]["main_memory"]
        )
        div = d["greedy_vs_float32"]
        if div["position"] is None:
            assert div["same_tokens"] == g["new_tokens"] and div["logit_margin"] is None
        else:
            assert 0 <= div["same_tokens"] < g["new_tokens"] and div["logit_margin"] >= 0


def test_peak_memory_per_case(smoke):
    mem = smoke["memory"]
    cases = {(c["kind"], c["impl"]) for c in mem["cases"]}
    assert cases == {
        ("train", "gptlib"),
        ("train", "seed_style"),
        ("generate", "gptlib_cache"),
        ("generate", "gptlib_no_cache"),
        ("generate", "seed_style"),
    }
    if sys.platform != "win32":
        for c in mem["cases"]:
            assert positive(c["peak_rss_mb"]) and c["delta_mb"] == pytest.approx(
                c["peak_rss_mb"] - c["baseline_rss_mb"]
            )
            assert c["delta_mb"] >= 0


def test_the_nanogpt_style_baseline_is_a_causal_gpt_of_the_same_size():
    from bench.nanogpt_style import NanoGPT
    from bench.training import SMOKE
    from gptlib import GPT

    torch.manual_seed(0)
    nano = NanoGPT(SMOKE.seed_config(0.0)).eval()
    gpt = GPT(SMOKE.gpt_config(0.0))
    # The same parameters, but the head shares the token table (weight tying).
    assert sum(p.numel() for p in nano.parameters()) == gpt.num_parameters() - SMOKE.vocab_size * SMOKE.n_embd
    idx = torch.randint(0, SMOKE.vocab_size, (2, SMOKE.block_size))
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % SMOKE.vocab_size
    with torch.no_grad():
        logits, loss = nano(idx, torch.randint(0, SMOKE.vocab_size, idx.shape))
        later, _ = nano(changed)
    assert torch.equal(logits[:, :-1], later[:, :-1])  # the last token changes no earlier position
    assert not torch.equal(logits[:, -1], later[:, -1])
    assert loss.item() == pytest.approx(math.log(SMOKE.vocab_size), abs=0.1)  # small init: uniform guesses


def test_the_main_job_race_reports_each_recipe(smoke):
    mj = smoke["main_job"]
    assert mj["target_val_loss"] == 1.45 and mj["eval_every"] == 5
    entrants = mj["entrants"]
    assert set(entrants) == {"new", "today", "seed_style"}
    for r in entrants.values():
        assert r["steps"] == 20 and positive(r["train_seconds"])
        steps = [s for s, _, _ in r["curve"]]
        assert steps == [5, 10, 15, 20]
        assert r["final_val_loss"] == r["curve"][-1][2] < 4.6  # below a uniform guess over the vocabulary
        assert r["seconds_to_target"] is None  # 20 steps are far from 1.45
    assert entrants["today"]["settings"]["optimizer"] == "adamw" and entrants["today"]["dtype"] == "float32"
    # today's recipe on gptlib and on the seed-style model: same weights, same batches, the same losses
    today, seed = entrants["today"]["curve"], entrants["seed_style"]["curve"]
    assert [v for _, _, v in today] == pytest.approx([v for _, _, v in seed], abs=1e-3)
    assert mj["today_vs_seed_style"] == pytest.approx(
        entrants["seed_style"]["train_seconds"] / entrants["today"]["train_seconds"]
    )
    assert entrants["new"]["sample"] and entrants["today"]["sample"]


def test_the_bench_takes_a_dtype():
    from bench.run import formats_to_time, parse_args

    assert parse_args(["--dtype", "float32"]).dtype == "float32"
    assert parse_args([]).dtype == "all"
    assert formats_to_time("float32", torch.device("cpu")) == ()
    assert formats_to_time("bfloat16", torch.device("cpu")) == (torch.bfloat16,)
    with pytest.raises(ValueError, match="float16.*'cpu'"):
        formats_to_time("float16", torch.device("cpu"))
    with pytest.raises(SystemExit):
        parse_args(["--dtype", "fp8"])
