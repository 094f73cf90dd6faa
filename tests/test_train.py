"""Trainer, TrainConfig and the learning-rate schedule, on tiny models (a few ms per step)."""

from __future__ import annotations

import math

import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer
from gptlib.train import TrainConfig, Trainer, estimate_loss, lr_at

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


@pytest.fixture(scope="module")
def data():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode_tensor(TEXT)
    n = int(0.9 * len(ids))
    return tok, ids[:n], ids[n:]


def tiny_model(vocab_size: int, dropout: float = 0.0, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=vocab_size,
        block_size=8,
        n_layer=1,
        n_head=2,
        n_embd=16,
        embd_pdrop=dropout,
        resid_pdrop=dropout,
        attn_pdrop=dropout,
    )
    return GPT(cfg)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(
        max_iters=30,
        batch_size=4,
        learning_rate=1e-2,
        min_lr=1e-3,
        warmup_iters=5,
        eval_interval=10,
        eval_iters=2,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


# --- the schedule ---------------------------------------------------------------------------------


def test_lr_warms_up_linearly_then_follows_a_cosine_down_to_min_lr():
    cfg = TrainConfig(max_iters=1000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100)
    warm = [lr_at(s, cfg) for s in range(100)]
    assert all(b > a for a, b in zip(warm, warm[1:], strict=False))
    assert warm[0] == pytest.approx(1e-3 / 101)
    assert lr_at(99, cfg) == pytest.approx(1e-3 * 100 / 101)
    assert lr_at(100, cfg) == pytest.approx(1e-3)  # the peak, where the cosine starts
    assert lr_at(550, cfg) == pytest.approx((1e-3 + 1e-4) / 2)  # half way down the cosine
    decay = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(b < a for a, b in zip(decay, decay[1:], strict=False))
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    assert lr_at(5000, cfg) == 1e-4


def test_lr_decay_iters_ends_the_cosine_early_and_decay_lr_false_keeps_it_constant():
    cfg = TrainConfig(max_iters=1000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=0, lr_decay_iters=200)
    assert lr_at(0, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi / 2)))
    assert lr_at(200, cfg) == lr_at(999, cfg) == 1e-4
    short = TrainConfig(max_iters=10, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100)
    assert [lr_at(s, short) for s in range(10)] == [
        1e-3 * (s + 1) / 101 for s in range(10)
    ]  # still warming up
    flat = TrainConfig(max_iters=100, learning_rate=3e-4, decay_lr=False)
    assert {lr_at(s, flat) for s in range(100)} == {3e-4}


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"max_iters": -1}, "max_iters"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "whole number"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"min_lr": 1e-2, "learning_rate": 1e-3}, "min_lr"),
        ({"betas": (0.9, 1.5)}, "betas"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"eval_interval": 0}, "eval_interval"),
        ({"eval_iters": 0}, "eval_iters"),
    ],
)
def test_train_config_rejects_settings_that_cannot_train(changes, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**changes)


def test_train_config_round_trips_through_a_dict():
    cfg = tiny_config(betas=(0.8, 0.9), grad_clip=None)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**cfg.to_dict(), "lr": 1.0})


# --- the loop -------------------------------------------------------------------------------------


def test_trainer_reduces_the_loss_and_records_the_history(data):
    tok, train, val = data
    model = tiny_model(tok.vocab_size)
    trainer = Trainer(model, train, val, tiny_config(max_iters=150, eval_interval=50, eval_iters=4))
    before = trainer.estimate_loss()
    history = trainer.run()
    after = trainer.estimate_loss()
    assert math.log(tok.vocab_size) - 0.3 < before["val"] < math.log(tok.vocab_size) + 0.3
    assert after["val"] < before["val"] - 1.0
    assert after["train"] < before["train"] - 1.0
    assert [h["step"] for h in history] == list(range(1, 151))
    assert [h["step"] for h in history if "val_loss" in h] == [50, 100, 150]
    assert all("eval_train_loss" in h for h in history if "val_loss" in h)
    assert history[-1]["val_loss"] == pytest.approx(after["val"])  # the same fixed eval batches
    assert [h["lr"] for h in history] == [lr_at(s, trainer.config) for s in range(150)]
    assert trainer.step == 150 and trainer.stop_reason is None and trainer.train_time > 0


def test_run_again_continues_from_the_current_step(data):
    tok, train, val = data
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(max_iters=10))
    trainer.run()
    assert trainer.run() == trainer.history and len(trainer.history) == 10  # nothing left to do
    trainer.config = trainer.config.replace(max_iters=15)
    trainer.run()
    assert [h["step"] for h in trainer.history] == list(range(1, 16))


def test_same_seed_gives_the_same_history_with_dropout_on(data):
    tok, train, val = data

    def run(seed: int):
        model = tiny_model(tok.vocab_size, dropout=0.2, seed=0)
        torch.manual_seed(12345)  # the trainer must not depend on what came before it
        return Trainer(model, train, val, tiny_config(seed=seed)).run()

    first, second, other = run(7), run(7), run(8)
    assert first == second
    assert [h["train_loss"] for h in first] != [h["train_loss"] for h in other]


