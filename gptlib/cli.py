"""The command line: `python -m gptlib [train|sample] ...`.

With no arguments it is the course's main job: train a small GPT on the
offline "pydoc" corpus (Python's own documentation) in a few minutes on a CPU,
report the losses, save a checkpoint and print samples. `train` runs the same
job with other settings; `sample` generates text from a saved checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gptlib import distributed
from gptlib.checkpoint import load_checkpoint, load_model
from gptlib.config import PRESETS, GPTConfig
from gptlib.corpus import DEFAULT_CORPUS, CorpusUnavailableError, load_corpus
from gptlib.data import train_val_split
from gptlib.device import pick_device
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer
from gptlib.train import TrainConfig, Trainer

# The default recipe (the no-argument main job): nanoGPT's small CPU model with a higher peak
# learning rate and 3000 steps. On "pydoc" its validation loss ends near 1.26 (the unigram
# baseline is 3.25; 2000 steps at lr 1e-3 end near 1.37) after about 3000 x 35 ms of training
# on a 2-core CPU. No dropout: the validation loss is still falling at the last step, so there
# is no overfitting yet for dropout to fight, only its cost in learning speed.
RECIPE = dict(
    preset="gpt-micro",  # 4 layers, 4 heads, 128 wide
    block_size=64,
    max_iters=3000,
    batch_size=12,
    lr=2e-3,
    min_lr=2e-4,
    warmup_iters=100,
    dropout=0.0,
    eval_interval=500,
    eval_iters=40,
    seed=1337,
)
DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_PROMPT = "\n"


EXAMPLES = """examples:
  python -m gptlib                                   the main job: train, save runs/pydoc.pt, sample
  python -m gptlib train --corpus tinyshakespeare --max-iters 5000 --out runs/shakespeare.pt
  python -m gptlib train --resume --max-iters 6000   continue runs/pydoc.pt up to step 6000
  python -m gptlib sample --checkpoint runs/pydoc.pt --prompt "def " --temperature 0.8 --top-k 20
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows an option's default, unless it has none worth showing (None, a switch) or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptlib",
        description=(
            "Train and sample minGPT-style language models.\n\n"
            "With no arguments: train a small GPT on the offline 'pydoc' corpus (Python's own\n"
            "documentation; a few minutes on a laptop CPU), save it under ./runs/ and print samples."
        ),
        epilog=EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{train,sample}")

    t = sub.add_parser(
        "train",
        help="train a GPT on a corpus and save a checkpoint",
        description="Train a character-level GPT on a corpus, save a checkpoint, print a sample.",
        formatter_class=_HelpFormatter,
    )
    t.add_argument(
        "--corpus", default=DEFAULT_CORPUS, help="'pydoc' (offline), 'tinyshakespeare', or a text file"
    )
    t.add_argument(
        "--preset",
        default=RECIPE["preset"],
        choices=list(PRESETS),
        metavar="NAME",
        help=f"model size: {', '.join(PRESETS)}",
    )
    t.add_argument("--n-layer", type=int, help="number of blocks (overrides the preset)")
    t.add_argument("--n-head", type=int, help="attention heads per block (overrides the preset)")
    t.add_argument("--n-embd", type=int, help="width of the residual stream (overrides the preset)")
    t.add_argument("--block-size", type=int, default=RECIPE["block_size"], help="context length in tokens")
    t.add_argument(
        "--dropout", type=float, default=RECIPE["dropout"], help="dropout rate for all three dropouts"
    )
    t.add_argument("--max-iters", type=int, default=RECIPE["max_iters"], help="optimizer steps in total")
    t.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="sequences per batch")
    t.add_argument("--lr", type=float, default=RECIPE["lr"], help="peak learning rate")
    t.add_argument(
        "--min-lr", type=float, default=RECIPE["min_lr"], help="learning rate at the end of the cosine"
    )
    t.add_argument(
        "--warmup-iters",
        type=int,
        help=f"linear warmup steps (default: {RECIPE['warmup_iters']}, or a tenth of --max-iters if less)",
    )
    t.add_argument(
        "--eval-interval", type=int, default=RECIPE["eval_interval"], help="steps between evaluations"
    )
    t.add_argument("--eval-iters", type=int, default=RECIPE["eval_iters"], help="batches per loss estimate")
    t.add_argument("--seed", type=int, default=RECIPE["seed"], help="seed for weights, batches and dropout")
    t.add_argument(
        "--out", type=Path, help="checkpoint file to write (default: runs/<corpus>.pt in the current folder)"
    )
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out up to --max-iters")
    t.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:N, mps, or auto (cuda, then mps, else cpu)"
    )
    t.add_argument(
        "--sample-tokens",
        type=int,
        default=300,
        help="characters per sample printed at the end (0: no samples)",
    )
    t.add_argument("--num-samples", type=int, default=2, help="how many samples to print at the end")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument(
        "--compile", action="store_true", help="train through torch.compile (slower to start; see bench/)"
    )

    s = sub.add_parser(
        "sample",
        help="generate text from a checkpoint",
        description="Generate text from a checkpoint written by `gptlib train`.",
        formatter_class=_HelpFormatter,
    )
    s.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file written by `gptlib train`")
    s.add_argument(
        "--prompt",
        default=DEFAULT_PROMPT,
        help="text to continue; its characters must be in the vocabulary (default: a newline)",
    )
    s.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate per sample")
    s.add_argument("--num-samples", type=int, default=1, help="how many samples")
    s.add_argument("--temperature", type=float, default=1.0, help="below 1 sharpens, above 1 flattens")
    s.add_argument("--top-k", type=int, help="sample among the k most likely tokens only")
    s.add_argument(
        "--top-p", type=float, help="sample among the most likely tokens whose probability reaches p"
    )
    s.add_argument("--greedy", action="store_true", help="always take the most likely token (no sampling)")
    s.add_argument("--seed", type=int, default=1337, help="seed for sampling")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps, or auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 corpus unavailable, 2 bad input, 130 Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["train"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "train":
            return cmd_train(args)
        return cmd_sample(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"gptlib: error: {e}", file=sys.stderr)
        return 2
    except CorpusUnavailableError as e:
        print(f"gptlib: error: {e}", file=sys.stderr)
        return 1


def _model_config(args: argparse.Namespace, vocab_size: int) -> GPTConfig:
    sizes = {k: getattr(args, k) for k in ("n_layer", "n_head", "n_embd") if getattr(args, k) is not None}
    p = args.dropout
    return GPTConfig.preset(
        args.preset, vocab_size, args.block_size, embd_pdrop=p, resid_pdrop=p, attn_pdrop=p, **sizes
    )


def _train_config(args: argparse.Namespace, device: torch.device | str, out: Path | None) -> TrainConfig:
    """The TrainConfig of `gptlib train` with these arguments (out: where checkpoints go, None for nowhere)."""
    return TrainConfig(
        max_iters=args.max_iters,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        min_lr=args.min_lr,
        warmup_iters=(
            args.warmup_iters
            if args.warmup_iters is not None
            else min(RECIPE["warmup_iters"], args.max_iters // 10)
        ),
        eval_interval=args.eval_interval,
        eval_iters=args.eval_iters,
        seed=args.seed,
        device=str(device),
        compile=args.compile,
        progress=not args.no_progress,
        log=True,
        checkpoint_path=str(out) if out is not None else None,
        resume_from=str(out) if args.resume and out is not None else None,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Train; under `torchrun --nproc_per_node N -m gptlib train` as N data-parallel processes."""
    info = distributed.setup(args.device)  # a single process unless torchrun started this one
    try:
        # Only rank 0 reports; the other processes train silently beside it.
        with contextlib.redirect_stdout(sys.stdout if info.is_main else io.StringIO()):
            return _train(args, info.device)
    finally:
        distributed.teardown()


def _train(args: argparse.Namespace, device: torch.device) -> int:
    start = time.perf_counter()
    out = args.out if args.out is not None else DEFAULT_RUNS_DIR / f"{Path(args.corpus).stem}.pt"
    text = load_corpus(args.corpus)
    tokenizer = CharTokenizer.from_text(text)
    train_data, val_data = train_val_split(tokenizer.encode_tensor(text), val_fraction=0.1)
    print(
        f"corpus {args.corpus!r}: {len(text):,} characters, vocabulary of {tokenizer.vocab_size}; "
        f"{train_data.numel():,} tokens to train on, {val_data.numel():,} to validate"
    )

    config = _model_config(args, tokenizer.vocab_size)
    torch.manual_seed(args.seed)  # the initial weights
    model = GPT(config)
    print(
        f"model: n_layer={config.n_layer}, n_head={config.n_head}, n_embd={config.n_embd}, "
        f"block_size={config.block_size}; {model.num_parameters():,} parameters; device {device}"
    )
    train_config = _train_config(args, device, out)
    trainer = Trainer(model, train_data, val_data, train_config, tokenizer=tokenizer)
    if trainer.step:
        print(f"resumed from {out} at step {trainer.step}")
    try:
        trainer.run()
    except KeyboardInterrupt:
        if out.is_file():
            where = f"the checkpoint {out} holds step {load_checkpoint(out)['trainer']['step']}; --resume continues from it"
        else:
            where = "no checkpoint was saved yet"
        print(f"\ninterrupted at step {trainer.step}: {where}.", file=sys.stderr)
        return 130

    evals = [h for h in trainer.history if "val_loss" in h]
    if evals:
        print(f"final validation loss {evals[-1]['val_loss']:.4f} at step {evals[-1]['step']}")
    print(f"trained {trainer.step} steps in {trainer.train_time:.1f} s; checkpoint saved to {out}")
    if args.sample_tokens > 0 and args.num_samples > 0:
        prompt = DEFAULT_PROMPT if DEFAULT_PROMPT in tokenizer.chars else tokenizer.chars[0]
        print(f"{args.num_samples} sample(s) of {args.sample_tokens} characters:")
        print_samples(
            model, tokenizer, prompt, args.num_samples, args.sample_tokens, args.seed, do_sample=True
        )
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    model, tokenizer = load_model(args.checkpoint, device=device)
    if tokenizer is None:
        raise ValueError(
            f"the checkpoint {args.checkpoint} has no tokenizer, so its ids cannot be turned into text."
        )
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}.")
    print_samples(
        model,
        tokenizer,
        args.prompt,
        args.num_samples,
        args.max_new_tokens,
        args.seed,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
    )
    return 0


def print_samples(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    num_samples: int,
    max_new_tokens: int,
    seed: int,
    **sampling: Any,
) -> None:
    """Print num_samples continuations of prompt, between lines of dashes; `sampling` goes to generate."""
    ids = tokenizer.encode(prompt)  # UnknownCharacterError (a ValueError) names unknown characters
    if not ids:
        raise ValueError("the prompt is empty: give at least one character to continue.")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    gen = torch.Generator(device=device).manual_seed(seed)
    for i in range(num_samples):
        out = model.generate(idx, max_new_tokens, generator=gen, **sampling)  # (1, T + max_new_tokens)
        if i:
            print("-" * 40)
        print(tokenizer.decode(out[0]))
