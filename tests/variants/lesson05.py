"""Lesson 05, the full GPT: cross_entropy (5.1), GPT (5.2), count_parameters (5.3)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlib import Block, Embeddings
from tests.variants import Lesson
from tests.variants import words as W

V = Lesson()

# ---------------------------------------------------------------- 5.1 cross_entropy


@V.correct("5.1", "logsumexp-gather")
def ce_logsumexp(logits, targets):
    lse = torch.logsumexp(logits, dim=-1)  # (N,)
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
    return (lse - picked).mean()


@V.correct("5.1", "one-hot")
def ce_one_hot(logits, targets):
    z = logits - logits.max(dim=1, keepdim=True).values
    logp = z - z.exp().sum(dim=1, keepdim=True).log()
    return -(F.one_hot(targets, logits.size(1)) * logp).sum(dim=1).mean()


@V.correct("5.1", "loop-over-rows")
def ce_loop(logits, targets):
    losses = []
    for row, t in zip(logits, targets, strict=True):
        m = row.max()
        log_z = m + torch.log(torch.sum(torch.exp(row - m)))
        losses.append(log_z - row[t])
    return torch.stack(losses).mean()


@V.correct("5.1", "max-detached")
def ce_detached_max(logits, targets):
    m = logits.detach().amax(dim=-1, keepdim=True)  # any constant per row works: its gradient cancels
    logp = logits - m - torch.log(torch.exp(logits - m).sum(-1, keepdim=True))
    return -logp[range(len(targets)), targets].sum() / len(targets)


@V.mistake(
    "5.1",
    "max-not-subtracted",
    ["max", "overflow", "stab"],
    "exp(1000) is inf: subtract each row's max before the exp.",
)
def ce_unstable(logits, targets):
    logp = logits - torch.log(torch.exp(logits).sum(-1, keepdim=True))
    return -logp[torch.arange(logits.size(0)), targets].mean()


@V.mistake(
    "5.1",
    "softmax-without-log",
    ["without the log", "no log", "log is missing", "missing the log", "log missing", "softmax, not"],
    "You take -softmax[target]: the loss is -log softmax[target].",
)
def ce_no_log(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    p = z.exp() / z.exp().sum(-1, keepdim=True)
    return -p[torch.arange(logits.size(0)), targets].mean()


@V.mistake("5.1", "sum-not-mean", ["sum"], "The loss is the mean over the rows; you return the sum.")
def ce_sum(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets].sum()


@V.mistake(
    "5.1",
    "wrong-axis",
    ["axis", "dim=0", "dim 0", "column", "wrong dim", "over the rows"],
    "The log-softmax runs over each row (dim=-1), not over the rows (dim=0).",
)
def ce_axis(logits, targets):
    z = logits - logits.max(0, keepdim=True).values
    logp = z - z.exp().sum(0, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets].mean()


@V.mistake(
    "5.1",
    "wrong-entries",
    ["entries", "arange", "one entry per row", "[:, targets]", "each row's target", "(n, n)"],
    "logp[:, targets] picks N entries from every row: pair the rows with arange(N).",
)
def ce_entries(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return -logp[:, targets].mean()


@V.mistake(
    "5.1", "sign-missing", ["sign", "negative", "minus"], "The loss is minus the mean log-probability."
)
def ce_sign(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return logp[torch.arange(logits.size(0)), targets].mean()


@V.mistake("5.1", "in-place", W.IN_PLACE, "logits -= max changes the caller's logits.")
def ce_inplace(logits, targets):
    logits -= logits.max(-1, keepdim=True).values.detach()
    logp = logits - logits.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets].mean()


@V.mistake(
    "5.1",
    "max-not-added-back",
    ["max"],
    "You subtract the max inside the log-sum-exp but not from the logits: do both, or add it back.",
)
def ce_max_half(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = logits - z.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets].mean()


@V.mistake(
    "5.1",
    "per-row-losses",
    ["mean", "0-dim", "scalar", "(n,)", "shape", "one number"],
    "You return the N losses; the loss is their mean, a 0-dim tensor.",
)
def ce_rows(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets]


@V.mistake(
    "5.1",
    "returns-float",
    ["float", "item", "tensor", "gradient"],
    ".item() gives a Python float: the loss must stay a tensor so that backward works.",
)
def ce_float(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(logits.size(0)), targets].mean().item()


@V.mistake(
    "5.1", "log2", ["log2", "base 2", "bits", "natural log"], "log2 is in bits; cross-entropy is in nats."
)
def ce_log2(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    return -(logp[torch.arange(logits.size(0)), targets] / math.log(2)).mean()


@V.mistake(
    "5.1",
    "softmax-of-logp",
    ["twice", "log_softmax", "log-softmax", "softmax of"],
    "You take the log-softmax, then a softmax of it again: pick from the log-softmax directly.",
)
def ce_double(logits, targets):
    z = logits - logits.max(-1, keepdim=True).values
    logp = z - z.exp().sum(-1, keepdim=True).log()
    logp = logp - logp.exp().sum(-1, keepdim=True).log()  # "normalise" once more: a second log-softmax
    logp = logp - logp.max(-1, keepdim=True).values
    return -logp[torch.arange(logits.size(0)), targets].mean()


# ---------------------------------------------------------------- 5.2 GPT


def _init(module):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


@V.correct("5.2", "generator-modulelist-loop-init")
class GPTLoopInit(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stem = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    torch.nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        x = self.stem(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        B, T, V = logits.shape
        return logits, F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))


@V.correct("5.2", "sequential-blocks")
class GPTSequential(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stem = Embeddings(config)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        _init(module)

    def forward(self, idx, targets=None):
        logits = self.head(self.ln_f(self.blocks(self.stem(idx))))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


@V.correct("5.2", "other-names")
class GPTNames(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.norm = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        h = self.embeddings(idx)
        for layer in self.layers:
            h = layer(h)
        logits = self.lm_head(self.norm(h))
        loss = (
            None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        )
        return logits, loss


def _my_cross_entropy(logits, targets):
    z = logits - logits.max(dim=-1, keepdim=True).values
    logp = z - torch.log(torch.exp(z).sum(dim=-1, keepdim=True))
    return -logp[torch.arange(logits.size(0)), targets].mean()


@V.correct("5.2", "own-cross-entropy")
class GPTOwnLoss(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stem = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        _init(module)

    def forward(self, idx, targets=None):
        x = self.stem(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = _my_cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


@V.correct("5.2", "xavier-then-normal")
class GPTInitTwice(nn.Module):
    """Initialises twice (PyTorch's default, then minGPT's): the second one is what counts."""

    def __init__(self, config):
        super().__init__()
        self.stem = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        _init(module)

    def forward(self, idx, targets=None):
        x = self.stem(idx)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = self.head(x)
        if targets is not None:
            return logits, F.cross_entropy(logits.transpose(1, 2), targets)  # (B, V, T) vs (B, T)
        return logits, None


class _GPT(nn.Module):
    """The exercise's layout; the mistakes below change forward or one line of __init__."""

    def __init__(self, config):
        super().__init__()
        self.stem = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        _init(module)

    def body(self, idx):
        x = self.stem(idx)
        for block in self.blocks:
            x = block(x)
        return x

    def loss(self, logits, targets):
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def forward(self, idx, targets=None):
        logits = self.head(self.ln_f(self.body(idx)))
        return logits, None if targets is None else self.loss(logits, targets)


