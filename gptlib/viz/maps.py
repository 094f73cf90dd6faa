"""Attention maps from any source, as one (L, H, T, T) array, and token labels that can be read.

The plots and the explorer draw from a float32 numpy array of shape
(n_layer, n_head, T, T): maps[l, h, q, k] is how much query position q
attends to key position k in head h of layer l. This file makes that array
from what a learner has at hand:

- a gptlib GPT, or any model with an `attention_maps(idx)` method that returns
  one (B, n_head, T, T) tensor per layer;
- a learner's own model whose attention modules take a `return_weights`
  argument and then return `(y, weights)` with weights (B, n_head, T, T), like
  gptlib's CausalSelfAttention: forward hooks switch the weights on and catch
  them, so the model needs no other change;
- tensors: one (L, H, T, T) tensor or array, or a list of per-layer (H, T, T)
  or (1, H, T, T) tensors.

Every path checks its input, because a wrong shape or pre-softmax scores would
otherwise draw a plausible but meaningless picture.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

# Whitespace drawn as a visible glyph (all present in DejaVu Sans, matplotlib's default font).
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "\\r"}
_TOLERANCE = 1e-4  # float32 softmax outputs can overshoot 0..1 by rounding


def visible_token(token: str) -> str:
    """The token with whitespace and control characters made visible: ' ' -> '␣', '\\n' -> '⏎'."""
    if token == "":
        return "∅"
    out = []
    for c in token:
        if c in VISIBLE:
            out.append(VISIBLE[c])
        elif not c.isprintable():
            out.append(repr(c)[1:-1])  # e.g. '\x00'
        else:
            out.append(c)
    return "".join(out)


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Tick labels for a list of token strings (whitespace made visible)."""
    if isinstance(tokens, str):
        return [visible_token(c) for c in tokens]  # a string is read as one token per character
    labels = []
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise ValueError(f"token {i} is {t!r} ({type(t).__name__}); tokens must be strings.")
        labels.append(visible_token(t))
    return labels


def block_size_of(model: nn.Module) -> int | None:
    """The longest context a model accepts, if it says: config.block_size, block_size or get_block_size()."""
    config = getattr(model, "config", None)
    if isinstance(getattr(config, "block_size", None), int):
        return config.block_size
    if isinstance(getattr(model, "block_size", None), int):
        return model.block_size
    if callable(getattr(model, "get_block_size", None)):
        return int(model.get_block_size())
    return None


def encode_prompt(prompt: str, tokenizer: Any, block_size: int | None = None) -> tuple[list[int], list[str]]:
    """(token ids, tick labels) of a prompt; ValueError if it is empty, unencodable or too long."""
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be a str, got {type(prompt).__name__}.")
    if not prompt:
        raise ValueError("the prompt is empty: type at least one character.")
    if not callable(getattr(tokenizer, "encode", None)):
        raise ValueError(
            f"the tokenizer must have an encode(str) -> list[int] method; got {type(tokenizer).__name__}."
        )
    try:
        ids = [int(i) for i in tokenizer.encode(prompt)]
    except KeyError as e:  # a plain dict lookup, as in a hand-written stoi[c] tokenizer
        raise ValueError(
            f"the prompt has a character the tokenizer does not know: {e.args[0]!r}. "
            "Use only characters from the training text."
        ) from None
    if not ids:
        raise ValueError(f"the tokenizer turned the prompt {prompt!r} into no tokens.")
    if block_size is not None and len(ids) > block_size:
        raise ValueError(
            f"the prompt is {len(ids)} tokens long, but the model's block_size (longest context) is "
            f"{block_size}. Shorten it to at most {block_size} tokens, e.g. prompt[-{block_size}:]."
        )
    if callable(getattr(tokenizer, "decode", None)):
        labels = token_labels([tokenizer.decode([i]) for i in ids])
    else:
        labels = [str(i) for i in ids]
    return ids, labels


