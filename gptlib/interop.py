"""Interop with minGPT: load the seed's checkpoints into gptlib's GPT, and write them back.

gptlib matches minGPT's first (2020) model.py, the seed: the same parameters
with the same shapes. It groups them into one module per part, so a name gains
the part it lives in (`embeddings.tok_emb.weight` here, `tok_emb.weight` in
minGPT; `head.proj.weight` here, `head.weight` there), and the MLP's Linears are
named (`mlp.fc`, `mlp.proj`) rather than numbered (`mlp.0`, `mlp.2`). The
functions below rename, check every key and shape, and load; a checkpoint that
does not fit the config is refused with a list of what differs. GPT-2 (Hugging
Face) checkpoints are handled by gptlib.gpt2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from gptlib.config import GPTConfig
from gptlib.model import FORMER_NAMES, GPT

# ---------------------------------------------------------------------------------------------------------
# minGPT (the seed's model.py): same architecture, same parameter shapes, different names.
# ---------------------------------------------------------------------------------------------------------

# Per-block names, minGPT -> gptlib, in the order minGPT's state_dict lists them (ln1, ln2, attn, mlp).
_MINGPT_BLOCK_NAMES = [
    ("ln1.weight", "ln1.weight"),
    ("ln1.bias", "ln1.bias"),
    ("ln2.weight", "ln2.weight"),
    ("ln2.bias", "ln2.bias"),
    ("attn.key.weight", "attn.key.weight"),
    ("attn.key.bias", "attn.key.bias"),
    ("attn.query.weight", "attn.query.weight"),
    ("attn.query.bias", "attn.query.bias"),
    ("attn.value.weight", "attn.value.weight"),
    ("attn.value.bias", "attn.value.bias"),
    ("attn.proj.weight", "attn.proj.weight"),
    ("attn.proj.bias", "attn.proj.bias"),
    ("mlp.0.weight", "mlp.fc.weight"),  # minGPT's MLP is nn.Sequential(Linear, GELU, Linear, Dropout)
    ("mlp.0.bias", "mlp.fc.bias"),
    ("mlp.2.weight", "mlp.proj.weight"),
    ("mlp.2.bias", "mlp.proj.bias"),
]
# Prefixes that wrappers add to every key: torch.compile (`_orig_mod.`) and DataParallel/DDP (`module.`).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def mingpt_names(n_layer: int) -> dict[str, str]:
    """minGPT parameter name -> gptlib parameter name for a model of n_layer blocks, in minGPT's order."""
    names = {"pos_emb": "embeddings.pos_emb", "tok_emb.weight": "embeddings.tok_emb.weight"}
    for i in range(n_layer):
        for theirs, ours in _MINGPT_BLOCK_NAMES:
            names[f"blocks.{i}.{theirs}"] = f"blocks.{i}.{ours}"
    names.update(
        {"ln_f.weight": "head.ln_f.weight", "ln_f.bias": "head.ln_f.bias", "head.weight": "head.proj.weight"}
    )
    return names


def _as_gpt_config(config: Any) -> GPTConfig:
    """A GPTConfig from a GPTConfig or from any object with minGPT's config attributes."""
    if isinstance(config, GPTConfig):
        return config
    sizes = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
    missing = [name for name in sizes if not hasattr(config, name)]
    if missing:
        raise ValueError(
            f"config must be a GPTConfig or a minGPT-style config with attributes {', '.join(sizes)}; "
            f"{type(config).__name__} lacks {', '.join(missing)}."
        )
    fields = {name: getattr(config, name) for name in sizes}
    for rate in ("embd_pdrop", "resid_pdrop", "attn_pdrop"):
        if hasattr(config, rate):
            fields[rate] = getattr(config, rate)
    return GPTConfig(**fields)  # the seed's GELU is the exact one, gptlib's default


def _strip_wrapper_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _sizes_found(state_dict: Mapping[str, Any]) -> str:
    """What the checkpoint's shapes say about its config, e.g. 'n_layer=2, n_embd=16, ...' (for hints)."""
    found = []
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    if layers:
        found.append(f"n_layer={max(layers) + 1}")
    tok = state_dict.get("tok_emb.weight")
    if isinstance(tok, torch.Tensor) and tok.dim() == 2:
        found += [f"vocab_size={tok.shape[0]}", f"n_embd={tok.shape[1]}"]
    pos = state_dict.get("pos_emb")
    if isinstance(pos, torch.Tensor) and pos.dim() == 3:
        found.append(f"block_size={pos.shape[1]}")
    return ", ".join(found)


