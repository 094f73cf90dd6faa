"""Lesson 09, GPT-2's weights: split_c_attn (9.1), convert_block (9.2), convert_gpt2 (9.3).

The checks build small random GPT-2s with Hugging Face's transformers (gptlib[gpt2]); the test skips this
lesson without it.
"""

import torch

from gptlib import GPT, Block, GPTConfig
from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 9.1 split_c_attn


@V.correct("9.1", "chunk-and-clone")
def split_chunk(weight, bias):
    wq, wk, wv = weight.chunk(3, dim=1)
    bq, bk, bv = bias.chunk(3)
    return {
        "query": (wq.T.contiguous(), bq.clone()),
        "key": (wk.T.contiguous(), bk.clone()),
        "value": (wv.T.contiguous(), bv.clone()),
    }


@V.correct("9.1", "slices")
def split_slices(weight, bias):
    C = weight.shape[0]
    out = {}
    for i, name in enumerate(["query", "key", "value"]):
        out[name] = (weight[:, i * C : (i + 1) * C].t(), bias[i * C : (i + 1) * C])
    return out


@V.correct("9.1", "transpose-first")
def split_transpose_first(weight, bias):
    C = weight.size(0)
    w = weight.t()  # (3C, C): nn.Linear's layout, then split the rows
    return dict(
        zip(("query", "key", "value"), zip(w.split(C, dim=0), bias.split(C), strict=True), strict=True)
    )


def _parts(weight, bias):
    C = weight.size(0)
    return weight.split(C, dim=1), bias.split(C)


@V.mistake(
    "9.1",
    "not-transposed",
    ["transpose", "(out, in)", "layout"],
    "Conv1D stores (in, out); nn.Linear wants (out, in): transpose each part.",
)
def split_no_t(weight, bias):
    ws, bs = _parts(weight, bias)
    return {"query": (ws[0], bs[0]), "key": (ws[1], bs[1]), "value": (ws[2], bs[2])}


@V.mistake(
    "9.1",
    "wrong-order",
    ["order", "swap", "key and query", "query and key", "is gpt-2's key"],
    "GPT-2's c_attn holds [query | key | value]: the first block is the query.",
)
def split_kqv(weight, bias):
    ws, bs = _parts(weight, bias)
    return {"key": (ws[0].t(), bs[0]), "query": (ws[1].t(), bs[1]), "value": (ws[2].t(), bs[2])}


@V.mistake(
    "9.1",
    "split-along-rows",
    ["axis", "dim", "columns", "rows", "wrong way"],
    "The three parts are side by side in the columns of (C, 3C): split along dim 1.",
)
def split_rows(weight, bias):
    C = weight.size(0)
    w = weight.reshape(3 * C, C)  # "three blocks of C rows"
    wq, wk, wv = w.split(C, dim=0)
    bq, bk, bv = bias.split(C)
    return {"query": (wq, bq), "key": (wk, bk), "value": (wv, bv)}


@V.mistake(
    "9.1",
    "interleaved",
    ["interleav", "every third", "contiguous blocks"],
    "weight[:, 0::3] takes every third column; the parts are three contiguous blocks of C columns.",
)
def split_interleaved(weight, bias):
    return {name: (weight[:, i::3].t(), bias[i::3]) for i, name in enumerate(("query", "key", "value"))}


@V.mistake(
    "9.1",
    "bias-not-split",
    ["bias"],
    "Each part gets its own third of the bias, (C,), not the whole (3C,) bias.",
)
def split_bias_whole(weight, bias):
    ws, _ = _parts(weight, bias)
    return {"query": (ws[0].t(), bias), "key": (ws[1].t(), bias), "value": (ws[2].t(), bias)}


@V.mistake(
    "9.1",
    "in-place",
    W.IN_PLACE + ("gpt-2's weights", "untouched"),
    "weight.t_() transposes GPT-2's tensor in place.",
)
def split_inplace(weight, bias):
    C = weight.size(0)
    weight.data = weight.data.t()  # (3C, C): and GPT-2's own c_attn.weight is now transposed too
    wq, wk, wv = weight.split(C, dim=0)
    bq, bk, bv = bias.split(C)
    return {"query": (wq, bq), "key": (wk, bk), "value": (wv, bv)}


