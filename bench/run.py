"""The benchmark command: `python -m bench [--smoke] [--json PATH] [--compile] [--profile]`.

In one run it measures, and prints as tables:
  1. the machine: fp32 matmul GFLOP/s (the ceiling) and memory read bandwidth;
  2. training tokens/s and MFU for the "baby" and "larger" configs, gptlib against
     the seed-style model (bench/seed_model.py), timed interleaved, and their ratio;
  3. generation ms per new token with and without the KV cache, and the floor set
     by reading every weight once per token at the measured bandwidth;
  4. peak memory of each case, in a fresh process.
With --json the results are written as JSON, to compare across commits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from bench.generation import measure_generation, weight_bytes_per_token
from bench.hardware import matmul_gflops, read_bandwidth_gbs
from bench.main_job import measure_main_job
from bench.memory import peak_memory
from bench.profile import profile_training
from bench.timing import set_clock, set_stat
from bench.training import BABY, LARGER, SMOKE, build_pair, measure_training


def git_commit() -> str | None:
    """The commit being measured, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a temp file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one round: checks the bench runs")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per comparison (default 5)")
    p.add_argument("--new-tokens", type=int, default=None, help="tokens to generate (default 200)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of the trained models (default 0.0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (with --threads 1: steadier on a busy machine)",
    )
    p.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="summarise the rounds of each version by their median, or their fastest (for shared machines)",
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd gptlib training")
    p.add_argument("--profile", action="store_true", help="profile gptlib training steps per config")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument(
        "--main-job",
        action="store_true",
        help="also race the main job's whole recipe (python -m gptlib), gptlib against seed-style: minutes",
    )
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.new_tokens is not None and args.new_tokens < 1:
        p.error(f"--new-tokens must be >= 1, got {args.new_tokens}")
    if not 0.0 <= args.dropout < 1.0:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu needs --threads 1: with more threads CPU time adds up the threads' time")
    return args


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    set_clock(args.clock)
    set_stat(args.stat)
    smoke = args.smoke
    rounds = args.rounds or (1 if smoke else 5)
    new_tokens = args.new_tokens or (8 if smoke else 200)
    configs = [SMOKE] if smoke else [BABY, LARGER]
    gen_config = configs[-1]
    results: dict = {
        "meta": {
            "commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "smoke": smoke,
            "rounds": rounds,
            "dropout": args.dropout,
            "clock": args.clock,
            "stat": args.stat,
            "device": "cpu",
            "dtype": "float32",
        }
    }
    print(
        f"gptlib bench: torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"{platform.platform()}"
    )

    # 1. The machine.
    sizes = (128, 256) if smoke else (1024, 2048)
    mm = matmul_gflops(sizes, rounds=rounds)
    big = 16 * 2**20 if smoke else 2**30
    gen_model, _ = build_pair(gen_config, 0.0)
    wbytes = weight_bytes_per_token(gen_model)
    del gen_model
    bw = {
        "main_memory": read_bandwidth_gbs(big, rounds=rounds),
        "weights_sized": read_bandwidth_gbs(wbytes, rounds=rounds),
    }
    results["hardware"] = {
        "matmul_gflops": mm,
        "read_bandwidth_gbs": bw,
        "bandwidth_buffer_bytes": {"main_memory": big, "weights_sized": wbytes},
    }
    print_table(
        "Machine",
        ["measure", "value"],
        [[f"fp32 matmul {n}x{n} GFLOP/s", f"{mm[str(n)]:.1f}"] for n in sizes]
        + [
            [f"read bandwidth, {big / 2**20:.0f} MiB buffer, GB/s", f"{bw['main_memory']:.1f}"],
            [f"read bandwidth, {wbytes / 2**20:.1f} MiB (the weights), GB/s", f"{bw['weights_sized']:.1f}"],
        ],
    )

    # 2. Training.
    results["training"] = []
    rows = []
    for cfg in configs:
        ceiling = matmul_gflops(sizes, rounds=rounds)["best"]  # re-measured next to each config
        repeat = 1 if smoke else max(1, round(0.3 / (0.03 if cfg.n_embd <= 128 else 0.7)))
        r = measure_training(
            cfg, ceiling, rounds=rounds, repeat=repeat, dropout=args.dropout, compile=args.compile
        )
        r["ceiling_gflops"] = ceiling
        results["training"].append(r)
        impls = ["gptlib", "seed_style", "nanogpt_style"] + (["gptlib_compiled"] if args.compile else [])
        for impl in impls:
            m = r[impl]
            rows.append(
                [
                    cfg.name,
                    impl,
                    f"{m['ms_per_step']:.1f}",
                    f"{m['tokens_per_s']:.0f}",
                    f"{m['mfu']:.0%}",
                    f"{m['tokens_per_s'] / r['seed_style']['tokens_per_s']:.2f}x",
                    f"{m['tokens_per_s'] / r['nanogpt_style']['tokens_per_s']:.2f}x",
                    f"{ceiling:.0f}",
                ]
            )
    print_table(
        f"Training step (forward, backward, clip, AdamW), dropout {args.dropout}, {args.stat} of {rounds} rounds",
        ["config", "impl", "ms/step", "tokens/s", "MFU", "vs seed", "vs nanoGPT", "ceiling GFLOP/s"],
        rows,
    )

    if args.compile:
        for r in results["training"]:
            even = r["compile_break_even_steps"]
            print(
                f"  torch.compile, {r['config']['name']}: first step {r['compile_first_step_s']:.1f} s, then "
                f"{r['compile_speedup']:.2f}x the eager step; "
                + (f"pays for itself after {even} steps" if even is not None else "never pays for itself")
            )

    # 3. Generation.
    g = measure_generation(gen_config, new_tokens, rounds=max(1, min(rounds, 3)), bandwidths_gbs=bw)
    results["generation"] = g
    ms = g["ms_per_token"]
    print_table(
        f"Generation, {gen_config.name} config, {new_tokens} new tokens from 1, greedy, batch 1",
        ["method", "ms/token", "vs cache"],
        [[k, f"{v:.2f}", f"{v / ms['cache']:.2f}x"] for k, v in ms.items()]
        + [
            [f"floor at {k} bandwidth", f"{v:.2f}", f"{v / ms['cache']:.2f}x"]
            for k, v in g["floor_ms_per_token"].items()
        ],
    )
    print(f"  same tokens with and without the cache (and seed-style): {g['tokens_identical']}")

    # 4. Peak memory.
    if not args.no_memory:
        cases = [(cfg, "train", impl) for cfg in configs for impl in ("gptlib", "seed_style")]
        cases += [
            (gen_config, "generate", impl) for impl in ("gptlib_cache", "gptlib_no_cache", "seed_style")
        ]
        measured = peak_memory(cases, steps=2, new_tokens=new_tokens, one_process=smoke)
        results["memory"] = {
            "what": "peak RSS of a spawned process while it builds the model and runs the case; "
            "delta = peak - RSS before the case",
            "one_process_for_all_cases": smoke,
            "cases": [
                {"config": cfg.name, "kind": kind, "impl": impl, **m}
                for (cfg, kind, impl), m in zip(cases, measured, strict=True)
            ],
        }

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0f}"

        rows = [
            [c["config"], c["kind"], c["impl"], fmt(c["peak_rss_mb"]), fmt(c["delta_mb"])]
            for c in results["memory"]["cases"]
        ]
        print_table(
            f"Peak memory, {measured[0]['method']}",
            ["config", "work", "impl", "peak MiB", "case MiB"],
            rows,
        )

    # The main job, whole.
    if args.main_job:
        mj = measure_main_job(steps=20, eval_iters=2) if smoke else measure_main_job()
        results["main_job"] = mj
        print_table(
            f"Main job (python -m gptlib's recipe, {mj['steps']} steps), gptlib's Trainer and the seed-style loop "
            "in turns",
            ["impl", "training s", "val loss", "vs seed"],
            [
                [
                    impl,
                    f"{mj['train_seconds'][impl]:.1f}",
                    f"{mj['val_loss'][impl]:.4f}",
                    f"{mj['train_seconds']['seed_style'] / mj['train_seconds'][impl]:.2f}x",
                ]
                for impl in ("gptlib", "seed_style")
            ],
        )

    # Where the time goes.
    if args.profile:
        results["profile"] = []
        for cfg in configs:
            prof = profile_training(cfg, steps=1 if smoke else 3, dropout=args.dropout)
            results["profile"].append(prof)
            print_table(
                f"Profile of a gptlib training step, {cfg.name}: {prof['ms_per_step']:.1f} ms, "
                f"matmul/attention kernels {prof['matmul_share']:.0%}",
                ["op", "ms/step", "share", "calls/step"],
                [
                    [o["op"], f"{o['ms_per_step']:.2f}", f"{o['share']:.1%}", f"{o['calls_per_step']:.0f}"]
                    for o in prof["top_ops"]
                ],
            )

    if args.json is not None:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return results
