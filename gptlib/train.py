"""Trainer: the loop that fits a GPT to a stream of token ids, and the settings it runs with.

One step is minGPT's: a random batch of (B, T) windows, forward, loss, backward,
clip the gradient norm, AdamW update, with a learning rate that warms up and
then follows a cosine down to `min_lr` (see `lr_at`). Every `eval_interval`
steps the mean loss over `eval_iters` batches of the training and validation
data is measured in eval mode (no dropout).

Runs are reproducible: `seed` seeds a dedicated generator for the batches and
torch's global generator (which dropout draws from). `Trainer.state_dict()`
holds both generators' states, the optimizer's, the step and the history; a
checkpoint (checkpoint.py) stores it beside the weights, so a resumed run goes on
with exactly the losses an uninterrupted one would have had.

Taught in lesson 06: lessons/06_training_and_sampling.ipynb.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gptlib import distributed
from gptlib.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from gptlib.config import FrozenConfig
from gptlib.data import get_batch
from gptlib.device import pick_device
from gptlib.model import (
    BETAS,
    GPT,
    LEARNING_RATE,
    WEIGHT_DECAY,
    check_optimizer_args,
    current_name,
    former_name,
)
from gptlib.tokenizer import CharTokenizer

# A callback is called as callback(trainer, event) with event "step" after every
# optimizer step and "eval" after every evaluation; it may call trainer.stop().
Callback = Callable[["Trainer", str], Any]

logger = logging.getLogger(__name__)

# TrainConfig.seed seeds torch's global generator (dropout); the batches and the evaluation
# batches get generators of their own, seeded at these offsets so no two streams are the same.
_BATCH_SEED_OFFSET = 1
_EVAL_SEED_OFFSET = 2

# TrainConfig fields that say where and how a run reports, not what it computes.
_BOOKKEEPING = {"progress", "log", "checkpoint_path", "resume_from", "device"}


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """The settings of a training run; checked when made, and frozen (change a copy with `replace`).

    learning_rate is the peak: it rises linearly over warmup_iters steps, then
    decays along a cosine to min_lr at lr_decay_iters (None: at max_iters) and
    stays there. decay_lr=False keeps it at learning_rate throughout.
    weight_decay, learning_rate and betas default to GPT.configure_optimizers' (model.py).
    grad_clip=None turns clipping off; eval_interval=None turns evaluation off.
    With checkpoint_path set, a checkpoint is written (atomically) at every
    evaluation and at the end; resume_from continues a run from a checkpoint.
    compile=True trains through torch.compile(model); it is off by default because on a
    laptop CPU compiling costs more time than it saves (see bench/README.md).
    """

    max_iters: int = 2000
    batch_size: int = 12
    learning_rate: float = LEARNING_RATE
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None
    decay_lr: bool = True
    weight_decay: float = WEIGHT_DECAY
    betas: tuple[float, float] = BETAS
    grad_clip: float | None = 1.0
    eval_interval: int | None = 250
    eval_iters: int = 20
    seed: int = 1337
    device: str = "cpu"
    compile: bool = False
    progress: bool = True
    log: bool = False
    checkpoint_path: str | None = None
    resume_from: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # as a dict read back from JSON has it
            object.__setattr__(self, "betas", tuple(self.betas))
        _whole("max_iters", self.max_iters, minimum=0)
        _whole("batch_size", self.batch_size, minimum=1)
        _whole("warmup_iters", self.warmup_iters, minimum=0)
        _whole("eval_iters", self.eval_iters, minimum=1)
        _whole("seed", self.seed, minimum=0)
        if self.lr_decay_iters is not None:
            _whole("lr_decay_iters", self.lr_decay_iters, minimum=1)
        if self.eval_interval is not None:
            _whole("eval_interval", self.eval_interval, minimum=1, hint=" Use None for no evaluation.")
        check_optimizer_args(self.weight_decay, self.learning_rate, self.betas, owner="TrainConfig.")
        if isinstance(self.min_lr, bool) or not isinstance(self.min_lr, (int, float)) or not self.min_lr >= 0:
            raise ValueError(f"TrainConfig.min_lr must be a number >= 0, got {self.min_lr!r}.")
        if self.decay_lr and self.min_lr > self.learning_rate:
            raise ValueError(
                f"TrainConfig.min_lr ({self.min_lr}) is above learning_rate ({self.learning_rate}): the "
                "schedule decays from learning_rate down to min_lr. Lower min_lr or set decay_lr=False."
            )
        if self.grad_clip is not None and (
            isinstance(self.grad_clip, bool)
            or not isinstance(self.grad_clip, (int, float))
            or self.grad_clip <= 0
        ):
            raise ValueError(
                f"TrainConfig.grad_clip must be a positive norm, or None for no clipping; "
                f"got {self.grad_clip!r}."
            )
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile must be True or False, got {self.compile!r}.")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"TrainConfig.device must be a name like 'cpu', 'cuda' or 'auto'; got {self.device!r}."
            )


def _whole(name: str, value: Any, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"TrainConfig.{name} must be a whole number, got {value!r}.{hint}")
    if value < minimum:
        raise ValueError(f"TrainConfig.{name} must be >= {minimum}, got {value}.{hint}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr.

    Warmup starts small rather than at 0, so the first step already moves the
    weights: step s < warmup_iters gets learning_rate * (s + 1) / (warmup_iters + 1).
    A run shorter than its warmup never leaves it.
    """
    if not cfg.decay_lr:
        return cfg.learning_rate
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    end = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else cfg.max_iters
    if step >= end:
        return cfg.min_lr
    progress = (step - cfg.warmup_iters) / (end - cfg.warmup_iters)  # 0 -> 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


