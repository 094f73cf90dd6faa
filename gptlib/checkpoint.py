"""Checkpoints: a trained model, and everything needed to go on training it, in one file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with `torch.load(weights_only=True)`: loading runs no code from the
file. It holds the GPTConfig and the tokenizer as dicts, the weights, and, for
a resume, the optimizer state, the step, the TrainConfig, the history and the
random generators' states (tensors).

Files are written atomically: into a temporary file in the same folder, flushed
to disk, then renamed over the old one (os.replace), so a crash or a Ctrl-C in
the middle of a save leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer

if TYPE_CHECKING:
    from gptlib.train import TrainConfig, Trainer

logger = logging.getLogger(__name__)

FORMAT = "gptlib.checkpoint"
FORMAT_VERSION = 1

# TrainConfig fields that say where and how a run reports, not what it computes.
_BOOKKEEPING = {"progress", "log", "checkpoint_path", "resume_from", "device"}


class CheckpointError(ValueError):
    """A file is not a gptlib checkpoint, or does not fit the model it is loaded into."""


def save_checkpoint(
    path: str | os.PathLike[str],
    model: GPT,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    step: int = 0,
    tokenizer: CharTokenizer | None = None,
    train_config: TrainConfig | None = None,
    rng_state: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    grad_scaler: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint to `path` atomically and return the path. Only model is required.

    grad_scaler is the state of a float16 run's GradScaler (its current loss scale).
    """
    from gptlib import __version__

    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model saves the plain keys
    if not isinstance(model, GPT):
        raise ValueError(f"save_checkpoint saves a gptlib GPT, got {type(model).__name__}.")
    if tokenizer is not None and not isinstance(tokenizer, CharTokenizer):
        raise ValueError(f"tokenizer must be a CharTokenizer (or None), got {type(tokenizer).__name__}.")
    ckpt = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "gptlib_version": __version__,
        "torch_version": str(torch.__version__),  # a plain str: TorchVersion is no safe type
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "train_config": train_config.to_dict() if train_config is not None else None,
        "rng_state": rng_state,
        "history": list(history) if history is not None else [],
        "grad_scaler": grad_scaler,
    }
    path = Path(path)
    _atomic_save(ckpt, path)
    return path


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable; Windows cannot open a folder this way
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
    if ckpt.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is a gptlib checkpoint of format version {ckpt.get('version')!r}; this gptlib reads "
            f"version {FORMAT_VERSION}. Use the gptlib version that wrote it ({ckpt.get('gptlib_version')})."
        )
    return ckpt


def _short_reason(e: Exception) -> str:
    """Why torch.load refused a file, in one line (its weights-only errors open with a long preamble)."""
    for line in str(e).splitlines():
        if "WeightsUnpickler error:" in line:
            detail = line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
            return f"it holds objects other than tensors and plain data: {detail}"
    return f"it was not written by torch.save, or it is damaged ({type(e).__name__})"


def _load_weights(model: GPT, state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Copy a checkpoint's weights into model; CheckpointError, not torch's, if they do not fit."""
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # as torch.compile names them
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
    config = GPTConfig.from_dict(ckpt["model_config"])
    model = GPT(config)
    _load_weights(model, ckpt["model"], path)
    model.to(device).eval()
    tok = ckpt.get("tokenizer")
    return model, (CharTokenizer.from_dict(tok) if tok is not None else None)


def resume_trainer(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Put a Trainer in the state saved at `path`, so its next step is the one the saved run would take."""
    ckpt = load_checkpoint(path)
    saved = ckpt["model_config"]
    current = trainer.model.config.to_dict()
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
    saved_tok, tok = ckpt.get("tokenizer"), trainer.tokenizer
    if saved_tok is not None and tok is not None and CharTokenizer.from_dict(saved_tok) != tok:
        raise CheckpointError(
            f"the checkpoint {path} was trained with a different tokenizer ({len(saved_tok['chars'])} "
            f"characters) than this trainer's ({tok.vocab_size}): the token ids would mean other characters."
        )
    if ckpt.get("optimizer") is None or ckpt.get("rng_state") is None:
        raise CheckpointError(
            f"{path} holds a model but no training state (optimizer, random generators); it can be "
            "loaded with load_model() but not resumed."
        )
    saved_cfg = ckpt.get("train_config") or {}
    changed = sorted(
        k
        for k, v in trainer.config.to_dict().items()
        if k not in _BOOKKEEPING and k in saved_cfg and saved_cfg[k] != v
    )
    if changed:
        logger.warning(
            "resuming %s with changed training settings %s: the run will not match an uninterrupted one.",
            path,
            changed,
        )
    _load_weights(getattr(trainer.model, "_orig_mod", trainer.model), ckpt["model"], path)
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.step = ckpt["step"]
    trainer.history = list(ckpt["history"])
    if trainer.tokenizer is None and saved_tok is not None:
        trainer.tokenizer = CharTokenizer.from_dict(saved_tok)
    trainer.set_rng_state(ckpt["rng_state"])
    if trainer.grad_scaler is not None and ckpt.get("grad_scaler") is not None:
        trainer.grad_scaler.load_state_dict(ckpt["grad_scaler"])
