"""TrainConfig.compile: the Trainer trains through torch.compile, and checkpoints keep plain parameter names.

Only the wiring is tested here: compiling a graph takes tens of seconds on a CPU,
so whether it pays off is measured by `python -m bench --compile`, not by a test.
"""

from __future__ import annotations

import pytest
import torch

from gptlib.checkpoint import load_checkpoint
from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.train import TrainConfig, Trainer


class CountingWrapper(torch.nn.Module):
    """Wraps a module the way torch.compile does (as _orig_mod) and counts the calls."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self._orig_mod = module
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        return self._orig_mod(*args)


def tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(11, 8, n_layer=1, n_head=2, n_embd=16, embd_pdrop=0, resid_pdrop=0, attn_pdrop=0))


def test_compile_is_off_by_default_and_must_be_a_bool():
    assert TrainConfig().compile is False
    with pytest.raises(ValueError, match="compile must be True or False"):
        TrainConfig(compile="yes")


def test_the_trainer_steps_through_the_compiled_model_and_saves_plain_keys(monkeypatch, tmp_path):
    compiled = []

    def fake_compile(module):  # stands in for torch.compile, whose import alone takes seconds
        compiled.append(module)
        return CountingWrapper(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = tiny()
    cfg = TrainConfig(max_iters=2, batch_size=2, eval_interval=None, progress=False, compile=True)
    trainer = Trainer(model, torch.randint(0, 11, (200,)), config=cfg)
    assert compiled == [model] and trainer.model is model
    trainer.run()
    assert trainer.train_model.calls == 2  # every training step went through the compiled model
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    assert set(load_checkpoint(path)["model"]) == set(tiny().state_dict())  # no "_orig_mod." prefix


def test_without_compile_the_trainer_steps_the_model_itself():
    trainer = Trainer(tiny(), torch.randint(0, 11, (200,)), config=TrainConfig(batch_size=2, progress=False))
    assert trainer.train_model is trainer.model


def test_a_training_forward_is_one_graph_for_torch_compile():
    # The value checks on idx and targets (int(t.min())) would split the graph; under compile they are skipped.
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(0, 11, (2, 8))
    explanation = torch._dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
