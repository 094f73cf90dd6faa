"""The main job, raced: `python -m gptlib`'s recipe against the recipe it replaced, in turns, in one process.

Three entrants train from the same seed on the same corpus:
- "new": the main job as `python -m gptlib` runs it (the command line's own defaults);
- "today": the recipe it had before (TODAY_ARGV: gpt-micro, AdamW, float32, 3000 steps),
  through the same Trainer;
- "seed_style": today's recipe on the seed-style model (bench/seed_model.py), trained by
  the loop minGPT's trainer runs, on the very batches "today" sees.
They take turns: the entrant that has spent the least training time so far runs its next
`eval_every` steps, then its validation loss is measured (on the same batches for all, outside
the clock). A machine that slows down slows all three alike. Each one's time to reach
TARGET_VAL_LOSS is its training time (setup included: building the optimizer, and the probe of
dtype "auto") up to the first evaluation at or below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.seed_model import SeedConfig, SeedGPT
from bench.timing import clock
from gptlib.cli import _model_config, _train_config, build_parser
from gptlib.corpus import load_corpus
from gptlib.data import get_batch, train_val_split
from gptlib.interop import to_mingpt
from gptlib.model import GPT
from gptlib.precision import dtype_name
from gptlib.tokenizer import CharTokenizer
from gptlib.train import Trainer, estimate_loss, lr_at

TARGET_VAL_LOSS = 1.45
# The main job's recipe before issue 14: minGPT's AdamW on gpt-micro in float32, 3000 steps.
TODAY_ARGV = [
    "--preset", "gpt-micro", "--block-size", "64", "--batch-size", "12", "--max-iters", "3000",
    "--lr", "2e-3", "--min-lr", "2e-4", "--warmup-iters", "100", "--lr-decay-iters", "3000", "--dropout", "0.0",
    "--optimizer", "adamw", "--dtype", "float32",
]  # fmt: skip
EVAL_BATCH = 12  # validation batches: 12 windows of the shortest entrant's context, eval_iters of them


@dataclass
class Entrant:
    """One training run in the race: its step function, its clock, and what it reached."""

    name: str
    model: torch.nn.Module
    step: object  # () -> None: one optimizer step
    max_iters: int
    dtype: torch.dtype
    settings: dict
    trainer: Trainer | None = None
    seconds: float = 0.0
    steps: int = 0
    curve: list = field(default_factory=list)  # [step, training seconds, validation loss]


def _recipe(argv: list[str], steps: int | None, eval_iters: int | None):
    full = ["train", "--no-progress", *argv]
    full += ["--max-iters", str(steps)] if steps is not None else []
    full += ["--eval-iters", str(eval_iters)] if eval_iters is not None else []
    return build_parser().parse_args(full)


def measure_main_job(
    steps: dict[str, int] | None = None, eval_iters: int | None = None, eval_every: int = 50
) -> dict:
    """Race the entrants through their recipes (or `steps[name]` steps of them); see the module docstring."""
    steps = steps or {}
    new_args = _recipe([], steps.get("new"), eval_iters)
    today_args = _recipe(TODAY_ARGV, steps.get("today"), eval_iters)
    text = load_corpus(new_args.corpus)
    tokenizer = CharTokenizer.from_text(text)
    train_data, val_data = train_val_split(tokenizer.encode_tensor(text), val_fraction=0.1)

    def trainer_entrant(name: str, args) -> Entrant:
        start = clock()
        torch.manual_seed(args.seed)  # the initial weights, as `python -m gptlib` makes them
        model = GPT(_model_config(args, tokenizer.vocab_size))
        tc = _train_config(args, "cpu", out=None).replace(eval_interval=None, log=False)
        trainer = Trainer(model, train_data, val_data, tc)
        entrant = Entrant(
            name, model, trainer.train_step, tc.max_iters, trainer.dtype, _settings(args), trainer
        )
        entrant.seconds = clock() - start  # setup: the optimizer, and the probe of dtype "auto"
        return entrant

    new = trainer_entrant("new", new_args)
    today = trainer_entrant("today", today_args)
    seed_style = _seed_style_entrant(today, train_data, tokenizer.vocab_size)
    entrants = [new, today, seed_style]
    eval_block = min(e.model.block_size for e in entrants)
    n_eval = today_args.eval_iters

    def evaluate(e: Entrant) -> None:
        gen = torch.Generator().manual_seed(today_args.seed)
        loss = estimate_loss(e.model, val_data, EVAL_BATCH, n_eval, gen, dtype=e.dtype, block_size=eval_block)
        e.curve.append([e.steps, e.seconds, loss])

    while any(e.steps < e.max_iters for e in entrants):
        e = min((e for e in entrants if e.steps < e.max_iters), key=lambda e: e.seconds)
        start = clock()
        for _ in range(min(eval_every, e.max_iters - e.steps)):
            e.step()
            e.steps += 1
        e.seconds += clock() - start
        evaluate(e)

    result = {
        "target_val_loss": TARGET_VAL_LOSS,
        "eval_every": eval_every,
        "eval_windows": {"block_size": eval_block, "batch_size": EVAL_BATCH, "batches": n_eval},
        "entrants": {e.name: _report(e, tokenizer, new_args.seed) for e in entrants},
    }
    reached = {name: r["seconds_to_target"] for name, r in result["entrants"].items()}
    result["speedup_to_target"] = (
        reached["today"] / reached["new"] if reached["today"] and reached["new"] else None
    )
    secs = {name: r["train_seconds"] for name, r in result["entrants"].items()}
    result["today_vs_seed_style"] = secs["seed_style"] / secs["today"]
    return result


def _seed_style_entrant(today: Entrant, train_data: torch.Tensor, vocab_size: int) -> Entrant:
    """Today's recipe on the seed-style model, by minGPT's loop, from today's weights and on its batches."""
    start = clock()
    c = today.model.config
    seed_model = SeedGPT(SeedConfig(vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, 0.0, 0.0, 0.0))
    seed_model.load_state_dict({k: v.clone() for k, v in to_mingpt(today.model).items()})  # today's weights
    tc = today.trainer.config
    optimizer = seed_model.configure_optimizers(tc.weight_decay, tc.learning_rate, tc.betas)
    batches = torch.Generator().set_state(today.trainer.batch_generator.get_state())  # today's batches
    done = [0]

    def step() -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(done[0], tc)
        x, y = get_batch(train_data, c.block_size, tc.batch_size, generator=batches)
        _, loss = seed_model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(seed_model.parameters(), tc.grad_clip)
        optimizer.step()
        done[0] += 1

    e = Entrant("seed_style", seed_model, step, tc.max_iters, torch.float32, today.settings)
    e.seconds = clock() - start
    return e