@V.mistake(
    "5.2",
    "blocks-in-a-list",
    ["list", "modulelist", "register"],
    "A plain Python list hides the blocks from PyTorch (no parameters, no .train()/.eval()): use nn.ModuleList.",
)
class GPTList(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.blocks = [Block(config) for _ in range(config.n_layer)]


@V.mistake(
    "5.2",
    "ln-f-before-blocks",
    [("ln_f", "before"), "before the blocks", ("final", "before")],
    "ln_f is applied to the embeddings, before the blocks; it goes after the last block, before the head.",
)
class GPTLnFirst(_GPT):
    def forward(self, idx, targets=None):
        x = self.ln_f(self.stem(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.head(x)
        return logits, None if targets is None else self.loss(logits, targets)


@V.mistake(
    "5.2",
    "no-ln-f",
    ["ln_f", "final layernorm", "final layer norm"],
    "The final LayerNorm is never applied: logits = head(ln_f(x)).",
)
class GPTNoLnF(_GPT):
    def forward(self, idx, targets=None):
        logits = self.head(self.body(idx))
        return logits, None if targets is None else self.loss(logits, targets)


@V.mistake(
    "5.2",
    "loss-on-unflattened-logits",
    ["flatten", "view(-1", "b * t", "reshape"],
    "F.cross_entropy wants (N, V) and (N,): flatten logits to (B*T, V) and targets to (B*T,).",
)
class GPTUnflat(_GPT):
    def loss(self, logits, targets):
        return F.cross_entropy(logits, targets)


@V.mistake(
    "5.2",
    "loss-on-probabilities",
    ["probabilit", "softmax"],
    "F.cross_entropy takes the logits and applies log-softmax itself: do not softmax them first.",
)
class GPTLossProbs(_GPT):
    def loss(self, logits, targets):
        probs = F.softmax(logits, dim=-1)
        return F.cross_entropy(probs.view(-1, probs.size(-1)), targets.view(-1))


@V.mistake(
    "5.2",
    "targets-shifted-again",
    ["shift", "already"],
    "get_batch already shifted the targets: compare logits[:, t] with targets[:, t].",
)
class GPTShiftAgain(_GPT):
    def loss(self, logits, targets):
        V = logits.size(-1)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))


@V.mistake(
    "5.2",
    "loss-without-targets",
    ["none", "without targets"],
    "Without targets the loss must be None, not 0.",
)
class GPTZeroLoss(_GPT):
    def forward(self, idx, targets=None):
        logits = self.head(self.ln_f(self.body(idx)))
        loss = torch.tensor(0.0) if targets is None else self.loss(logits, targets)
        return logits, loss


@V.mistake(
    "5.2",
    "returns-logits-only",
    ["tuple", "(logits, loss)", "loss"],
    "forward returns the logits alone; it returns (logits, loss).",
)
class GPTLogitsOnly(_GPT):
    def forward(self, idx, targets=None):
        return self.head(self.ln_f(self.body(idx)))


@V.mistake(
    "5.2",
    "returns-loss-first",
    ["order", "swap", "(logits, loss)"],
    "forward returns (loss, logits); the order is (logits, loss).",
)
class GPTLossFirst(_GPT):
    def forward(self, idx, targets=None):
        logits, loss = super().forward(idx, targets)
        return loss, logits


@V.mistake(
    "5.2",
    "no-init",
    ["init", "0.02", "_init_weights", "apply"],
    "self.apply(self._init_weights) is missing: PyTorch's default init makes the first loss far above ln V.",
)
class GPTNoInit(_GPT):
    def _init_weights(self, module):
        pass


@V.mistake(
    "5.2",
    "embeddings-not-initialised",
    ["embedding"],
    "_init_weights leaves nn.Embedding at N(0, 1): its weights also start at N(0, 0.02).",
)
class GPTInitLinearOnly(_GPT):
    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@V.mistake(
    "5.2",
    "biases-not-zeroed",
    ["bias"],
    "The Linear biases keep PyTorch's random init: set them to 0.",
)
class GPTBiasKept(_GPT):
    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)


