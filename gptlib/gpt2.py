"""GPT-2 is a gptlib GPT: load OpenAI's GPT-2 weights (as Hugging Face stores them) into one, and back.

GPT-2 computes exactly what gptlib's GPT computes (pre-LayerNorm blocks, learned
positions, biases in every Linear and LayerNorm). Only the storage differs:

- Conv1D: Hugging Face's GPT-2 keeps each linear layer's weight as (in, out), the
  transpose of nn.Linear's (out, in).
- c_attn: query, key and value are one fused (C, 3C) projection; gptlib has three
  Linear layers (query, key, value), so the matrix is split in that order.
- Tied embeddings: GPT-2's output layer reuses the token embedding wte. gptlib's
  head is a Linear of its own, so the converted model gets a *copy* of wte there:
  equal at conversion, untied afterwards (see from_hf_gpt2 for why).
- GELU: GPT-2 uses the tanh approximation ("gelu_new") -> gelu_approximate="tanh";
  layer_norm_epsilon -> layer_norm_eps; n_positions -> block_size.

Names: wte -> embeddings.tok_emb, wpe -> embeddings.pos_emb, h.i.ln_1/ln_2 -> blocks.i.ln1/ln2,
attn.c_proj -> attn.proj, mlp.c_fc/c_proj -> mlp.fc/proj, ln_f -> head.ln_f, lm_head -> head.proj.

The conversion needs only torch. `transformers` is needed for to_hf_gpt2 and for
the downloads (from_pretrained, gpt2_tokenizer), which go through huggingface_hub
and its cache: online once, offline afterwards. Install them with
`pip install "gptlib-course[gpt2]"`.

Taught in lesson 09: lessons/09_gpt2.ipynb.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.tokenizer import checked_ids

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

INSTALL_HINT = 'pip install "gptlib-course[gpt2]"'

# Short names -> Hugging Face Hub repositories. All use GPT-2's tokenizer.
PRETRAINED: dict[str, str] = {
    "gpt2": "openai-community/gpt2",  # 124M parameters
    "gpt2-medium": "openai-community/gpt2-medium",  # 350M
    "gpt2-large": "openai-community/gpt2-large",  # 774M
    "gpt2-xl": "openai-community/gpt2-xl",  # 1558M
    "distilgpt2": "distilbert/distilgpt2",  # 82M, 6 layers
}
TOKENIZER_REPO = "openai-community/gpt2"

# Hugging Face activation names -> GPTConfig.gelu_approximate. The tanh forms are one
# function written four ways; "gelu" is the exact erf form.
ACTIVATIONS: dict[str, str] = {
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_python_tanh": "tanh",
    "gelu_fast": "tanh",
    "gelu": "none",
    "gelu_python": "none",
}

# Shapes of OpenAI's checkpoints, (n_layer, n_embd) -> n_head: a bare state dict has no
# n_head (it changes no weight's shape), but these four sizes (and distilgpt2) are known.
KNOWN_HEADS: dict[tuple[int, int], int] = {
    (12, 768): 12,
    (24, 1024): 16,
    (36, 1280): 20,
    (48, 1600): 25,
    (6, 768): 12,
}

# What a caller may change when converting: the dropout rates, and a shorter context
# (the position table is cropped). n_head only when no config says it.
OVERRIDABLE = ("embd_pdrop", "resid_pdrop", "attn_pdrop", "block_size", "n_head")

ETAG_TIMEOUT_S = 5.0  # seconds to wait for the Hub before deciding that it cannot be reached


class HubUnavailableError(RuntimeError):
    """A GPT-2 file is neither in the Hugging Face cache nor downloadable (offline, or the Hub unreachable)."""


# --------------------------------------------------------------------------------------------- configs


def _get(hf_config: Any, name: str, default: Any = None) -> Any:
    if isinstance(hf_config, Mapping):
        return hf_config.get(name, default)
    return getattr(hf_config, name, default)


def config_from_hf(hf_config: Any, **overrides: Any) -> GPTConfig:
    """The GPTConfig of a Hugging Face GPT2Config (or its config.json as a dict).

    Raises ValueError for the GPT-2 variants gptlib cannot represent, saying which
    setting is the problem. `overrides` may set the dropout rates or a smaller block_size.
    """
    model_type = _get(hf_config, "model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(
            f"this is a {model_type!r} config, not GPT-2 ('gpt2'); from_hf_gpt2 converts GPT-2 checkpoints only."
        )
    n_embd = _get(hf_config, "n_embd", 768)
    activation = _get(hf_config, "activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation_function={activation!r} is not a GELU that gptlib's MLP computes; supported: "
            f"{sorted(ACTIVATIONS)} (the tanh forms map to gelu_approximate='tanh', 'gelu' to 'none')."
        )
    n_inner = _get(hf_config, "n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        raise ValueError(
            f"n_inner={n_inner}, but gptlib's MLP is always 4 * n_embd = {4 * n_embd} wide; "
            "only GPT-2 configs with n_inner=None (or 4 * n_embd) can be converted."
        )
    unsupported = {
        "scale_attn_by_inverse_layer_idx": (True, "it divides layer i's attention scores by i + 1"),
        "add_cross_attention": (True, "it adds encoder-decoder cross-attention layers"),
        "scale_attn_weights": (False, "it leaves out the 1/sqrt(head_size) scale of the attention scores"),
    }
    for name, (bad, what) in unsupported.items():
        if bool(_get(hf_config, name, not bad)) == bad:
            raise ValueError(
                f"{name}={bad}: {what}, which gptlib's CausalSelfAttention does not do. "
                f"Only GPT-2 configs with {name}={not bad} can be converted."
            )
    # reorder_and_upcast_attn is accepted: it reorders the scaling and computes the scores in
    # float32 for mixed-precision training; in float32 it is the same function as gptlib's.
    fields = dict(
        vocab_size=_get(hf_config, "vocab_size", 50257),
        block_size=_get(hf_config, "n_positions", 1024),
        n_layer=_get(hf_config, "n_layer", 12),
        n_head=_get(hf_config, "n_head", 12),
        n_embd=n_embd,
        embd_pdrop=float(_get(hf_config, "embd_pdrop", 0.1)),
        resid_pdrop=float(_get(hf_config, "resid_pdrop", 0.1)),
        attn_pdrop=float(_get(hf_config, "attn_pdrop", 0.1)),
        gelu_approximate=ACTIVATIONS[activation],
        layer_norm_eps=float(_get(hf_config, "layer_norm_epsilon", 1e-5)),
    )
    return _apply_overrides(fields, overrides, n_head_known=True)


def _apply_overrides(fields: dict[str, Any], overrides: dict[str, Any], n_head_known: bool) -> GPTConfig:
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(
            f"cannot override {sorted(unknown)} when converting GPT-2: the weights fix them. "
            f"You may set: {', '.join(OVERRIDABLE)}."
        )
    if "n_head" in overrides and n_head_known and overrides["n_head"] != fields["n_head"]:
        raise ValueError(
            f"n_head={overrides['n_head']!r} contradicts the GPT-2 config's n_head={fields['n_head']}; "
            "n_head can only be given for a bare state dict, which does not record it."
        )
    block_size = overrides.get("block_size", fields["block_size"])
    if isinstance(block_size, int) and not isinstance(block_size, bool) and block_size > fields["block_size"]:
        raise ValueError(
            f"block_size={block_size} is longer than the checkpoint's {fields['block_size']} learned positions; "
            f"choose block_size <= {fields['block_size']} (positions beyond it were never trained)."
        )
    return GPTConfig(**{**fields, **overrides})


def config_to_hf(config: GPTConfig, tie_word_embeddings: bool = True) -> dict[str, Any]:
    """GPT2Config keyword arguments for a gptlib GPTConfig (the inverse of config_from_hf)."""
    gpt2_vocab = config.vocab_size == 50257  # GPT-2's own vocabulary: keep its <|endoftext|> id
    return dict(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        n_inner=None,
        activation_function="gelu_new" if config.gelu_approximate == "tanh" else "gelu",
        embd_pdrop=config.embd_pdrop,
        resid_pdrop=config.resid_pdrop,
        attn_pdrop=config.attn_pdrop,
        layer_norm_epsilon=config.layer_norm_eps,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=50256 if gpt2_vocab else None,
        eos_token_id=50256 if gpt2_vocab else None,
    )


# ---------------------------------------------------------------------------------------- state dicts


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel keys start with 'transformer.', GPT2Model's and the Hub files' don't; drop mask buffers."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")) and not key.endswith("c_attn.bias"):
            continue  # the causal mask old checkpoints store as a buffer; gptlib builds its own
        out[key.removeprefix("transformer.")] = value
    return out


def _infer_config(sd: Mapping[str, torch.Tensor], overrides: dict[str, Any]) -> GPTConfig:
    """A GPTConfig from the shapes of a bare state dict, with GPT-2's defaults for the rest."""
    for key in ("wte.weight", "wpe.weight"):
        if key not in sd:
            raise ValueError(
                f"this does not look like a GPT-2 state dict: it has no {key!r} "
                f"(keys start with {sorted(sd)[:4]}). Pass a GPT2LMHeadModel, GPT2Model or one's state_dict()."
            )
    vocab_size, n_embd = sd["wte.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k))}
    n_layer = len(layers)
    n_head = overrides.get("n_head", KNOWN_HEADS.get((n_layer, n_embd)))
    if n_head is None:
        raise ValueError(
            f"a bare state dict does not record n_head (it changes no weight's shape) and {n_layer} layers x "
            f"{n_embd} channels is not one of OpenAI's GPT-2 sizes. Pass n_head=..., or config= the model's "
            "GPT2Config (or its config.json as a dict)."
        )
    fields = dict(
        vocab_size=vocab_size,
        block_size=sd["wpe.weight"].shape[0],
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        embd_pdrop=0.1,
        resid_pdrop=0.1,
        attn_pdrop=0.1,
        gelu_approximate="tanh",
        layer_norm_eps=1e-5,
    )
    return _apply_overrides(fields, overrides, n_head_known=False)


def state_dict_from_hf(
    hf_state_dict: Mapping[str, torch.Tensor], config: GPTConfig
) -> dict[str, torch.Tensor]:
    """A gptlib GPT state dict from a Hugging Face GPT-2 one (with or without the 'transformer.' prefix)."""
    sd = _strip_prefix(hf_state_dict)
    C, T = config.n_embd, config.block_size
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if key not in sd:
            raise ValueError(
                f"the GPT-2 state dict has no {key!r}, which a {config.n_layer}-layer GPT-2 needs. "
                "Is it a complete GPT2LMHeadModel / GPT2Model state dict for this config?"
            )
        t = sd[key]
        if tuple(t.shape) != shape:
            raise ValueError(
                f"{key!r} has shape {tuple(t.shape)}, expected {shape} for this config ({config})."
            )
        used.add(key)
        return t

    out["embeddings.tok_emb.weight"] = take("wte.weight", (config.vocab_size, C))
    n_positions = sd["wpe.weight"].shape[0] if "wpe.weight" in sd else T
    if n_positions < T:
        raise ValueError(
            f"wpe has {n_positions} positions but block_size is {T}; use block_size <= {n_positions}."
        )
    wpe = take("wpe.weight", (n_positions, C))
    out["embeddings.pos_emb"] = wpe[:T].unsqueeze(0)  # (n_positions, C) -> (1, block_size, C)
    for i in range(config.n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for hf_ln, ln in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[f"{b}{ln}.weight"] = take(f"{h}{hf_ln}.weight", (C,))
            out[f"{b}{ln}.bias"] = take(f"{h}{hf_ln}.bias", (C,))
        # Conv1D weights are (in, out): transpose for nn.Linear. c_attn's outputs are [query | key | value].
        qkv_w = take(f"{h}attn.c_attn.weight", (C, 3 * C)).split(C, dim=1)  # 3 x (C, C)
        qkv_b = take(f"{h}attn.c_attn.bias", (3 * C,)).split(C)  # 3 x (C,)
        for name, w, bias in zip(("query", "key", "value"), qkv_w, qkv_b, strict=True):
            out[f"{b}attn.{name}.weight"] = w.t()
            out[f"{b}attn.{name}.bias"] = bias
        out[f"{b}attn.proj.weight"] = take(f"{h}attn.c_proj.weight", (C, C)).t()
        out[f"{b}attn.proj.bias"] = take(f"{h}attn.c_proj.bias", (C,))
        out[f"{b}mlp.fc.weight"] = take(f"{h}mlp.c_fc.weight", (C, 4 * C)).t()
        out[f"{b}mlp.fc.bias"] = take(f"{h}mlp.c_fc.bias", (4 * C,))
        out[f"{b}mlp.proj.weight"] = take(f"{h}mlp.c_proj.weight", (4 * C, C)).t()
        out[f"{b}mlp.proj.bias"] = take(f"{h}mlp.c_proj.bias", (C,))
    out["head.ln_f.weight"] = take("ln_f.weight", (C,))
    out["head.ln_f.bias"] = take("ln_f.bias", (C,))
    # GPT2LMHeadModel's state dict lists the tied head as lm_head.weight; GPT2Model's and the Hub's omit it.
    head_key = "lm_head.weight" if "lm_head.weight" in sd else "wte.weight"
    out["head.proj.weight"] = take(head_key, (config.vocab_size, C))
    extra = sorted(set(sd) - used)
    if extra:
        raise ValueError(
            f"the GPT-2 state dict has weights that a {config.n_layer}-layer gptlib GPT has no place for: "
            f"{extra[:6]}{' ...' if len(extra) > 6 else ''}. Is n_layer right, and is it a plain GPT-2 (not a "
            "variant with cross-attention or extra heads)?"
        )
    return out


def state_dict_to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict ('transformer.' keys and lm_head.weight) from a gptlib GPT."""
    sd = model.state_dict()
    out = {
        "transformer.wte.weight": sd["embeddings.tok_emb.weight"],
        "transformer.wpe.weight": sd["embeddings.pos_emb"][0],  # (1, T, C) -> (T, C)
    }
    for i in range(model.config.n_layer):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for hf_ln, ln in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[f"{h}{hf_ln}.weight"] = sd[f"{b}{ln}.weight"]
            out[f"{h}{hf_ln}.bias"] = sd[f"{b}{ln}.bias"]
        names = ("query", "key", "value")
        out[f"{h}attn.c_attn.weight"] = torch.cat(
            [sd[f"{b}attn.{n}.weight"].t() for n in names], dim=1
        )  # (C, 3C)
        out[f"{h}attn.c_attn.bias"] = torch.cat([sd[f"{b}attn.{n}.bias"] for n in names])  # (3C,)
        out[f"{h}attn.c_proj.weight"] = sd[f"{b}attn.proj.weight"].t()
        out[f"{h}attn.c_proj.bias"] = sd[f"{b}attn.proj.bias"]
        out[f"{h}mlp.c_fc.weight"] = sd[f"{b}mlp.fc.weight"].t()
        out[f"{h}mlp.c_fc.bias"] = sd[f"{b}mlp.fc.bias"]
        out[f"{h}mlp.c_proj.weight"] = sd[f"{b}mlp.proj.weight"].t()
        out[f"{h}mlp.c_proj.bias"] = sd[f"{b}mlp.proj.bias"]
    out["transformer.ln_f.weight"] = sd["head.ln_f.weight"]
    out["transformer.ln_f.bias"] = sd["head.ln_f.bias"]
    out["lm_head.weight"] = sd["head.proj.weight"]
    return {k: v.contiguous() for k, v in out.items()}


# ------------------------------------------------------------------------------------------- models


def from_hf_gpt2(source: nn.Module | Mapping[str, torch.Tensor], config: Any = None, **overrides: Any) -> GPT:
    """A gptlib GPT with the weights of a Hugging Face GPT-2 (GPT2LMHeadModel, GPT2Model, or a state dict).

    In eval mode its logits equal the Hugging Face model's to float32 rounding, and
    greedy generation gives the same tokens. The model is built on the CPU in float32
    (move it with .to()), in eval mode (from a model: in that model's train/eval mode).

    config: for a state dict, its GPT2Config or config.json dict. Without one the sizes
    are read from the weights' shapes and the rest are GPT-2's (tanh GELU, eps 1e-5,
    dropout 0.1); n_head is then known only for OpenAI's sizes, else pass n_head=.
    overrides: embd_pdrop, resid_pdrop, attn_pdrop (e.g. 0.0 for fine-tuning without
    dropout), block_size (a shorter context: the position table is cropped).

    The output head gets a copy of the token embedding (GPT-2 ties them). An untied
    copy keeps the converted model an ordinary gptlib GPT: configure_optimizers puts
    each parameter in exactly one group, and checkpoints load into GPT(config). The
    cost: the head's (vocab_size, n_embd) matrix is stored twice (38.6M more numbers for
    gpt2), and fine-tuning updates the two copies separately.
    """
    training = False
    if isinstance(source, nn.Module):
        if config is not None:
            raise ValueError("config= is for state dicts only; a Hugging Face model carries its own config.")
        hf_config = getattr(source, "config", None)
        if hf_config is None or _get(hf_config, "model_type") is None:
            raise ValueError(
                f"from_hf_gpt2 needs a Hugging Face GPT-2 model (GPT2LMHeadModel or GPT2Model) or a state dict, "
                f"got a {type(source).__name__} without a Hugging Face config. For a gptlib or minGPT "
                "checkpoint use GPT.load_state_dict or gptlib.interop."
            )
        gpt_config = config_from_hf(hf_config, **overrides)
        state = source.state_dict()
        training = source.training
    elif isinstance(source, Mapping):
        state = _strip_prefix(source)
        if config is not None:
            gpt_config = config_from_hf(config, **overrides)
        else:
            gpt_config = _infer_config(state, overrides)
    else:
        raise ValueError(
            f"from_hf_gpt2 needs a GPT2LMHeadModel, a GPT2Model or a state dict, got {type(source).__name__}."
        )
    model = GPT(gpt_config)
    with torch.no_grad():
        model.load_state_dict(state_dict_from_hf(state, gpt_config), strict=True)
    return model.train(training)


def to_hf_gpt2(model: GPT) -> GPT2LMHeadModel:
    """A Hugging Face GPT2LMHeadModel with this GPT's weights (needs transformers), in the same train/eval mode.

    Its logits equal this model's to float32 rounding, and from_hf_gpt2 of it gives
    back identical weights. The head is tied to the token embedding (as in GPT-2)
    when the two are equal, e.g. for a model from from_hf_gpt2 not yet fine-tuned;
    otherwise the export sets tie_word_embeddings=False and keeps both.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"to_hf_gpt2 needs a gptlib GPT, got {type(model).__name__}.")
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as e:
        raise ImportError(f"to_hf_gpt2 needs the 'transformers' package: {INSTALL_HINT}") from e
    tied = torch.equal(model.head.proj.weight, model.embeddings.tok_emb.weight)
    hf = GPT2LMHeadModel(GPT2Config(**config_to_hf(model.config, tie_word_embeddings=tied)))
    with torch.no_grad():
        hf.load_state_dict(state_dict_to_hf(model), strict=True)
    return hf.train(model.training)


# ------------------------------------------------------------------------------------- the Hub (online)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """The cache to use, read from the environment now (huggingface_hub reads it once, at import)."""
    if cache_dir is not None:
        return Path(cache_dir)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return None


def _is_connection_error(e: BaseException) -> bool:
    """True for 'the network is not there' errors, whichever HTTP library huggingface_hub uses."""
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "NetworkError"})