@torch.no_grad()
def estimate_loss(
    model: GPT,
    data: torch.Tensor,
    batch_size: int,
    eval_iters: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> float:
    """The mean loss over eval_iters random batches of `data`, in eval mode (no dropout).

    The model is put back in the mode it was in. A generator seeded the same way
    each time gives the same batches, so successive estimates differ only by the model.
    """
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for _ in range(eval_iters):
            x, y = get_batch(data, model.block_size, batch_size, generator=generator, device=device)
            _, loss = model(x, y)
            total += loss.item()
    finally:
        model.train(was_training)
    return total / eval_iters


class Trainer:
    """Trains `model` on 1-D LongTensors of token ids; `run()` returns the history.

    history is a list with one dict per optimizer step: {"step", "lr", "train_loss"}
    (step counts completed steps, from 1), plus "eval_train_loss" and "val_loss"
    on the steps after which an evaluation ran. Pass `tokenizer` to store it in
    checkpoints, so `load_model` can give it back.
    """

    def __init__(
        self,
        model: GPT,
        train_data: torch.Tensor,
        val_data: torch.Tensor | None = None,
        config: TrainConfig | None = None,
        callbacks: Sequence[Callback] = (),
        tokenizer: CharTokenizer | None = None,
    ) -> None:
        if not isinstance(model, GPT):
            raise ValueError(f"Trainer trains a gptlib GPT, got {type(model).__name__}.")
        config = config if config is not None else TrainConfig()
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}.")
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if data is not None:
                _check_data(name, data, model.block_size)
        self.config = config
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        # Under torchrun each process trains on its slice of every batch, through DDP (gptlib/distributed.py);
        # train_model is what the training step calls: the model, maybe wrapped in DDP and compiled.
        self.dist = distributed.current()
        distributed.check_batch_size(config.batch_size, self.dist)
        self.train_model = distributed.wrap(self.model, self.dist)
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        self.train_data = train_data
        self.val_data = val_data
        self.tokenizer = tokenizer
        self.callbacks = list(callbacks)
        self.optimizer = model.configure_optimizers(config.weight_decay, config.learning_rate, config.betas)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.train_time = 0.0  # seconds spent in run(), evaluations included
        self._stop_reason: str | None = None
        self._saved_step: int | None = None
        # Batches come from their own generator, so nothing else that draws random numbers
        # (sampling in a callback, say) changes which batches the run sees.
        self.batch_generator = torch.Generator().manual_seed(config.seed + _BATCH_SEED_OFFSET)
        torch.manual_seed(config.seed)  # dropout draws from the global generator
        if config.resume_from is not None:
            self.resume(config.resume_from)

    # --- control ------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped by a callback") -> None:
        """Ask the loop to end after the current step (call it from a callback)."""
        self._stop_reason = reason

    @property
    def stop_reason(self) -> str | None:
        """Why the last run() ended early, or None if it ran to max_iters."""
        return self._stop_reason

    # --- evaluation ---------------------------------------------------------------------------

    def estimate_loss(self) -> dict[str, float]:
        """{"train": ..., "val": ...}: mean losses over eval_iters batches, the same batches every time."""
        cfg = self.config
        out = {}
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if data is None:
                continue
            gen = torch.Generator().manual_seed(cfg.seed + _EVAL_SEED_OFFSET)
            out[split] = estimate_loss(self.model, data, cfg.batch_size, cfg.eval_iters, gen, self.device)
        return out

    # --- the loop -----------------------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on one random batch; returns (and records) its history entry."""
        cfg = self.config
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        x, y = get_batch(
            self.train_data,
            self.model.block_size,
            cfg.batch_size,
            generator=self.batch_generator,
            device=self.device,
        )
        # This process's rows of the global batch (all of them in a single process).
        x, y = distributed.shard(x, self.dist), distributed.shard(y, self.dist)
        _, loss = self.train_model(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        loss = distributed.mean_across(loss.detach(), self.dist)  # the loss of the whole global batch
        entry = {"step": self.step, "lr": lr, "train_loss": loss.item()}
        self.history.append(entry)
        return entry

    def run(self) -> list[dict[str, Any]]:
        """Train from the current step up to config.max_iters (or until a callback stops it)."""
        cfg = self.config
        self._stop_reason = None
        bar = tqdm(
            total=cfg.max_iters,
            initial=self.step,
            disable=not cfg.progress or not self.dist.is_main,
            desc="training",
            unit="step",
            mininterval=1.0,  # fewer redraws: a notebook's output stream stays light on long runs
        )
        start = time.perf_counter()
        try:
            while self.step < cfg.max_iters and self._stop_reason is None:
                entry = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{entry['train_loss']:.4f}", refresh=False)
                self._notify("step")
                last = self.step == cfg.max_iters
                due = cfg.eval_interval is not None and (self.step % cfg.eval_interval == 0 or last)
                if due:
                    self._evaluate(entry, bar)
        finally:
            self.train_time += time.perf_counter() - start
            bar.close()
        if cfg.checkpoint_path is not None and self._saved_step != self.step:
            # the end of the run (also of one a callback stopped), unless an evaluation just saved it
            self.save_checkpoint(cfg.checkpoint_path)
        return self.history

    def _evaluate(self, entry: dict[str, Any], bar: Any) -> None:
        losses = self.estimate_loss()
        entry["eval_train_loss"] = losses["train"]
        if "val" in losses:
            entry["val_loss"] = losses["val"]
        if self.config.log and self.dist.is_main:
            val = f", val loss {losses['val']:.4f}" if "val" in losses else ""
            bar.write(f"step {self.step}: train loss {losses['train']:.4f}{val}, lr {entry['lr']:.2e}")
        if self.config.checkpoint_path is not None:
            self.save_checkpoint(self.config.checkpoint_path)
        self._notify("eval")

    def _notify(self, event: str) -> None:
        for callback in self.callbacks:
            callback(self, event)

    # --- checkpoints --------------------------------------------------------------------------

    def rng_state(self) -> dict[str, Any]:
        """The random generators' states, as tensors: what a resumed run needs to draw the same numbers."""
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "batch": self.batch_generator.get_state()}
        if self.device.type == "cuda":  # dropout on a GPU draws from the GPU's generator
            state["cuda"] = torch.cuda.get_rng_state_all()
        elif self.device.type == "mps":
            state["mps"] = torch.mps.get_rng_state()
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore the generators from rng_state()'s dict."""
        torch.set_rng_state(state["torch"])
        self.batch_generator.set_state(state["batch"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda"])
        elif "mps" in state and self.device.type == "mps":
            torch.mps.set_rng_state(state["mps"])

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs, as plain data: what a checkpoint stores."""
        return {
            "step": self.step,
            "history": list(self.history),
            "train_config": self.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_params": self._optimizer_param_names(),
            "rng_state": self.rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take up a state_dict(): the next step is the one the saved run would have taken (weights apart)."""
        saved_cfg = state.get("train_config") or {}
        changed = sorted(
            k
            for k, v in self.config.to_dict().items()
            if k not in _BOOKKEEPING and k in saved_cfg and saved_cfg[k] != v
        )
        if changed:
            logger.warning(
                "resuming with changed training settings %s: the run will not match an uninterrupted one.",
                changed,
            )
        self._load_optimizer_state(state["optimizer"], state.get("optimizer_params"))
        self.step = state["step"]
        self.history = list(state["history"])
        self.set_rng_state(state["rng_state"])

    def _optimizer_param_names(self) -> list[list[str]]:
        """Each optimizer group's parameters by name, in the group's order (the order its state lists them)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        return [[names[id(p)] for p in group["params"]] for group in self.optimizer.param_groups]

    def _load_optimizer_state(self, state: dict[str, Any], saved_names: list[list[str]] | None) -> None:
        # torch matches an optimizer's state to parameters by position; match by name instead, so a
        # state stays with its parameter whatever order the groups list them in.
        now = self._optimizer_param_names()
        if saved_names is None:  # format 1 listed each group sorted by the names of the time
            saved_names = [sorted(group, key=former_name) for group in now]
        saved_names = [[current_name(n) for n in group] for group in saved_names]
        if [sorted(g) for g in saved_names] != [sorted(g) for g in now]:
            raise CheckpointError(
                "the saved optimizer state is for other parameters than this model's: "
                f"{sorted(set().union(*saved_names) ^ set().union(*now))[:6]}."
            )
        groups = []
        for saved_group, names, current in zip(state["param_groups"], saved_names, now, strict=True):
            position = dict(zip(names, saved_group["params"], strict=True))
            groups.append({**saved_group, "params": [position[n] for n in current]})
        self.optimizer.load_state_dict({**state, "param_groups": groups})

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the weights, the tokenizer and state_dict() to one file, atomically."""
        written = Path(path)
        if self.dist.is_main:  # with several processes, rank 0 writes and the others wait for it
            written = save_checkpoint(path, self.model, tokenizer=self.tokenizer, trainer=self.state_dict())
        distributed.barrier(self.dist)
        self._saved_step = self.step
        return written

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: its weights, and the step, history, optimizer and RNG states."""
        ckpt = load_checkpoint(path)
        saved_tok, tok = ckpt.get("tokenizer"), self.tokenizer
        if saved_tok is not None and tok is not None and CharTokenizer.from_dict(saved_tok) != tok:
            raise CheckpointError(
                f"the checkpoint {path} was trained with a different tokenizer ({len(saved_tok['chars'])} "
                f"characters) than this trainer's ({tok.vocab_size}): the token ids would mean other characters."
            )
        if ckpt["trainer"] is None:
            raise CheckpointError(
                f"{path} holds a model but no training state (optimizer, random generators); it can be "
                "loaded with load_model() but not resumed."
            )
        load_weights(self.model, ckpt, path)
        self.load_state_dict(ckpt["trainer"])
        if self.tokenizer is None and saved_tok is not None:
            self.tokenizer = CharTokenizer.from_dict(saved_tok)
        self._saved_step = self.step  # the file on disk already holds this state


def _check_data(name: str, data: Any, block_size: int) -> None:
    if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.dtype != torch.long:
        what = (
            f"a {tuple(data.shape)} {data.dtype} tensor"
            if isinstance(data, torch.Tensor)
            else type(data).__name__
        )
        raise ValueError(
            f"{name} must be a 1-D torch.long tensor of token ids, got {what}. "
            "Encode the text with tokenizer.encode_tensor(text)."
        )
    if data.numel() <= block_size:
        raise ValueError(
            f"{name} has {data.numel()} tokens, but one training window needs block_size + 1 = "
            f"{block_size + 1}. Use more text or a smaller block_size."
        )