def from_mingpt(state_dict: Mapping[str, torch.Tensor], config: Any) -> GPT:
    """A gptlib GPT holding the weights of a minGPT state dict (the seed's parameter layout).

    `config` is a GPTConfig, or a minGPT-style config object (vocab_size, block_size,
    n_layer, n_head, n_embd, and optionally the dropout rates). The attention `mask`
    buffers minGPT saves are not weights and are skipped. Every other key must be
    there with the right shape, and nothing else may be: otherwise ValueError lists
    the differences. n_head changes no shape, so it cannot be checked: it must match
    the one the checkpoint was trained with. The model is returned in eval mode.
    """
    config = _as_gpt_config(config)
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"state_dict must be a mapping of names to tensors (e.g. torch.load(path)), "
            f"got {type(state_dict).__name__}."
        )
    theirs = _strip_wrapper_prefix(state_dict)
    theirs = {k: v for k, v in theirs.items() if not re.fullmatch(r"blocks\.\d+\.attn\.mask", k)}

    model = GPT(config)
    ours = model.state_dict()
    names = mingpt_names(config.n_layer)
    missing = [k for k in names if k not in theirs]
    unexpected = [k for k in theirs if k not in names]
    mismatched = []
    for k, ours_name in names.items():
        v = theirs.get(k)
        if k in theirs and (not isinstance(v, torch.Tensor) or v.shape != ours[ours_name].shape):
            found = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            mismatched.append(f"{k}: expected {tuple(ours[ours_name].shape)}, found {found}")
    if missing or unexpected or mismatched:
        raise ValueError(_mismatch_message(config, theirs, missing, unexpected, mismatched))

    model.load_state_dict({ours_name: theirs[k] for k, ours_name in names.items()}, strict=True)
    return model.eval()


def _mismatch_message(
    config: GPTConfig,
    theirs: Mapping[str, Any],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    def listed(keys: list[str], limit: int = 8) -> str:
        more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    lines = [
        f"The minGPT state dict does not fit GPTConfig(vocab_size={config.vocab_size}, "
        f"block_size={config.block_size}, n_layer={config.n_layer}, n_head={config.n_head}, "
        f"n_embd={config.n_embd})."
    ]
    if missing:
        lines.append(f"Missing keys ({len(missing)}): {listed(missing)}")
    if unexpected:
        lines.append(f"Unexpected keys ({len(unexpected)}): {listed(unexpected)}")
    if mismatched:
        lines.append(f"Shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:8])}")
    found = _sizes_found(theirs)
    if found:
        lines.append(
            f"The checkpoint's shapes suggest {found}: check n_layer, n_embd, vocab_size and "
            "block_size in the config."
        )
    if any(k.startswith(("embeddings.", "head.ln_f", *FORMER_NAMES)) for k in theirs):
        lines.append("These look like gptlib's own names: load them with GPT(config).load_state_dict(...).")
    elif any(k.startswith(("transformer.", "h.", "wte.")) for k in theirs):
        lines.append("These look like GPT-2 (Hugging Face) names: load them with gptlib.gpt2.from_hf_gpt2.")
    return "\n".join(lines)


def to_mingpt(model: GPT) -> dict[str, torch.Tensor]:
    """model's weights under minGPT's names, with the float tril `mask` buffers minGPT saves in each block.

    The tensors share memory with the model, like model.state_dict(); the result
    loads into the seed's GPT with load_state_dict(strict=True), and back into
    gptlib with from_mingpt.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"to_mingpt needs a gptlib GPT, got {type(model).__name__}.")
    ours = model.state_dict()
    bs = model.config.block_size
    out: dict[str, torch.Tensor] = {}
    for theirs, ours_name in mingpt_names(model.config.n_layer).items():
        if theirs.endswith("attn.key.weight"):
            # minGPT registers the mask before the layers, so its state_dict lists it first in each attn.
            device = ours[ours_name].device
            mask = torch.tril(torch.ones(bs, bs, device=device)).view(1, 1, bs, bs)
            out[theirs.replace("key.weight", "mask")] = mask
        out[theirs] = ours[ours_name]
    return out