@V.mistake(
    "9.1",
    "c-from-wrong-axis",
    ["size(0)", "shape[0]", "c from", "3c", "shape"],
    "weight.size(1) is 3C: C is weight.size(0).",
)
def split_c_wrong(weight, bias):
    C = weight.size(1) // 2
    wq, wk, wv = weight[:, :C], weight[:, C : 2 * C], weight[:, 2 * C : 3 * C]
    bq, bk, bv = bias[:C], bias[C : 2 * C], bias[2 * C : 3 * C]
    return {"query": (wq.t(), bq), "key": (wk.t(), bk), "value": (wv.t(), bv)}


@V.mistake("9.1", "returns-list", ["dict"], "Return a dict with the keys query, key and value.")
def split_list(weight, bias):
    ws, bs = _parts(weight, bias)
    return [(w.t(), b) for w, b in zip(ws, bs, strict=True)]


# ---------------------------------------------------------------- 9.2 convert_block


def _config(hf_config, **over):
    kw = dict(
        vocab_size=hf_config.vocab_size,
        block_size=hf_config.n_positions,
        n_layer=1,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
        gelu_approximate="tanh",
        layer_norm_eps=hf_config.layer_norm_epsilon,
    )
    kw.update(over)
    return GPTConfig(**kw)


def _fill(
    block, hf_block, transpose=("proj", "fc", "mproj"), ln_swapped=False, order=("query", "key", "value")
):
    with torch.no_grad():
        ln1, ln2 = (hf_block.ln_2, hf_block.ln_1) if ln_swapped else (hf_block.ln_1, hf_block.ln_2)
        for mine, theirs in ((block.ln1, ln1), (block.ln2, ln2)):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        parts = split_slices(hf_block.attn.c_attn.weight, hf_block.attn.c_attn.bias)
        for name, mine in zip(order, (block.attn.query, block.attn.key, block.attn.value), strict=True):
            mine.weight.copy_(parts[name][0])
            mine.bias.copy_(parts[name][1])
        for key, mine, theirs in (
            ("proj", block.attn.proj, hf_block.attn.c_proj),
            ("fc", block.mlp.fc, hf_block.mlp.c_fc),
            ("mproj", block.mlp.proj, hf_block.mlp.c_proj),
        ):
            w = theirs.weight.t() if key in transpose else theirs.weight
            mine.weight.copy_(w)
            mine.bias.copy_(theirs.bias)
    return block.eval()


@V.correct("9.2", "state-dict")
def convert_block_state_dict(hf_block, hf_config):
    block = Block(_config(hf_config))
    h = hf_block.state_dict()
    parts = split_chunk(h["attn.c_attn.weight"], h["attn.c_attn.bias"])
    sd = {
        "ln1.weight": h["ln_1.weight"],
        "ln1.bias": h["ln_1.bias"],
        "ln2.weight": h["ln_2.weight"],
        "ln2.bias": h["ln_2.bias"],
        "attn.proj.weight": h["attn.c_proj.weight"].t(),
        "attn.proj.bias": h["attn.c_proj.bias"],
        "mlp.fc.weight": h["mlp.c_fc.weight"].t(),
        "mlp.fc.bias": h["mlp.c_fc.bias"],
        "mlp.proj.weight": h["mlp.c_proj.weight"].t(),
        "mlp.proj.bias": h["mlp.c_proj.bias"],
    }
    for name, (w, b) in parts.items():
        sd[f"attn.{name}.weight"], sd[f"attn.{name}.bias"] = w, b
    block.load_state_dict({k: v.clone() for k, v in sd.items()})
    block.eval()
    return block


@V.correct("9.2", "copy-loops")
def convert_block_loops(hf_block, hf_config):
    return _fill(Block(_config(hf_config)), hf_block)


@V.mistake("9.2", "exact-gelu", ["tanh", "gelu"], "GPT-2 uses the tanh GELU: gelu_approximate='tanh'.")
def convert_block_exact_gelu(hf_block, hf_config):
    return _fill(Block(_config(hf_config, gelu_approximate="none")), hf_block)


