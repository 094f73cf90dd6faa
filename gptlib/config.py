"""GPTConfig: every size and rate that defines a GPT, checked once, when it is made, and frozen.

The fields follow minGPT's GPTConfig (vocab_size, block_size, n_layer, n_head,
n_embd and the three dropout rates). Presets give names to the sizes that
minGPT and the GPT papers use, so `GPTConfig.preset("gpt-micro", ...)` means
the same model everywhere in the course.

FrozenConfig is what GPTConfig and TrainConfig (train.py) share: frozen
dataclasses, checked in `__post_init__`, with one `replace` / `to_dict` /
`from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

# name -> (n_layer, n_head, n_embd). The GPT-2 sizes are those of OpenAI's
# checkpoints; the small ones are minGPT's ("gpt-mini" and below train on a CPU).
PRESETS: dict[str, tuple[int, int, int]] = {
    "gpt1": (12, 12, 768),  # the seed's GPT1Config, ~117M parameters with its vocabulary
    "openai-gpt": (12, 12, 768),
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    "gopher-44m": (8, 16, 512),
    "gpt-mini": (6, 6, 192),
    "gpt-micro": (4, 4, 128),
    "gpt-nano": (3, 3, 48),
}

GELU_KINDS = ("none", "tanh")

C = TypeVar("C", bound="FrozenConfig")


class FrozenConfig:
    """What gptlib's config dataclasses share: they are frozen, and copy and serialise the same way.

    A subclass is a `@dataclass(frozen=True)` that checks its fields in
    `__post_init__`, so a config that exists is a valid one: nothing that
    receives it needs to check it again, and nothing can change it afterwards
    (make a changed copy with `replace`).
    """

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what checkpoints store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """A config from to_dict()'s dict; ValueError names any field this class does not have."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}.")
        return cls(**d)


@dataclass(frozen=True)
class GPTConfig(FrozenConfig):
    """The hyperparameters of a GPT, checked when it is made (ValueError saying what to change).

    vocab_size: number of distinct tokens; block_size: the longest context the
    model can see (its learned position table has this many rows); n_layer
    blocks, each with n_head attention heads over n_embd channels.
    gelu_approximate="tanh" gives GPT-2's activation; the default is the exact
    GELU that the seed (and torch's nn.GELU) uses.
    """

    vocab_size: int
    block_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    gelu_approximate: str = "none"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"GPTConfig.{name} must be a whole number, got {value!r}.")
            if value <= 0:
                raise ValueError(f"GPTConfig.{name} must be positive, got {value}.")
        if self.n_embd % self.n_head != 0:
            lower = self.n_embd // self.n_head * self.n_head
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each head "
                f"gets n_embd // n_head channels. Try n_embd={lower or self.n_head} or an n_head "
                f"that divides {self.n_embd}."
            )
        for name in ("embd_pdrop", "resid_pdrop", "attn_pdrop"):
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(
                    f"GPTConfig.{name} is a dropout probability and must be in [0, 1), got {p!r}. "
                    "Use 0.0 for no dropout."
                )
        if self.gelu_approximate not in GELU_KINDS:
            raise ValueError(
                f"GPTConfig.gelu_approximate must be one of {GELU_KINDS}, got {self.gelu_approximate!r}."
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"GPTConfig.layer_norm_eps must be positive, got {self.layer_norm_eps!r}.")

    @property
    def head_size(self) -> int:
        """Channels per attention head."""
        return self.n_embd // self.n_head

    @classmethod
    def preset(cls, name: str, vocab_size: int, block_size: int, **overrides: Any) -> GPTConfig:
        """A config with the layer/head/width of a named model, e.g. "gpt-micro"."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
        n_layer, n_head, n_embd = PRESETS[name]
        sizes = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        sizes.update(overrides)
        return cls(vocab_size=vocab_size, block_size=block_size, **sizes)
