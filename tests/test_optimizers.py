"""The Trainer's optimizers: minGPT's AdamW, and Muon on the blocks' matrices with AdamW on the rest."""

from __future__ import annotations

import pytest
import torch

from gptlib.checkpoint import CheckpointError, load_checkpoint
from gptlib.config import GPTConfig
from gptlib.data import train_val_split
from gptlib.model import GPT
from gptlib.optimizers import Muon, Optimizers, block_matrices, make_optimizer, orthogonalise
from gptlib.tokenizer import CharTokenizer
from gptlib.train import TrainConfig, Trainer, lr_at

TEXT = "to be or not to be, that is the question; whether tis nobler in the mind to suffer. " * 30


@pytest.fixture(scope="module")
def data():
    tok = CharTokenizer.from_text(TEXT)
    return tok, *train_val_split(tok.encode_tensor(TEXT), val_fraction=0.1)


def model_for(vocab_size: int, seed: int = 0, dropout: float = 0.0) -> GPT:
    torch.manual_seed(seed)
    p = dropout
    return GPT(
        GPTConfig(vocab_size, 16, n_layer=2, n_head=2, n_embd=32, embd_pdrop=p, resid_pdrop=p, attn_pdrop=p)
    )


def config(**overrides) -> TrainConfig:
    settings = dict(
        max_iters=30,
        lr_decay_iters=30,
        batch_size=8,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_iters=3,
        eval_interval=None,
        progress=False,
        optimizer="muon",
        muon_lr=0.02,
    )
    return TrainConfig(**(settings | overrides))


def test_muon_takes_exactly_the_blocks_linear_weights_and_adamw_the_rest():
    model = model_for(20)
    opt = make_optimizer(model, "muon", learning_rate=1e-3, weight_decay=0.1, muon_lr=0.05)
    assert isinstance(opt, Optimizers) and set(opt.parts) == {"adamw", "muon"}
    muon = [p for g in opt.parts["muon"].param_groups for p in g["params"]]
    adamw = [p for g in opt.parts["adamw"].param_groups for p in g["params"]]
    # key, query, value, attention's proj, the MLP's fc and proj: six matrices per block
    assert len(muon) == 6 * model.config.n_layer and all(p.dim() == 2 for p in muon)
    assert {id(p) for p in muon} == {id(p) for p in block_matrices(model)}
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for p in muon} | {id(p) for p in adamw} == everything
    assert not {id(p) for p in muon} & {id(p) for p in adamw}
    in_adamw = {id(p) for p in adamw}
    assert id(model.head.proj.weight) in in_adamw  # not hidden
    assert id(model.embeddings.tok_emb.weight) in in_adamw
    # AdamW keeps minGPT's split: the head's weight decays; biases, LayerNorms and tables don't.
    decays = {id(p): g["weight_decay"] for g in opt.parts["adamw"].param_groups for p in g["params"]}
    assert decays[id(model.head.proj.weight)] == 0.1 and decays[id(model.embeddings.pos_emb)] == 0.0
    assert all(g["lr_scale"] == pytest.approx(50.0) for g in opt.parts["muon"].param_groups)
    assert make_optimizer(model, "adamw").__class__ is torch.optim.AdamW
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer(model, "sgd")
    with pytest.raises(ValueError, match="TrainConfig.optimizer must be one of adamw, muon"):
        config(optimizer="lion")


def test_the_schedule_drives_muon_at_its_own_peak(data):
    tok, train, val = data
    trainer = Trainer(model_for(tok.vocab_size), train, val, config())
    for _ in range(5):
        trainer.train_step()
    cfg = trainer.config
    expected = lr_at(4, cfg)
    assert trainer.optimizer.parts["adamw"].param_groups[0]["lr"] == expected
    assert trainer.optimizer.parts["muon"].param_groups[0]["lr"] == pytest.approx(expected * 0.02 / 3e-3)


def test_muon_learns_and_resumes_exactly(data, tmp_path):
    tok, train, val = data
    ckpt = tmp_path / "muon.pt"
    whole = Trainer(model_for(tok.vocab_size, dropout=0.1), train, val, config())
    whole.run()
    losses = [h["train_loss"] for h in whole.history]
    assert losses[-1] < losses[0] - 1.0
    half = Trainer(
        model_for(tok.vocab_size, dropout=0.1), train, val, config(max_iters=15, checkpoint_path=str(ckpt))
    )
    half.run()
    state = load_checkpoint(ckpt)["trainer"]["optimizer"]
    # both parts' state as one torch-shaped dict of plain data: AdamW's two groups, then Muon's one
    assert state["parts"] == {"adamw": 2, "muon": 1} and len(state["param_groups"]) == 3
    momenta = [state["state"][i]["momentum_buffer"] for i in state["param_groups"][2]["params"]]
    assert len(momenta) == len(block_matrices(half.model)) and all(m.abs().sum() > 0 for m in momenta)
    resumed = Trainer(model_for(tok.vocab_size, dropout=0.1), train, val, config(resume_from=str(ckpt)))
    resumed.run()
    assert resumed.history == whole.history


def test_optimizers_refuse_the_state_of_another_kind(data):
    tok, _, _ = data
    muon = make_optimizer(model_for(tok.vocab_size), "muon")
    adamw = make_optimizer(model_for(tok.vocab_size), "adamw")
    with pytest.raises(ValueError, match=r"optimizer state for parts None.*'adamw': 2, 'muon': 1"):
        muon.load_state_dict(adamw.state_dict())


def test_resuming_with_another_optimizer_says_which_to_use(data, tmp_path):
    tok, train, val = data
    ckpt = tmp_path / "adamw.pt"
    Trainer(
        model_for(tok.vocab_size),
        train,
        val,
        config(optimizer="adamw", max_iters=2, checkpoint_path=str(ckpt)),
    ).run()
    with pytest.raises(CheckpointError, match=r"adamw's, but this run uses muon.*--optimizer adamw"):
        Trainer(model_for(tok.vocab_size), train, val, config(resume_from=str(ckpt)))


def test_muon_takes_torchs_muon_steps_batching_same_shaped_matrices():
    torch.manual_seed(0)
    shapes = [(64, 16), (64, 16), (16, 64), (16, 16), (64, 16)]
    ours = [torch.nn.Parameter(0.02 * torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    mine, torchs = Muon(ours, lr=0.03), torch.optim.Muon(theirs, lr=0.03, weight_decay=0.0)
    for _ in range(4):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        mine.step()
        torchs.step()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(mine.state[ours[0]]["momentum_buffer"], torchs.state[theirs[0]]["momentum_buffer"])
    with pytest.raises(ValueError, match="2-D weight matrices"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_orthogonalise_pushes_singular_values_towards_one():
    torch.manual_seed(0)
    g = torch.randn(3, 32, 8) * torch.logspace(-1, 1, 8)  # singular values spread over two decades
    before = torch.linalg.svdvals(g)
    s = torch.linalg.svdvals(orthogonalise(g).float())
    assert (before.max(1).values / before.min(1).values).min() > 50
    assert s.shape == (3, 8) and s.min() > 0.5 and s.max() < 1.3  # near 1, not at it (see NS_COEFFICIENTS)
    # Five steps lift a direction ~1e4 times weaker than the largest only part of the way (Muon's trade-off).
    weak = torch.linalg.svdvals(orthogonalise(torch.randn(3, 32, 8) * torch.logspace(-3, 1, 8)).float())
    assert 0.005 < weak.min() < 0.5 and weak.max() < 1.3
