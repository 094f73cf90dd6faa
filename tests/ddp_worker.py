"""A tiny training run for tests/test_distributed.py, the same code with or without torchrun.

    torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR    # two processes, one slice of the batch each
    python tests/ddp_worker.py OUT_DIR                          # one process, the whole batch

Each process writes OUT_DIR/rank{rank}.pt: its parameters before and after, its loss history, and
whether the processes held identical parameters at the end (checked across them), and the choice
they agreed on when each chose differently.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gptlib import distributed
from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.train import TrainConfig, Trainer

STEPS = 6
GLOBAL_BATCH = 4


def train_tiny(out_dir: Path) -> None:
    torch.set_num_threads(1)
    info = distributed.setup("cpu")
    try:
        data = torch.randint(0, 13, (400,), generator=torch.Generator().manual_seed(7))
        torch.manual_seed(0)
        config = GPTConfig(13, 8, n_layer=2, n_head=2, n_embd=16, embd_pdrop=0, resid_pdrop=0, attn_pdrop=0)
        model = GPT(config)
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        train_config = TrainConfig(
            max_iters=STEPS, batch_size=GLOBAL_BATCH, warmup_iters=2, eval_interval=None, progress=False
        )
        trainer = Trainer(model, data, config=train_config)
        trainer.run()
        in_sync = distributed.parameters_in_sync(model, info)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        losses = [h["train_loss"] for h in trainer.history]
        # a choice each process makes for itself (as dtype "auto" does by timing), settled by rank 0's
        choices = ["rank 0's", "rank 1's"]
        agreed = distributed.rank0_choice(choices, choices[info.rank], info)
        record = {"rank": info.rank, "world_size": info.world_size, "in_sync": in_sync, "agreed": agreed}
        torch.save(
            {**record, "initial": initial, "state": state, "losses": losses}, out_dir / f"rank{info.rank}.pt"
        )
    finally:
        distributed.teardown()


if __name__ == "__main__":
    train_tiny(Path(sys.argv[1]))