@V.mistake(
    "9.2",
    "default-eps",
    ["eps", "layer_norm_epsilon"],
    "The LayerNorm eps comes from hf_config.layer_norm_epsilon.",
)
def convert_block_eps(hf_block, hf_config):
    return _fill(Block(_config(hf_config, layer_norm_eps=1e-5)), hf_block)  # GPTConfig's default eps


@V.mistake(
    "9.2",
    "conv1d-not-transposed",
    ["transpose", "(out, in)", "c_proj"],
    "attn.c_proj is a Conv1D, (in, out): transpose it for nn.Linear.",
)
def convert_block_no_t(hf_block, hf_config):
    return _fill(Block(_config(hf_config)), hf_block, transpose=("fc", "mproj"))


@V.mistake(
    "9.2",
    "layernorms-swapped",
    ["swap", "ln_1", "ln_2"],
    "ln_1 goes to ln1 and ln_2 to ln2.",
)
def convert_block_ln_swap(hf_block, hf_config):
    return _fill(Block(_config(hf_config)), hf_block, ln_swapped=True)


@V.mistake("9.2", "default-n-head", ["n_head"], "n_head must come from hf_config: the shapes do not tell it.")
def convert_block_heads(hf_block, hf_config):
    return _fill(Block(_config(hf_config, n_head=4)), hf_block)  # GPTConfig's default n_head


@V.mistake(
    "9.2",
    "writes-into-gpt2",
    W.IN_PLACE + ("gpt-2's weights", "hf_block", "untouched"),
    "Transposing hf_block's weights in place changes GPT-2's model: copy, never write into it.",
)
def convert_block_in_place(hf_block, hf_config):
    block = Block(_config(hf_config))
    with torch.no_grad():
        for conv in (hf_block.attn.c_proj, hf_block.mlp.c_fc, hf_block.mlp.c_proj):
            conv.weight.data = conv.weight.data.t()  # now (out, in), in GPT-2's own module
        block.ln1.load_state_dict(hf_block.ln_1.state_dict())
        block.ln2.load_state_dict(hf_block.ln_2.state_dict())
        for name, (w, b) in split_slices(hf_block.attn.c_attn.weight, hf_block.attn.c_attn.bias).items():
            getattr(block.attn, name).weight.copy_(w)
            getattr(block.attn, name).bias.copy_(b)
        for mine, theirs in (
            (block.attn.proj, hf_block.attn.c_proj),
            (block.mlp.fc, hf_block.mlp.c_fc),
            (block.mlp.proj, hf_block.mlp.c_proj),
        ):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return block.eval()


@V.mistake("9.2", "train-mode", ["eval"], "Return the block in eval mode: in train mode its dropout is on.")
def convert_block_train(hf_block, hf_config):
    return _fill(Block(_config(hf_config)), hf_block).train()


@V.mistake(
    "9.2",
    "query-key-swapped",
    ["order", "swap", "query", "key"],
    "The query part went into attn.key and the key part into attn.query.",
)
def convert_block_qk(hf_block, hf_config):
    return _fill(Block(_config(hf_config)), hf_block, order=("key", "query", "value"))


@V.mistake(
    "9.2", "biases-not-copied", ["bias"], "The Linear biases keep their init: copy GPT-2's biases too."
)
def convert_block_no_bias(hf_block, hf_config):
    block = _fill(Block(_config(hf_config)), hf_block)
    with torch.no_grad():
        for lin in (block.attn.proj, block.mlp.fc, block.mlp.proj):
            lin.bias.zero_()
    return block


# ---------------------------------------------------------------- 9.3 convert_gpt2


def _gpt(hf_model, blocks=True, ln_f=True, head=True, head_t=False, eval_mode=True, **over):
    c = hf_model.config
    kw = dict(
        vocab_size=c.vocab_size,
        block_size=c.n_positions,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        gelu_approximate="tanh",
        layer_norm_eps=c.layer_norm_epsilon,
    )
    kw.update(over)
    model = GPT(GPTConfig(**kw))
    t = hf_model.transformer
    with torch.no_grad():
        model.embeddings.tok_emb.weight.copy_(t.wte.weight)
        model.embeddings.pos_emb.copy_(t.wpe.weight)  # (T, C) broadcasts into (1, T, C)
        if blocks:
            for i, hf_block in enumerate(t.h):
                model.blocks[i] = convert_block_loops(hf_block, c)
        if ln_f:
            model.head.ln_f.weight.copy_(t.ln_f.weight)
            model.head.ln_f.bias.copy_(t.ln_f.bias)
        if head:
            w = hf_model.lm_head.weight
            model.head.proj.weight.copy_(w.t() if head_t else w)
    return model.eval() if eval_mode else model.train()


