"""The optimizers a Trainer can use: minGPT's AdamW, or Muon for the blocks' matrices with AdamW for the rest.

AdamW ("adamw", minGPT's choice) scales each weight's step by the running size of
its own gradient. Muon ("muon") treats a weight matrix as one object: it takes
the momentum of the gradient and orthogonalises it (a few Newton-Schulz
iterations push all its singular values towards 1), so every direction the
matrix can move in moves by a similar amount, instead of the few directions the
gradient happens to be large in. On the Linear layers inside the blocks that gets
a small GPT to a given loss in far fewer steps (see the README's Performance
section). Embeddings, LayerNorms, biases and the head are not such matrices, or
not used as one, and stay with AdamW.

`Muon` here is torch.optim.Muon's algorithm (Nesterov momentum 0.95, five
Newton-Schulz steps in bfloat16, steps scaled by sqrt(max(1, rows / cols))) with
one difference: matrices of the same shape are orthogonalised together, as one
batch of matrix products, which on a CPU makes the optimizer step about twice as
fast for a small model. Both kinds step together as one `Optimizers`; the
Trainer's learning-rate schedule scales each group by its `lr_scale` (Muon's peak
over AdamW's).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from gptlib.model import GPT

OPTIMIZER_CHOICES = ("adamw", "muon")

# Newton-Schulz coefficients (Keller Jordan's, as torch.optim.Muon uses them): a quintic chosen to raise
# small singular values fast; the result has singular values near, not at, 1, which trains as well.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """g (n, rows, cols), a batch of matrices -> the same shape, each with its singular values pushed towards 1."""
    a, b, c = NS_COEFFICIENTS
    x = g.bfloat16()
    wide = x.size(1) <= x.size(2)
    if not wide:
        x = x.transpose(1, 2)  # (n, small, large): the Gram matrices below are small x small
    x = x / x.norm(dim=(1, 2), keepdim=True).clamp(min=1e-7)  # every singular value now <= 1
    for _ in range(steps):
        gram = x @ x.transpose(1, 2)  # (n, small, small)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.baddbmm(x, poly, x, beta=a)  # a X + (b G + c G^2) X
    return x if wide else x.transpose(1, 2)


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised: for 2-D weights only. Same-shaped matrices are orthogonalised in one batch."""

    def __init__(self, params: Any, lr: float = 0.02, momentum: float = 0.95, ns_steps: int = 5):
        super().__init__(params, {"lr": lr, "momentum": momentum, "ns_steps": ns_steps})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"Muon takes 2-D weight matrices, got a parameter of shape {tuple(p.shape)}."
                    )

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            momentum = group["momentum"]
            by_shape: dict[torch.Size, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                grads = [p.grad for p in params]
                bufs = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
                torch._foreach_lerp_(bufs, grads, 1 - momentum)  # buf = momentum buf + (1 - momentum) grad
                nesterov = torch.stack(grads).lerp_(torch.stack(bufs), momentum)  # (n, rows, cols)
                update = orthogonalise(nesterov, group["ns_steps"]).to(params[0].dtype)
                scale = max(1.0, shape[0] / shape[1]) ** 0.5  # the same step size for tall matrices
                torch._foreach_add_(params, list(update.unbind(0)), alpha=-group["lr"] * scale)


class Optimizers:
    """Several torch optimizers over disjoint parameters, used as one (step, zero_grad, state_dict)."""

    def __init__(self, **parts: torch.optim.Optimizer):
        self.parts = parts

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.parts.values() for group in opt.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:
        return {p: s for opt in self.parts.values() for p, s in opt.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.parts.values():
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        """One torch-shaped state dict ({"state", "param_groups"}) over all parts, plus each part's group count.

        Parameters are numbered across the parts in param_groups' order, as one torch optimizer numbers its
        own, so code that remaps a torch optimizer's state by parameter (the Trainer's resume) works alike.
        """
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for opt in self.parts.values():
            part = opt.state_dict()
            groups += [{**g, "params": [i + offset for i in g["params"]]} for g in part["param_groups"]]
            state |= {i + offset: s for i, s in part["state"].items()}
            offset += sum(len(g["params"]) for g in part["param_groups"])
        return {
            "state": state,
            "param_groups": groups,
            "parts": {n: len(o.param_groups) for n, o in self.parts.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        now = {name: len(opt.param_groups) for name, opt in self.parts.items()}
        if not isinstance(state, dict) or state.get("parts") != now:
            found = state.get("parts") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"optimizer state for parts {found}, but this optimizer has parts {now}.")
        groups = iter(state["param_groups"])
        for name, opt in self.parts.items():
            mine = [next(groups) for _ in range(now[name])]
            ids = {i for g in mine for i in g["params"]}
            # torch pairs the ids in the groups with this part's parameters by position
            opt.load_state_dict(
                {"state": {i: s for i, s in state["state"].items() if i in ids}, "param_groups": mine}
            )


def block_matrices(model: GPT) -> list[nn.Parameter]:
    """The weights of the Linear layers inside the blocks (attention's key/query/value/proj, the MLP's)."""
    return [m.weight for block in model.blocks for m in block.modules() if isinstance(m, nn.Linear)]


def make_optimizer(
    model: GPT,
    name: str = "adamw",
    learning_rate: float = 3e-4,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    muon_lr: float = 0.02,
) -> torch.optim.Optimizer | Optimizers:
    """minGPT's AdamW ("adamw"), or Muon at muon_lr on the blocks' matrices and that AdamW on the rest ("muon")."""
    if name not in OPTIMIZER_CHOICES:
        raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZER_CHOICES)}.")
    adamw = model.configure_optimizers(weight_decay, learning_rate, betas)
    if name == "adamw":
        return adamw
    matrices = block_matrices(model)
    taken = {id(p) for p in matrices}
    rest = [
        {"params": [p for p in g["params"] if id(p) not in taken], "weight_decay": g["weight_decay"]}
        for g in adamw.param_groups
    ]
    adamw = torch.optim.AdamW(rest, lr=learning_rate, betas=betas, fused=adamw.defaults["fused"])
    # No weight decay on Muon's matrices: its steps have a fixed size, so the weights' scale stays in hand.
    muon = Muon(matrices, lr=muon_lr)
    for group in muon.param_groups:
        group["lr_scale"] = muon_lr / learning_rate  # the schedule's learning rate, times this
    return Optimizers(adamw=adamw, muon=muon)