@V.mistake(
    "5.2",
    "init-std-0-2",
    ["0.02", "std"],
    "std=0.2 is ten times too large: minGPT uses 0.02.",
)
class GPTStd02(_GPT):
    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.2)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


@V.mistake(
    "5.2",
    "head-with-bias",
    ["bias"],
    "The head is nn.Linear(n_embd, vocab_size, bias=False).",
)
class GPTHeadBias(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.head = nn.Linear(config.n_embd, config.vocab_size)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)


@V.mistake(
    "5.2",
    "head-tied-to-embedding",
    ["tie", "tied", "shared", "same tensor"],
    "The head shares the token table's tensor; minGPT's 2020 model keeps its own head.",
)
class GPTTied(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.head.weight = self.stem.tok_emb.weight


@V.mistake(
    "5.2",
    "one-block-repeated",
    ["same block", "one block", "shared", "copies", "same module", "n_layer"],
    "[Block(config)] * n_layer repeats ONE block: every layer shares its weights. Make a new Block per layer.",
)
class GPTSameBlock(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleList([Block(config)] * config.n_layer)
        self.apply(self._init_weights)


@V.mistake(
    "5.2",
    "n-layer-ignored",
    ["n_layer"],
    "There is always one block: make config.n_layer of them.",
)
class GPTOneBlock(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleList([Block(config)])
        self.apply(self._init_weights)


@V.mistake(
    "5.2",
    "loss-summed",
    ["sum", "mean"],
    "reduction='sum' adds the losses up: the loss is the mean over the B*T positions.",
)
class GPTSumLoss(_GPT):
    def loss(self, logits, targets):
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum")


@V.mistake(
    "5.2",
    "last-position-only",
    ["every position", "last position", "all positions", "shape", "(b, t, v)", "(b, t, vocab"],
    "You return the logits of the last position only; a GPT predicts at every position.",
)
class GPTLastOnly(_GPT):
    def forward(self, idx, targets=None):
        logits = self.head(self.ln_f(self.body(idx)))[:, -1, :]
        return logits, None if targets is None else F.cross_entropy(logits, targets[:, -1])


@V.mistake(
    "5.2",
    "apply-before-modules",
    ["init", "apply", "0.02"],
    "self.apply runs before the layers exist, so nothing is initialised: call it at the end of __init__.",
)
class GPTApplyFirst(_GPT):
    def __init__(self, config):
        nn.Module.__init__(self)
        self.apply(self._init_weights)
        self.stem = Embeddings(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)


@V.mistake(
    "5.2",
    "softmax-in-forward",
    ["softmax", "probabilit", "logits"],
    "forward returns probabilities: the logits are the head's raw output, before any softmax.",
)
class GPTSoftmaxOut(_GPT):
    def forward(self, idx, targets=None):
        logits = self.head(self.ln_f(self.body(idx)))
        loss = None if targets is None else self.loss(logits, targets)
        return F.softmax(logits, dim=-1), loss


@V.mistake(
    "5.2",
    "block-output-discarded",
    ["x = block(x)", "discard", "ignored", "assign", "blocks are not", "blocks have no effect", "unused"],
    "block(x) is computed and thrown away: write x = block(x).",
)
class GPTDiscard(_GPT):
    def body(self, idx):
        x = self.stem(idx)
        for block in self.blocks:
            block(x)
        return x


@V.mistake(
    "5.2",
    "loss-as-float",
    ["item", "float", "tensor", "gradient"],
    "loss.item() is a Python number: return the tensor, so that backward can run.",
)
class GPTLossItem(_GPT):
    def loss(self, logits, targets):
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1)).item()


@V.mistake(
    "5.2",
    "hard-coded-vocab",
    ["vocab_size", "config", "hard"],
    "vocab_size=65 is the Shakespeare vocabulary: read config.vocab_size.",
)
class GPTVocab65(_GPT):
    def __init__(self, config):
        super().__init__(config)
        self.head = nn.Linear(config.n_embd, 65, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)


# ---------------------------------------------------------------- 5.3 count_parameters


@V.correct("5.3", "polynomial")
def count_poly(vocab_size, block_size, n_layer, n_embd):
    V, T, L, C = vocab_size, block_size, n_layer, n_embd
    return 12 * L * C * C + 13 * L * C + 2 * V * C + T * C + 2 * C


@V.correct("5.3", "linear-helper")
def count_helper(vocab_size, block_size, n_layer, n_embd):
    def linear(a, b, bias=True):
        return a * b + (b if bias else 0)

    C = n_embd
    layernorm = 2 * C
    block = 4 * linear(C, C) + linear(C, 4 * C) + linear(4 * C, C) + 2 * layernorm
    stem = vocab_size * C + block_size * C
    return stem + n_layer * block + layernorm + linear(C, vocab_size, bias=False)


@V.correct("5.3", "sum-over-layers")
def count_loop(vocab_size, block_size, n_layer, n_embd):
    C = n_embd
    total = vocab_size * C + block_size * C
    for _ in range(n_layer):
        total += 2 * C  # ln1
        total += 4 * (C * C + C)  # q, k, v, proj
        total += 2 * C  # ln2
        total += C * 4 * C + 4 * C + 4 * C * C + C  # mlp
    return total + 2 * C + C * vocab_size


def _count(
    V,
    T,
    L,
    C,
    attention_bias=True,
    block_ln=True,
    final_ln=True,
    head_bias=False,
    head=True,
    pos=True,
    hidden=4,
):
    attention = 4 * (C * C + (C if attention_bias else 0))
    mlp = 2 * hidden * C * C + hidden * C + C
    block = attention + mlp + (4 * C if block_ln else 0)
    return (
        V * C
        + (T * C if pos else 0)
        + L * block
        + (2 * C if final_ln else 0)
        + ((V * C + (V if head_bias else 0)) if head else 0)
    )


@V.mistake("5.3", "attention-biases-forgotten", ["bias"], "Each of q, k, v and proj also has C biases.")
def count_no_attn_bias(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, attention_bias=False)


@V.mistake(
    "5.3",
    "block-layernorms-forgotten",
    ["layernorm", "layer norm"],
    "Each block has two LayerNorms, 2C parameters each.",
)
def count_no_block_ln(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, block_ln=False)


@V.mistake(
    "5.3",
    "final-layernorm-forgotten",
    ["final layernorm", "ln_f", "final layer norm", "2c", "2 * c"],
    "The final LayerNorm (ln_f) adds 2C.",
)
def count_no_ln_f(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, final_ln=False)


@V.mistake(
    "5.3",
    "head-bias-counted",
    ["head", "bias"],
    "The head has no bias: it is V * C, not V * C + V.",
)
def count_head_bias(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, head_bias=True)


@V.mistake(
    "5.3",
    "head-forgotten",
    ["head", "tied"],
    "The head is a second V x C matrix (gptlib does not tie it to the token table).",
)
def count_no_head(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, head=False)


@V.mistake("5.3", "positions-forgotten", ["position"], "The position table adds block_size * C.")
def count_no_pos(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, pos=False)


@V.mistake(
    "5.3",
    "mlp-not-4x",
    ["mlp", "4c", "4 *", "hidden"],
    "The MLP's hidden layer is 4C wide: C*4C + 4C + 4C*C + C.",
)
def count_mlp_1x(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer, n_embd, hidden=1)


@V.mistake(
    "5.3",
    "one-layer-too-many",
    ["layer", "n_layer"],
    "You count n_layer + 1 blocks.",
)
def count_extra_layer(vocab_size, block_size, n_layer, n_embd):
    return _count(vocab_size, block_size, n_layer + 1, n_embd)
