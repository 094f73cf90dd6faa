"""Checkpoints: round trips, atomic writes, exact resumes and the errors for wrong files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gptlib.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from gptlib.config import GPTConfig
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer
from gptlib.train import TrainConfig, Trainer

TEXT = "a stitch in time saves nine; a rolling stone gathers no moss. " * 30


@pytest.fixture(scope="module")
def data():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode_tensor(TEXT)
    n = int(0.9 * len(ids))
    return tok, ids[:n], ids[n:]


def tiny_model(vocab_size: int, dropout: float = 0.0, seed: int = 0, n_embd: int = 16) -> GPT:
    torch.manual_seed(seed)
    p = dropout
    cfg = GPTConfig(
        vocab_size, 8, n_layer=1, n_head=2, n_embd=n_embd, embd_pdrop=p, resid_pdrop=p, attn_pdrop=p
    )
    return GPT(cfg)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(
        max_iters=12,
        batch_size=4,
        learning_rate=1e-2,
        min_lr=1e-3,
        warmup_iters=3,
        eval_interval=4,
        eval_iters=2,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


class Custom:
    """Any class: a pickle of it would run code on load, so weights_only refuses it."""


def test_load_model_gives_back_the_same_model_and_tokenizer(tmp_path, data):
    tok, train, val = data
    model = tiny_model(tok.vocab_size, dropout=0.1)
    Trainer(model, train, val, tiny_config(max_iters=3)).run()
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, tokenizer=tok)
    assert path == tmp_path / "sub" / "m.pt"
    loaded, loaded_tok = load_model(path)
    assert loaded_tok == tok
    assert loaded.config == model.config
    assert not loaded.training  # ready to sample
    x = val[:8].unsqueeze(0)
    model.eval()
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_a_checkpoint_is_plain_data_that_loads_with_weights_only(tmp_path, data):
    tok, train, val = data
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(max_iters=4), tokenizer=tok)
    trainer.run()
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "gptlib.checkpoint" and ckpt["version"] == 2
    assert ckpt["model_config"] == trainer.model.config.to_dict()
    assert ckpt["tokenizer"] == tok.to_dict()
    state = ckpt["trainer"]
    assert state["step"] == 4 and len(state["history"]) == 4
    assert TrainConfig.from_dict(state["train_config"]) == trainer.config
    assert set(state["rng_state"]) >= {"torch", "batch"}
    assert state["optimizer_params"][0][0] == "blocks.0.attn.key.weight"  # the state says whose it is


def test_load_model_without_a_tokenizer_gives_none(tmp_path, data):
    tok, _, _ = data
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(tok.vocab_size))
    assert load_model(path)[1] is None


def test_a_failed_save_leaves_the_previous_checkpoint_intact_and_no_temp_file(tmp_path, data, monkeypatch):
    tok, _, _ = data
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model(tok.vocab_size), trainer={"step": 1})
    before = path.read_bytes()

    def save_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, tiny_model(tok.vocab_size, seed=1), trainer={"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["trainer"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_an_interrupted_save_also_leaves_no_trace(tmp_path, data, monkeypatch):
    tok, _, _ = data
    path = tmp_path / "m.pt"

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_model(tok.vocab_size))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_resumed_run_has_exactly_the_losses_of_an_uninterrupted_one(tmp_path, data, dropout):
    tok, train, val = data
    cfg = tiny_config()

    straight = Trainer(tiny_model(tok.vocab_size, dropout), train, val, cfg, tokenizer=tok)
    expected = straight.run()

    interrupt = [lambda t, e: t.stop() if t.step == 6 else None]
    first = Trainer(tiny_model(tok.vocab_size, dropout), train, val, cfg, callbacks=interrupt, tokenizer=tok)
    first.run()
    path = first.save_checkpoint(tmp_path / "half.pt")
    del first

    # As in a new process: other weights, other global random state, a new trainer.
    torch.manual_seed(999)
    torch.rand(1000)
    second = Trainer(tiny_model(tok.vocab_size, dropout, seed=5), train, val, cfg, tokenizer=tok)
    second.resume(path)
    assert second.step == 6
    resumed = second.run()

    assert resumed == expected  # every loss and learning rate, bit for bit
    for a, b in zip(straight.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_from_in_the_config_and_checkpoints_written_while_training(tmp_path, data):
    tok, train, val = data
    path = tmp_path / "run.pt"
    cfg = tiny_config(checkpoint_path=str(path))
    expected = Trainer(tiny_model(tok.vocab_size, 0.1), train, val, cfg.replace(checkpoint_path=None)).run()

    stops = [lambda t, e: t.stop() if t.step == 5 else None]
    Trainer(tiny_model(tok.vocab_size, 0.1), train, val, cfg, callbacks=stops).run()
    assert load_checkpoint(path)["trainer"]["step"] == 5  # the end of a stopped run is saved too

    resumed = Trainer(tiny_model(tok.vocab_size, 0.1, seed=3), train, val, cfg.replace(resume_from=str(path)))
    assert resumed.step == 5
    assert resumed.run() == expected
    assert load_checkpoint(path)["trainer"]["step"] == 12


def test_checkpoints_are_saved_at_each_evaluation(tmp_path, data):
    tok, train, val = data
    path = tmp_path / "run.pt"
    saved = []
    cfg = tiny_config(checkpoint_path=str(path))
    Trainer(
        tiny_model(tok.vocab_size),
        train,
        val,
        cfg,
        callbacks=[
            lambda t, e: saved.append(load_checkpoint(path)["trainer"]["step"]) if e == "eval" else None
        ],
    ).run()
    assert saved == [4, 8, 12]


def test_missing_file_gives_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="folder"):
        load_model(tmp_path)


def test_files_that_are_not_gptlib_checkpoints_are_refused(tmp_path, data):
    tok, _, _ = data
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a gptlib checkpoint"):
        load_checkpoint(text)

    bare = tmp_path / "state_dict.pt"
    torch.save(tiny_model(tok.vocab_size).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a gptlib checkpoint"):
        load_model(bare)

    unsafe = tmp_path / "pickle.pt"
    torch.save({"format": "gptlib.checkpoint", "thing": Custom()}, unsafe)
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_checkpoint(unsafe)

    future = tmp_path / "future.pt"
    torch.save({"format": "gptlib.checkpoint", "version": 99}, future)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(future)


def test_weights_that_do_not_fit_their_config_are_a_checkpoint_error(tmp_path, data):
    tok, _, _ = data
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(tok.vocab_size))
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model"]["head.ln_f.weight"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(path)


def test_resuming_into_a_different_model_names_the_difference(tmp_path, data):
    tok, train, val = data
    path = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(max_iters=2)).save_checkpoint(
        tmp_path / "c.pt"
    )
    other = Trainer(tiny_model(tok.vocab_size, n_embd=32), train, val, tiny_config())
    with pytest.raises(CheckpointError, match="n_embd: checkpoint 16, model 32"):
        other.resume(path)


def test_resuming_with_a_different_tokenizer_is_refused(tmp_path, data):
    tok, train, val = data
    path = Trainer(
        tiny_model(tok.vocab_size), train, val, tiny_config(max_iters=2), tokenizer=tok
    ).save_checkpoint(tmp_path / "c.pt")
    other_tok = CharTokenizer([chr(ord("A") + i) for i in range(tok.vocab_size)])
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, tiny_config(), tokenizer=other_tok)
    with pytest.raises(CheckpointError, match="different tokenizer"):
        trainer.resume(path)


def test_a_model_only_checkpoint_cannot_be_resumed(tmp_path, data):
    tok, train, val = data
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(tok.vocab_size))
    with pytest.raises(CheckpointError, match="no training state"):
        Trainer(tiny_model(tok.vocab_size), train, val, tiny_config()).resume(path)


def test_keys_of_a_compiled_model_load_into_a_plain_one(tmp_path, data):
    tok, _, _ = data
    model = tiny_model(tok.vocab_size)
    path = save_checkpoint(tmp_path / "m.pt", model)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {f"_orig_mod.{k}": v for k, v in ckpt["model"].items()}  # as torch.compile names them
    torch.save(ckpt, path)
    loaded, _ = load_model(path)
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


# --- checkpoints of gptlib 0.1 (format 1) -----------------------------------------------------------------
# tests/data/gptlib_v1_checkpoint.pt was written by gptlib 0.1.0 (commit 8adee64): a 1-layer GPT (n_embd 16,
# dropout 0.1) trained on OLD_TEXT for 3 of 6 steps (lr 1e-2 -> 1e-3, warmup 2, batch 4, evaluations at steps 3
# and 6 of 2 batches), with the parameter names of the time (stem.*, head.head.*) and the Trainer's entries
# at the top level. gptlib_v1_expected.pt holds what that version computed: the logits of the saved model on
# `idx`, and the history of the uninterrupted 6-step run.

DATA = Path(__file__).parent / "data"
OLD_TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def test_a_checkpoint_of_gptlib_0_1_loads_with_its_old_parameter_names():
    ckpt = torch.load(DATA / "gptlib_v1_checkpoint.pt", weights_only=True)
    assert ckpt["version"] == 1 and "stem.pos_emb" in ckpt["model"] and "head.head.weight" in ckpt["model"]
    expected = torch.load(DATA / "gptlib_v1_expected.pt", weights_only=True)
    model, tok = load_model(DATA / "gptlib_v1_checkpoint.pt")
    assert tok.decode(expected["idx"][0]) == "the cat"
    with torch.no_grad():
        logits, _ = model(expected["idx"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-6, rtol=1e-6)
    upgraded = load_checkpoint(DATA / "gptlib_v1_checkpoint.pt")
    assert upgraded["version"] == 2 and upgraded["trainer"]["step"] == 3 and "step" not in upgraded


def test_a_run_of_gptlib_0_1_resumes_where_it_stopped():
    # Its optimizer state lists the parameters in the order of their old names: a resume must give
    # each parameter its own moments, so the losses of steps 4-6 are those the old run had.
    expected = torch.load(DATA / "gptlib_v1_expected.pt", weights_only=True)["history"]
    tok = CharTokenizer.from_text(OLD_TEXT)
    ids = tok.encode_tensor(OLD_TEXT)
    n = int(0.9 * len(ids))
    model = tiny_model(tok.vocab_size, dropout=0.1)  # the saved run's model, its weights to be replaced
    cfg = tiny_config(
        max_iters=6, warmup_iters=2, eval_interval=3, resume_from=str(DATA / "gptlib_v1_checkpoint.pt")
    )
    trainer = Trainer(model, ids[:n], ids[n:], cfg, tokenizer=tok)
    assert trainer.step == 3
    history = trainer.run()
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    for got, want in zip(history, expected, strict=True):
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (got["step"], key)


def test_a_saved_state_dict_in_the_old_names_loads_into_gpt(data):
    tok, _, _ = data
    model = tiny_model(tok.vocab_size)
    old = {
        k.replace("embeddings.", "stem.").replace("head.proj.", "head.head."): v
        for k, v in model.state_dict().items()
    }
    assert "stem.tok_emb.weight" in old and "head.head.weight" in old
    other = tiny_model(tok.vocab_size, seed=1)
    other.load_state_dict(old)  # strict: every key found, under its new name
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