def hub_file(repo_id: str, filename: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local path of a file from the Hugging Face Hub: downloaded into its cache, or read from the cache.

    Offline (HF_HUB_OFFLINE=1, or no answer from the Hub within ETAG_TIMEOUT_S seconds)
    it uses the cached file, and without one raises HubUnavailableError at once.
    """
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError as e:
        raise ImportError(f"downloading GPT-2 needs the 'huggingface_hub' package: {INSTALL_HINT}") from e
    # Read now, not at huggingface_hub's import, so that setting them in a notebook or a test counts.
    offline = (
        _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or bool(constants.HF_HUB_OFFLINE)
    )
    endpoint = os.environ.get("HF_ENDPOINT") or None
    cache = _hub_cache_dir(cache_dir)
    why = "offline mode is on (HF_HUB_OFFLINE=1)"
    if not offline:
        # One quick look without retries: hf_hub_download, finding no network and no cached file,
        # retries with a 60 s timeout, so a learner offline would wait minutes for the same error.
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, filename, endpoint=endpoint), timeout=ETAG_TIMEOUT_S)
        except Exception as e:
            if not _is_connection_error(e):
                raise
            offline, why = True, f"the Hugging Face Hub could not be reached ({type(e).__name__}: {e})"
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            cache_dir=cache,
            local_files_only=offline,
            etag_timeout=ETAG_TIMEOUT_S,
            endpoint=endpoint,
        )
    except Exception as e:  # "no network and not cached" becomes HubUnavailableError; anything else as is
        if not isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and not _is_connection_error(e):
            raise
        if not offline:
            why = f"the download failed ({type(e).__name__}: {e})"
        where = cache if cache is not None else Path(constants.HF_HUB_CACHE)
        raise HubUnavailableError(
            f"Could not get {filename!r} of {repo_id!r}: {why}, and it is not in the Hugging Face cache at "
            f"{where}. GPT-2's files need the internet once; after that they are read from this cache, offline "
            "too. To proceed: connect and run this once (with HF_HUB_OFFLINE unset), or copy a Hugging Face "
            "cache that has them into that folder (or point HF_HOME at one), or convert weights you already "
            "have with gptlib.gpt2.from_hf_gpt2(state_dict). The course's own models need no download."
        ) from e
    return Path(path)


def _repo_id(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a model name such as 'gpt2', got {name!r}.")
    if name in PRETRAINED:
        return PRETRAINED[name]
    if "/" in name:
        return name  # a Hub repository id of a GPT-2 model, e.g. 'openai-community/gpt2'
    raise ValueError(
        f"unknown GPT-2 model {name!r}; choose one of {', '.join(PRETRAINED)} "
        "or give a Hugging Face Hub repository id ('owner/name') of a GPT-2 model."
    )


def from_pretrained(
    name: str = "gpt2", cache_dir: str | os.PathLike[str] | None = None, **overrides: Any
) -> GPT:
    """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl') as a gptlib GPT, in eval mode.

    The weights come from the Hugging Face Hub through huggingface_hub and its cache
    (~0.5 GB for gpt2, 6 GB for gpt2-xl): the first call needs the internet, later ones
    read the cache, offline too. Offline without the files it raises HubUnavailableError
    at once. overrides: as in from_hf_gpt2 (dropout rates, a shorter block_size).
    """
    repo_id = _repo_id(name)
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise ImportError(f"from_pretrained needs the 'safetensors' package: {INSTALL_HINT}") from e
    hf_config = json.loads(hub_file(repo_id, "config.json", cache_dir).read_text(encoding="utf-8"))
    config_from_hf(hf_config, **overrides)  # reject a non-GPT-2 repository before the big download
    state = load_file(hub_file(repo_id, "model.safetensors", cache_dir))
    return from_hf_gpt2(state, hf_config, **overrides).eval()


# ------------------------------------------------------------------------------------------ tokenizer


class GPT2Tokenizer:
    """GPT-2's byte-level BPE tokenizer (50257 ids), with CharTokenizer's encode/decode.

    Any text encodes (unknown characters become their UTF-8 bytes), and
    decode(encode(s)) == s. The text "<|endoftext|>" encodes to the special id
    eot_id (50256), as in Hugging Face's GPT-2 tokenizer. Get one with gpt2_tokenizer().
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer  # a tokenizers.Tokenizer
        self.eot_id = tokenizer.token_to_id("<|endoftext|>")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GPT2Tokenizer:
        """Load a Hugging Face tokenizer.json (the 'tokenizers' package)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ImportError(f"the GPT-2 tokenizer needs the 'tokenizers' package: {INSTALL_HINT}") from e
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no tokenizer file at {path}; expected a Hugging Face tokenizer.json.")
        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        """Number of ids, 0 .. vocab_size - 1 (50257 for GPT-2, the special token included)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id})"

    def encode(self, text: str) -> list[int]:
        """The token ids of `text`."""
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}.")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_tensor(self, text: str) -> torch.Tensor:
        """encode(text) as a 1-D torch.long tensor."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of a list/tuple of ids or a 1-D integer tensor."""
        return self._tok.decode(checked_ids(ids, self.vocab_size, "GPT-2's"), skip_special_tokens=False)


def gpt2_tokenizer(cache_dir: str | os.PathLike[str] | None = None) -> GPT2Tokenizer:
    """GPT-2's tokenizer (shared by all GPT-2 sizes), from the Hugging Face Hub and its cache.

    Needs the internet once; offline without the file it raises HubUnavailableError at once.
    """
    return GPT2Tokenizer.from_file(hub_file(TOKENIZER_REPO, "tokenizer.json", cache_dir))
