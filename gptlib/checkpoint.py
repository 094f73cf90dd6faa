"""Checkpoints: a trained model, and everything needed to go on training it, in one file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with `torch.load(weights_only=True)`: loading runs no code from the
file. It holds the GPTConfig and the tokenizer as dicts, the weights, and, for
a resume, the state a Trainer hands over (`Trainer.state_dict()`: step,
history, optimizer, settings, random generators) as it is: this file layer
knows files and plain data, and the Trainer saves and restores itself through it.

Files are written atomically (files.py): a crash or a Ctrl-C in the middle of
a save leaves the previous checkpoint as it was.

Format 1 (gptlib 0.1) kept the Trainer's entries at the top level and the
parameter names of the time (stem.*, head.head.*); load_checkpoint reads it as
format 2, and GPT.load_state_dict renames the old parameter names.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any

import torch

from gptlib.config import GPTConfig
from gptlib.files import atomic_file
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer

FORMAT = "gptlib.checkpoint"
FORMAT_VERSION = 2
_TRAINER_ENTRIES_V1 = ("optimizer", "step", "train_config", "rng_state", "history")


class CheckpointError(ValueError):
    """A file is not a gptlib checkpoint, or does not fit the model it is loaded into."""


def _gptlib_version() -> str:
    try:
        return importlib.metadata.version("gptlib")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def save_checkpoint(
    path: str | os.PathLike[str],
    model: GPT,
    *,
    tokenizer: CharTokenizer | None = None,
    trainer: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint to `path` atomically and return the path.

    model: its config and weights; tokenizer: stored so load_model can give it back;
    trainer: a Trainer's state_dict() (plain data), for a resume.
    """
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model saves the plain keys
    if not isinstance(model, GPT):
        raise ValueError(f"save_checkpoint saves a gptlib GPT, got {type(model).__name__}.")
    if tokenizer is not None and not isinstance(tokenizer, CharTokenizer):
        raise ValueError(f"tokenizer must be a CharTokenizer (or None), got {type(tokenizer).__name__}.")
    if trainer is not None and not isinstance(trainer, dict):
        raise ValueError(
            f"trainer must be a Trainer's state_dict() (a dict) or None, got {type(trainer).__name__}."
        )
    ckpt = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "gptlib_version": _gptlib_version(),
        "torch_version": str(torch.__version__),  # a plain str: TorchVersion is no safe type
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "trainer": trainer,
    }
    with atomic_file(path) as f:
        torch.save(ckpt, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint; its tensors are on the CPU.

    Raises FileNotFoundError if there is no file, CheckpointError if it is not a gptlib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise FileNotFoundError(
            f"no checkpoint at {path}{hint}. Train one first, e.g. `python -m gptlib train --out {path}`."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch each raise their own kind for a foreign file
        raise CheckpointError(
            f"{path} is not a gptlib checkpoint: torch.load could not read it safely: {_short_reason(e)}."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = f"a dict with keys {sorted(ckpt)[:8]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is a torch file but not a gptlib checkpoint (it holds {found}, without "
            f"format={FORMAT!r}). Checkpoints are written by gptlib.checkpoint.save_checkpoint or "
            "`python -m gptlib train`."
        )
    if ckpt.get("version") == 1:
        ckpt = _from_format_1(ckpt)
    if ckpt.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a gptlib checkpoint of format version {ckpt.get('version')!r}; this gptlib reads "
            f"versions 1 to {FORMAT_VERSION}. Use the gptlib version that wrote it ({ckpt.get('gptlib_version')})."
        )
    return ckpt


def _from_format_1(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint as format 2: the Trainer's entries gathered under "trainer" (None if it had none)."""
    out = {k: v for k, v in ckpt.items() if k not in _TRAINER_ENTRIES_V1}
    trainer = {k: ckpt.get(k) for k in _TRAINER_ENTRIES_V1}
    resumable = trainer["optimizer"] is not None and trainer["rng_state"] is not None
    return {**out, "version": FORMAT_VERSION, "trainer": trainer if resumable else None}


def _short_reason(e: Exception) -> str:
    """Why torch.load refused a file, in one line (its weights-only errors open with a long preamble)."""
    for line in str(e).splitlines():
        if "WeightsUnpickler error:" in line:
            detail = line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
            return f"it holds objects other than tensors and plain data: {detail}"
    return f"it was not written by torch.save, or it is damaged ({type(e).__name__})"


def load_weights(model: GPT, ckpt: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Copy a checkpoint's weights into model; CheckpointError, saying what differs, if they do not fit."""
    saved, current = ckpt["model_config"], model.config.to_dict()
    if saved != current:
        diffs = ", ".join(
            f"{k}: checkpoint {saved.get(k)!r}, model {current.get(k)!r}"
            for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)
        )
        raise CheckpointError(
            f"the checkpoint {path} holds a different model ({diffs}). Build the model with the checkpoint's "
            "config, e.g. GPT(GPTConfig.from_dict(load_checkpoint(path)['model_config']))."
        )
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}  # as torch.compile names them
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise CheckpointError(
            f"the weights in {path} do not fit a GPT of the config stored with them ({detail[:300]}). "
            "Was it written by another version of gptlib?"
        ) from None


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[GPT, CharTokenizer | None]:
    """The GPT in a checkpoint (in eval mode, on `device`) and its tokenizer (None if none was saved)."""
    ckpt = load_checkpoint(path)
    model = GPT(GPTConfig.from_dict(ckpt["model_config"]))
    load_weights(model, ckpt, path)
    model.to(device).eval()
    tok = ckpt.get("tokenizer")
    return model, (CharTokenizer.from_dict(tok) if tok is not None else None)