@V.correct("9.3", "broadcast-positions")
def convert_gpt2_broadcast(hf_model):
    return _gpt(hf_model)


@V.correct("9.3", "load-state-dict-per-block")
def convert_gpt2_state(hf_model):
    c = hf_model.config
    model = GPT(
        GPTConfig(
            vocab_size=c.vocab_size,
            block_size=c.n_positions,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
            gelu_approximate="tanh",
            layer_norm_eps=c.layer_norm_epsilon,
        )
    )
    with torch.no_grad():
        model.embeddings.tok_emb.weight.copy_(hf_model.transformer.wte.weight)
        model.embeddings.pos_emb.copy_(hf_model.transformer.wpe.weight[None])
        for mine, theirs in zip(model.blocks, hf_model.transformer.h, strict=True):
            mine.load_state_dict(convert_block_state_dict(theirs, c).state_dict())
        model.head.ln_f.load_state_dict(hf_model.transformer.ln_f.state_dict())
        model.head.proj.weight.copy_(hf_model.transformer.wte.weight)  # lm_head is tied to wte
    return model.eval()


@V.mistake(
    "9.3", "head-not-copied", ["head", "lm_head"], "lm_head.weight (= wte) must be copied into head.head."
)
def convert_gpt2_no_head(hf_model):
    return _gpt(hf_model, head=False)


@V.mistake(
    "9.3",
    "head-transposed",
    ["transpose", "head"],
    "lm_head's weight is already (V, C), nn.Linear's layout: no transpose.",
)
def convert_gpt2_head_t(hf_model):
    return _gpt(hf_model, head_t=True)


@V.mistake("9.3", "ln-f-not-copied", ["ln_f", "final layernorm", "final layer norm"], "ln_f is never copied.")
def convert_gpt2_no_ln_f(hf_model):
    return _gpt(hf_model, ln_f=False)


@V.mistake("9.3", "exact-gelu", ["tanh", "gelu"], "GPT-2 uses the tanh GELU: gelu_approximate='tanh'.")
def convert_gpt2_gelu(hf_model):
    model = _gpt(hf_model, blocks=False, gelu_approximate="none")
    for i, hf_block in enumerate(hf_model.transformer.h):
        model.blocks[i] = _fill(Block(_config(hf_model.config, gelu_approximate="none")), hf_block)
    return model.eval()


@V.mistake(
    "9.3",
    "default-eps",
    ["eps", "layer_norm_epsilon"],
    "ln_f's eps must come from the config (layer_norm_epsilon).",
)
def convert_gpt2_eps(hf_model):
    return _gpt(hf_model, layer_norm_eps=1e-5)  # GPTConfig's default eps


@V.mistake("9.3", "default-n-layer", ["n_layer", "block"], "n_layer must come from the config.")
def convert_gpt2_layers(hf_model):
    c = hf_model.config
    model = _gpt(hf_model, blocks=False, n_layer=c.n_layer + 1)
    with torch.no_grad():
        for i, hf_block in enumerate(hf_model.transformer.h):
            model.blocks[i] = convert_block_loops(hf_block, c)
    return model


@V.mistake("9.3", "train-mode", ["eval"], "Return the model in eval mode.")
def convert_gpt2_train(hf_model):
    return _gpt(hf_model, eval_mode=False)


@V.mistake(
    "9.3",
    "blocks-not-converted",
    ["block"],
    "The blocks keep their random init: put convert_block(...) of each GPT-2 block into model.blocks.",
)
def convert_gpt2_no_blocks(hf_model):
    return _gpt(hf_model, blocks=False)


@V.mistake(
    "9.3",
    "positions-not-copied",
    ["position", "wpe", "pos_emb"],
    "wpe is never copied into stem.pos_emb.",
)
def convert_gpt2_no_pos(hf_model):
    model = _gpt(hf_model)
    with torch.no_grad():
        model.embeddings.pos_emb.zero_()
    return model
