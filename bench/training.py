"""Training throughput: gptlib against the seed-style model, same weights, same batch, interleaved.

One step is what a training loop does: forward, backward, gradient clipping and
an AdamW update. Tokens/s counts B x T tokens per step. MFU uses nanoGPT's
estimate of a step's FLOPs: 6 N + 12 L C T per token, with N the parameters
that take part in matmuls (everything but the token and position tables, which
are lookups) and 12 L C T the attention scores and weighted sums.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.nanogpt_style import NanoGPT
from bench.seed_model import SeedConfig, SeedGPT
from bench.timing import interleaved
from gptlib.config import GPTConfig
from gptlib.interop import from_mingpt
from gptlib.model import GPT


@dataclass(frozen=True)
class BenchConfig:
    """A model size and batch shape to measure."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int = 65  # tiny Shakespeare's characters

    def gpt_config(self, dropout: float) -> GPTConfig:
        return GPTConfig(
            vocab_size=self.vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            embd_pdrop=dropout,
            resid_pdrop=dropout,
            attn_pdrop=dropout,
        )

    def seed_config(self, dropout: float) -> SeedConfig:
        return SeedConfig(
            self.vocab_size,
            self.block_size,
            self.n_layer,
            self.n_head,
            self.n_embd,
            dropout,
            dropout,
            dropout,
        )


BABY = BenchConfig("baby", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)
LARGER = BenchConfig("larger", n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8)
SMOKE = BenchConfig("smoke", n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=2)


def matmul_params(model: GPT) -> int:
    """Parameters used in matmuls: all but the token and position embedding tables."""
    return model.num_parameters() - model.embeddings.tok_emb.weight.numel() - model.embeddings.pos_emb.numel()


def flops_per_token(model: GPT) -> int:
    """nanoGPT's estimate of training FLOPs per token (forward + backward)."""
    c = model.config
    return 6 * matmul_params(model) + 12 * c.n_layer * c.n_embd * c.block_size


def build_pair(cfg: BenchConfig, dropout: float, seed: int = 0) -> tuple[GPT, SeedGPT]:
    """A seed-style model and a gptlib model holding the very same weights."""
    torch.manual_seed(seed)
    seed_model = SeedGPT(cfg.seed_config(dropout))
    model = from_mingpt(seed_model.state_dict(), cfg.gpt_config(dropout)).train()  # gptlib.interop's renaming
    return model, seed_model


def make_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    """A closure running one full training step on the fixed batch (x, y)."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def same_function(model: GPT, seed_model: SeedGPT, x: torch.Tensor) -> float:
    """Largest |logit difference| between the two models in eval mode (should be ~1e-6)."""
    model.eval()
    seed_model.eval()
    with torch.no_grad():
        diff = (model(x)[0] - seed_model(x)[0]).abs().max().item()
    model.train()
    seed_model.train()
    return diff


def measure_training(
    cfg: BenchConfig,
    ceiling_gflops: float,
    rounds: int,
    repeat: int,
    dropout: float = 0.0,
    compile: bool = False,
) -> dict:
    """Tokens/s and MFU of a training step: gptlib, seed-style, nanoGPT-style (and compiled gptlib if asked)."""
    model, seed_model = build_pair(cfg, dropout)
    torch.manual_seed(0)
    nano_model = NanoGPT(cfg.seed_config(dropout))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), generator=g)
    y = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), generator=g)
    max_diff = same_function(model, seed_model, x)
    fns = {
        "gptlib": make_step(model, model.configure_optimizers(), x, y),
        "seed_style": make_step(seed_model, seed_model.configure_optimizers(), x, y),
        "nanogpt_style": make_step(nano_model, nano_model.configure_optimizers(), x, y),
    }
    if compile:
        compiled_model, _ = build_pair(cfg, dropout)
        compiled = torch.compile(compiled_model)
        fns["gptlib_compiled"] = make_step(compiled, compiled_model.configure_optimizers(), x, y)
        start = time.perf_counter()
        fns["gptlib_compiled"]()  # the first step compiles the forward and backward graphs
        compile_s = time.perf_counter() - start
    secs = interleaved(fns, rounds=rounds, repeat=repeat, warmup=2)
    tokens = cfg.batch_size * cfg.block_size
    fpt = flops_per_token(model)
    result = {
        "config": cfg.__dict__ | {"dropout": dropout},
        "parameters": model.num_parameters(),
        "matmul_parameters": matmul_params(model),
        "flops_per_token": fpt,
        "max_logit_diff_vs_seed_style": max_diff,
    }
    for name, s in secs.items():
        tok_s = tokens / s
        result[name] = {
            "ms_per_step": s * 1e3,
            "tokens_per_s": tok_s,
            "mfu": tok_s * fpt / (ceiling_gflops * 1e9),
        }
    result["speedup_vs_seed_style"] = secs["seed_style"] / secs["gptlib"]
    result["speedup_vs_nanogpt_style"] = secs["nanogpt_style"] / secs["gptlib"]
    if compile:
        result["compile_speedup"] = secs["gptlib"] / secs["gptlib_compiled"]
        result["compile_first_step_s"] = compile_s
        # Steps a run must take before compiling has paid for itself (None: it never does).
        saved = secs["gptlib"] - secs["gptlib_compiled"]
        result["compile_break_even_steps"] = round(compile_s / saved) if saved > 0 else None
    return result