def _settings(args) -> dict:
    """The recipe's settings, as `python -m gptlib train` resolves them."""
    c = _model_config(args, vocab_size=1)
    tc = _train_config(args, "cpu", out=None)
    return {
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "block_size": c.block_size,
        "dropout": args.dropout,
        "batch_size": tc.batch_size,
        "max_iters": tc.max_iters,
        "optimizer": tc.optimizer,
        "learning_rate": tc.learning_rate,
        "muon_lr": tc.muon_lr if tc.optimizer == "muon" else None,
        "min_lr": tc.min_lr,
        "warmup_iters": tc.warmup_iters,
        "lr_decay_iters": tc.lr_decay_iters,
        "weight_decay": tc.weight_decay,
        "betas": list(tc.betas),
        "grad_clip": tc.grad_clip,
        "dtype": tc.dtype,
        "seed": tc.seed,
    }


def _report(e: Entrant, tokenizer: CharTokenizer, seed: int) -> dict:
    hit = next(((s, t, v) for s, t, v in e.curve if v <= TARGET_VAL_LOSS), None)
    sample = ""
    if isinstance(e.model, GPT):
        prompt = torch.tensor([tokenizer.encode("\n")])
        gen = torch.Generator().manual_seed(seed)
        sample = tokenizer.decode(e.model.generate(prompt, 200, do_sample=True, generator=gen)[0])
    return {
        "settings": e.settings,
        "dtype": dtype_name(e.dtype),
        "steps": e.steps,
        "train_seconds": e.seconds,
        "seconds_to_target": hit[1] if hit else None,
        "step_at_target": hit[0] if hit else None,
        "final_val_loss": e.curve[-1][2],
        "curve": e.curve,
        "sample": sample,
    }
