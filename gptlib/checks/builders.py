"""The trusted objects a check hands the learner's code, built on the learner's side of the boundary.

Every builder a `learner.Spec` may name is registered here, and only here: a generator, an empty
dict, gptlib's config, GPT and attention, an SGD over a model's named parameters, Hugging Face's
GPT-2, and two fixtures of the lessons' checks (lesson 06's model with misleading names, lesson
08's GPT that records what it is fed). The grader's sandboxed worker imports this module and
learner.py, and nothing else of gptlib.checks: no check logic and no answer is here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from gptlib.checks.learner import register


def _lazy(path: str) -> Any:
    """A builder imported when first used: 'gptlib.model:GPT' (a worker may withhold later lessons)."""

    def build(*args: Any, **kwargs: Any) -> Any:
        module, name = path.split(":")
        return getattr(__import__(module, fromlist=[name]), name)(*args, **kwargs)

    return build


def _sgd(model: nn.Module, groups: list[tuple[list[str], float]], lr: float) -> torch.optim.Optimizer:
    """SGD over `model`'s parameters in groups of (names, weight_decay)."""
    params = dict(model.named_parameters())
    return torch.optim.SGD(
        [{"params": [params[n] for n in names], "weight_decay": wd} for names, wd in groups], lr=lr
    )


def _gpt2(**config: Any) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(**config, attn_implementation="eager"))  # eager: it returns the maps


class SubLinear(nn.Linear):
    """A subclass of nn.Linear: a split by isinstance decays its weight, one by exact type misses it."""


class OddNames(nn.Module):
    """Lesson 06: a model with module types and names that gptlib's GPT lacks.

    Its names mislead a split by name ('emb_proj' and 'ln_gate' are Linear layers, 'norm' and
    'final' are LayerNorms, 'vocab' and 'segment' are embedding tables); the split must go by type.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vocab = nn.Embedding(7, 8)
        self.segment = nn.Embedding(3, 8)
        self.pos_emb = nn.Parameter(torch.zeros(1, 5, 8))  # at the root, as in minGPT
        self.layers = nn.ModuleDict(
            {
                "norm": nn.LayerNorm(8, bias=False),
                "mix": nn.Linear(8, 8, bias=False),
                "up": SubLinear(8, 16),
                "emb_proj": nn.Linear(16, 8),
                "ln_gate": nn.Linear(8, 8),
            }
        )
        self.seq = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8))
        self.final = nn.LayerNorm(8)
        self.out = nn.Linear(8, 7, bias=False)


def recording_gpt(config: Any) -> nn.Module:
    """Lesson 08: gptlib's GPT that records what every forward pass is fed, in `fed`: (ids, the id of the
    cache or None, positions already cached); its finished `generate` refuses to run (and sets
    `generate_called`)."""
    from gptlib.model import GPT

    model = GPT(config)
    model.fed, model.generate_called = [], False

    def record(module: nn.Module, args: tuple, kwargs: dict) -> None:
        idx = args[0] if args else kwargs.get("idx")
        cache = kwargs.get("cache", args[2] if len(args) > 2 else None)
        if type(idx) is torch.Tensor:
            model.fed.append(
                (idx.detach().clone(), id(cache) if cache is not None else None, getattr(cache, "length", 0))
            )

    def refuse(*args: Any, **kwargs: Any) -> None:
        model.generate_called = True
        raise RuntimeError("model.generate is gptlib's finished version: write the loop yourself")

    model.register_forward_pre_hook(record, with_kwargs=True)
    model.generate = refuse  # an instance attribute shadows the method
    return model


for _kind, _builder in {
    "dict": dict,
    "Generator": lambda seed: torch.Generator().manual_seed(seed),
    "GPTConfig": _lazy("gptlib.config:GPTConfig"),
    "GPT": _lazy("gptlib.model:GPT"),
    "CausalSelfAttention": _lazy("gptlib.attention:CausalSelfAttention"),
    "SGD": _sgd,
    "GPT2LMHeadModel": _gpt2,
    "lesson06:OddNames": OddNames,
    "lesson08:RecordingGPT": recording_gpt,
}.items():
    register(_kind, _builder)
