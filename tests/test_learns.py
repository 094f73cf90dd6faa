"""The model learns: a tiny GPT masters minGPT's sorting task on a CPU in a few hundred steps.

An end-to-end check that no unit test can give: the gradients of every part fit
together well enough to learn an algorithm that generalises to unseen lists.
"""

import math

import torch

from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.tasks import SortDataset


def test_tiny_gpt_learns_to_sort():
    train = SortDataset("train", length=6, num_digits=3, size=2000)
    test = SortDataset("test", length=6, num_digits=3, size=500)
    pairs = [train[i] for i in range(len(train))]
    X = torch.stack([x for x, _ in pairs])  # (N, 11)
    Y = torch.stack([y for _, y in pairs])  # (N, 11)
    assert (Y[:, :5] == -1).all()  # the prompt's targets are ignored: only the sorted half is scored
    seen = {tuple(row) for row in train.inputs.tolist()}
    assert not any(tuple(row) in seen for row in test.inputs.tolist())  # held out for real

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=3, block_size=train.block_size, n_layer=2, n_head=4, n_embd=48,
                       embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    model = GPT(config)
    with torch.no_grad():
        first = model(X, Y)[1].item()
    assert abs(first - math.log(3)) < 0.1

    steps = 250
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)  # linear decay to 0
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        ix = torch.randint(0, len(X), (64,), generator=g)
        _, loss = model(X[ix], Y[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()

    model.eval()
    with torch.no_grad():
        final = model(X, Y)[1].item()
    assert final < 0.1, f"training loss {final:.3f} after {steps} steps (started at {first:.3f})"

    prompts = test.inputs  # (500, 6) lists the model never saw
    answers = model.generate(prompts, 6)[:, 6:]  # greedy, with the KV cache
    accuracy = (answers == prompts.sort(dim=1).values).all(dim=1).float().mean().item()
    assert accuracy >= 0.95, f"sorted {accuracy:.1%} of held-out lists exactly"
