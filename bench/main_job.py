"""The main job, raced: `python -m gptlib`'s recipe, trained by gptlib and by the seed-style model in turns.

Both start from the same weights and see the same batches with the same
learning-rate schedule. gptlib trains through its own Trainer (the code path of
the main job); the seed-style model trains with the loop minGPT's trainer runs
(zero grads, forward, backward, clip, AdamW step). They take steps in turns,
alternating which goes first, so a machine that slows down slows both. The
result: seconds of training each needed for the recipe's steps, and the
validation loss each reached (the same batches, so nearly the same loss).
"""

from __future__ import annotations

import torch

from bench.timing import clock
from bench.training import BenchConfig, build_pair
from gptlib.cli import _model_config, _train_config, build_parser
from gptlib.corpus import load_corpus
from gptlib.data import get_batch, train_val_split
from gptlib.tokenizer import CharTokenizer
from gptlib.train import Trainer, estimate_loss, lr_at


def measure_main_job(steps: int | None = None, eval_iters: int | None = None) -> dict:
    """Train both models through the recipe (or its first `steps` steps), in turns; time each, compare losses."""
    argv = ["train", "--no-progress"]
    argv += ["--max-iters", str(steps)] if steps is not None else []
    argv += ["--eval-iters", str(eval_iters)] if eval_iters is not None else []
    args = build_parser().parse_args(argv)  # `python -m gptlib`'s own settings, not a copy of them
    text = load_corpus(args.corpus)
    tokenizer = CharTokenizer.from_text(text)
    train_data, val_data = train_val_split(tokenizer.encode_tensor(text), val_fraction=0.1)
    c = _model_config(args, tokenizer.vocab_size)
    cfg = BenchConfig("main_job", c.n_layer, c.n_head, c.n_embd, c.block_size, args.batch_size, c.vocab_size)
    model, seed_model = build_pair(
        cfg, dropout=args.dropout, seed=args.seed
    )  # the very same starting weights
    tc = _train_config(args, "cpu", out=None).replace(eval_interval=None, log=False)
    trainer = Trainer(model, train_data, val_data, tc)
    optimizer = seed_model.configure_optimizers(tc.weight_decay, tc.learning_rate, tc.betas)
    # The seed-style loop draws its batches from a twin of the Trainer's batch generator: the same batches.
    batches = torch.Generator().set_state(trainer.batch_generator.get_state())

    def seed_step(step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tc)
        x, y = get_batch(train_data, cfg.block_size, cfg.batch_size, generator=batches)
        _, loss = seed_model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(seed_model.parameters(), tc.grad_clip)
        optimizer.step()

    seconds = {"gptlib": 0.0, "seed_style": 0.0}
    for step in range(tc.max_iters):
        order = ("gptlib", "seed_style") if step % 2 == 0 else ("seed_style", "gptlib")
        for name in order:
            start = clock()
            trainer.train_step() if name == "gptlib" else seed_step(step)
            seconds[name] += clock() - start

    def val_loss(m: torch.nn.Module) -> float:
        gen = torch.Generator().manual_seed(args.seed)
        return estimate_loss(m, val_data, cfg.batch_size, tc.eval_iters, gen)

    return {
        "steps": tc.max_iters,
        "train_seconds": seconds,
        "speedup_vs_seed_style": seconds["seed_style"] / seconds["gptlib"],
        "val_loss": {"gptlib": val_loss(model), "seed_style": val_loss(seed_model)},
    }