def test_batches_do_not_depend_on_other_users_of_the_global_generator(data):
    tok, train, val = data

    def run(draw_between_steps: bool):
        model = tiny_model(tok.vocab_size)  # no dropout: only the batches are random
        noise = [lambda t, e: torch.rand(3)] if draw_between_steps else []
        return Trainer(model, train, val, tiny_config(), callbacks=noise).run()

    assert run(False) == run(True)


def test_callbacks_see_every_step_and_evaluation_and_can_stop_training(data):
    tok, train, val = data
    events = []

    def record(trainer, event):
        events.append((event, trainer.step))
        if event == "eval" and trainer.step == 20:
            trainer.stop("enough")

    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(), callbacks=[record])
    history = trainer.run()
    assert [s for e, s in events if e == "step"] == list(range(1, 21))
    assert [s for e, s in events if e == "eval"] == [10, 20]
    assert len(history) == 20 and trainer.step == 20
    assert trainer.stop_reason == "enough"


def test_a_stop_between_evaluations_ends_the_run_without_an_extra_evaluation(data):
    tok, train, val = data

    def stop_at_7(trainer, event):
        if trainer.step == 7:
            trainer.stop()

    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(), callbacks=[stop_at_7])
    history = trainer.run()
    assert len(history) == 7 and trainer.stop_reason == "stopped by a callback"
    assert [h["step"] for h in history if "val_loss" in h] == []  # as in a run that goes on: evals at 10, 20


def test_estimate_loss_runs_in_eval_mode_and_restores_the_mode(data):
    tok, train, val = data
    model = tiny_model(tok.vocab_size, dropout=0.5)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    model.train()
    a = estimate_loss(model, val, 4, 3, torch.Generator().manual_seed(0))
    assert model.training and seen == [False] * 3
    b = estimate_loss(model, val, 4, 3, torch.Generator().manual_seed(0))
    assert a == b  # no dropout in eval mode, same batches
    model.eval()
    estimate_loss(model, val, 4, 1)
    assert not model.training


def test_trainer_evaluation_leaves_the_model_training(data):
    tok, train, val = data
    modes = []
    trainer = Trainer(
        tiny_model(tok.vocab_size, dropout=0.1),
        train,
        val,
        tiny_config(max_iters=10, eval_interval=5),
        callbacks=[lambda t, e: modes.append((e, t.model.training))],
    )
    trainer.run()
    assert all(training for _, training in modes)


def test_without_val_data_the_trainer_evaluates_the_training_data_only(data):
    tok, train, _ = data
    history = Trainer(tiny_model(tok.vocab_size), train, None, tiny_config(max_iters=10)).run()
    assert "eval_train_loss" in history[-1] and "val_loss" not in history[-1]


def test_eval_interval_none_turns_evaluation_off(data):
    tok, train, val = data
    history = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(eval_interval=None)).run()
    assert not any("val_loss" in h or "eval_train_loss" in h for h in history)


def test_gradient_clipping_bounds_the_gradient_norm(data):
    tok, train, val = data
    norms = {}
    for clip in (None, 0.05):
        model = tiny_model(tok.vocab_size)
        Trainer(
            model, train, val, tiny_config(max_iters=1, warmup_iters=0, grad_clip=clip, eval_interval=None)
        ).run()
        # the step's gradients stay in .grad until the next step clears them
        norms[clip] = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters()])
        ).item()
    assert norms[None] > 0.5
    assert norms[0.05] == pytest.approx(0.05, rel=1e-4)


@pytest.mark.parametrize(
    "bad, words",
    [
        (torch.zeros(100), "1-D torch.long"),
        (torch.zeros(2, 50, dtype=torch.long), "1-D torch.long"),
        ([1, 2, 3], "list"),
        (torch.zeros(8, dtype=torch.long), "block_size"),
    ],
)
def test_trainer_rejects_data_it_cannot_train_on(data, bad, words):
    tok, train, _ = data
    with pytest.raises(ValueError, match=words):
        Trainer(tiny_model(tok.vocab_size), bad, None, tiny_config())
    with pytest.raises(ValueError, match="val_data"):
        Trainer(tiny_model(tok.vocab_size), train, bad, tiny_config())


def test_trainer_rejects_a_config_of_the_wrong_kind(data):
    tok, train, val = data
    with pytest.raises(ValueError, match="TrainConfig"):
        Trainer(tiny_model(tok.vocab_size), train, val, {"max_iters": 3})


def test_trainer_picks_its_device_through_gptlib_device(data, monkeypatch):
    tok, train, val = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(device="auto"))
    assert trainer.device == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA"):
        Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(device="cuda"))
    with pytest.raises(ValueError, match="unknown device"):
        Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(device="gpu"))