def as_maps(maps: Any) -> np.ndarray:
    """Check and convert attention weights to a float32 array (L, H, T, T).

    Accepts a tensor or array (L, H, T, T), or a list/tuple of per-layer (H, T, T)
    or (1, H, T, T) tensors (what GPT.attention_maps returns for one prompt).
    """
    if isinstance(maps, (list, tuple)):
        if not maps:
            raise ValueError("got an empty list of attention maps; expected one (H, T, T) tensor per layer.")
        layers = []
        for i, m in enumerate(maps):
            a = _to_numpy(m, f"layer {i}")
            if a.ndim == 4 and a.shape[0] == 1:
                a = a[0]
            elif a.ndim == 4:
                raise ValueError(
                    f"layer {i} holds a batch of {a.shape[0]} prompts {a.shape}; pick one, "
                    "e.g. [m[0] for m in maps]."
                )
            if a.ndim != 3:
                raise ValueError(
                    f"layer {i} has shape {a.shape}; each layer must be (H, T, T) or (1, H, T, T)."
                )
            layers.append(a)
        shapes = {a.shape for a in layers}
        if len(shapes) > 1:
            raise ValueError(
                f"the layers' maps differ in shape: {sorted(shapes)}; they must all be (H, T, T)."
            )
        arr = np.stack(layers)
    else:
        arr = _to_numpy(maps, "attention maps")
        if arr.ndim != 4:
            hint = {
                2: " That is one head's map (T, T): draw it with plot_attention, or use w[None, None].",
                3: " That looks like one layer (H, T, T): wrap it in a list, [w], or use w[None].",
                5: " That looks like a batch: pick one prompt, e.g. maps[:, 0].",
            }.get(arr.ndim, "")
            raise ValueError(
                f"attention maps must have rank 4, (layers, heads, T, T); got rank {arr.ndim}, "
                f"shape {arr.shape}.{hint}"
            )
    L, H, Tq, Tk = arr.shape
    if Tq != Tk or Tq == 0 or L == 0 or H == 0:
        raise ValueError(
            f"attention maps must be (layers, heads, T, T) with T query rows and T key columns; "
            f"got shape {arr.shape}."
        )
    _check_weights(arr)
    return arr


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    elif not isinstance(x, np.ndarray):
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{what} must hold numbers, got dtype {x.dtype}.")
    return np.asarray(x, dtype=np.float32)


def _check_weights(arr: np.ndarray) -> None:
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"the attention weights contain NaN or inf (first at layer, head, query, key = {where}). "
            "A softmax over a row that is all -inf gives NaN: is a whole row masked?"
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
        raise ValueError(
            f"attention weights must be probabilities in 0..1 (after the softmax); these range from "
            f"{lo:.3g} to {hi:.3g}. Did you pass the scores q.k before the softmax?"
        )


# --- from a model ---------------------------------------------------------------------------------


def _takes_return_weights(module: nn.Module) -> bool:
    try:
        return "return_weights" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The model's attention modules: those whose forward takes `return_weights`, innermost only.

    gptlib's Block also takes return_weights (to pass it on), so a module counts
    only if none of its own submodules takes it.
    """
    found = [m for m in model.modules() if m is not model and _takes_return_weights(m)]
    return [m for m in found if not any(_takes_return_weights(c) for c in m.modules() if c is not m)]


def model_attention(model: nn.Module, idx: torch.Tensor) -> np.ndarray:
    """The (L, H, T, T) attention weights of a model on one prompt idx (1, T), without dropout.

    Uses model.attention_maps(idx) if the model has it; otherwise hooks its
    attention modules (see attention_modules). The model runs in eval mode and
    without gradients; every module's train/eval mode is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch nn.Module, got {type(model).__name__}.")
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(0) != 1:
        got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be one prompt of token ids with shape (1, T), got {got}.")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            if callable(getattr(model, "attention_maps", None)):
                maps = model.attention_maps(idx)
            else:
                maps = _hooked_attention(model, idx)
    finally:
        for m, training in modes.items():
            m.training = training
    return as_maps(maps)


def _hooked_attention(model: nn.Module, idx: torch.Tensor) -> list[torch.Tensor]:
    modules = attention_modules(model)
    if not modules:
        raise ValueError(
            f"cannot find attention weights in {type(model).__name__}: give the model an "
            "attention_maps(idx) method that returns one (B, n_head, T, T) tensor per layer, or make its "
            "attention modules' forward accept return_weights=True and then return (y, weights)."
        )
    captured: list[torch.Tensor] = []
    asked: list[bool] = []  # did the caller itself ask for the weights? (then pass them on)
    handles = []

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        asked.append(bool(bound.arguments.get("return_weights", False)))
        bound.arguments["return_weights"] = True
        return bound.args, bound.kwargs

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], torch.Tensor)):
            raise ValueError(
                f"{type(module).__name__}(..., return_weights=True) must return (y, weights); "
                f"it returned {type(output).__name__}."
            )
        y, weights = output
        captured.append(weights)
        return output if asked.pop() else y

    try:
        for m in modules:
            handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(m.register_forward_hook(hook, with_kwargs=True))
        model(idx)
    finally:
        for h in handles:
            h.remove()
    for i, w in enumerate(captured):
        if w.dim() != 4:
            raise ValueError(
                f"attention module {i} returned weights of shape {tuple(w.shape)}; "
                "expected (B, n_head, T, T)."
            )
    return captured
