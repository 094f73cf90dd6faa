"""The command line, run in-process on a tiny corpus and a tiny model; files go to tmp_path only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptlib import cli
from gptlib.checkpoint import load_checkpoint, load_model
from gptlib.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60

TINY = ["--preset", "gpt-nano", "--n-layer", "1", "--n-embd", "12", "--block-size", "8", "--batch-size", "4"]
FAST = ["--eval-interval", "5", "--eval-iters", "1", "--no-progress", "--sample-tokens", "20"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "fox.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def checkpoint(tmp_path, corpus) -> Path:
    out = tmp_path / "fox.pt"
    assert (
        cli.main(["train", "--corpus", str(corpus), *TINY, *FAST, "--max-iters", "10", "--out", str(out)])
        == 0
    )
    return out


def test_help_documents_every_command(capsys):
    for argv, words in [
        ([], ["train", "sample", "pydoc"]),
        (
            ["train"],
            ["--corpus", "--preset", "--n-layer", "--block-size", "--max-iters", "--lr", "--dropout"],
        ),
        (["train"], ["--seed", "--out", "--resume", "--device", "--eval-interval", "--batch-size"]),
        (["sample"], ["--checkpoint", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p"]),
        (["sample"], ["--seed", "--greedy"]),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*argv, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        for word in words:
            assert word in out, f"{word!r} missing from `gptlib {' '.join(argv)} --help`"


def test_no_arguments_runs_train_with_the_default_recipe(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "cmd_train", lambda args: seen.update(vars(args)) or 0)
    assert cli.main([]) == 0
    assert seen["command"] == "train" and seen["corpus"] == "pydoc"
    assert seen["sample_tokens"] > 0  # the main job ends with samples
    for key in ("preset", "block_size", "max_iters", "batch_size", "lr", "dropout", "seed"):
        assert seen[key] == cli.RECIPE[key], key


def test_train_reports_and_saves_a_checkpoint_that_sample_reads(capsys, corpus, checkpoint):
    out = capsys.readouterr().out
    assert "parameters" in out
    assert "step 5: train loss" in out and "step 10: train loss" in out
    assert "final validation loss" in out and "2 sample(s) of 20 characters:" in out
    ckpt = load_checkpoint(checkpoint)
    assert ckpt["trainer"]["step"] == 10
    assert ckpt["model_config"]["n_layer"] == 1 and ckpt["model_config"]["n_embd"] == 12
    model, tok = load_model(checkpoint)
    assert set(tok.chars) == set(TEXT)

    assert (
        cli.main(["sample", "--checkpoint", str(checkpoint), "--prompt", "the ", "--max-new-tokens", "15"])
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("the ") and len(text.rstrip("\n")) >= len("the ") + 10


def test_sample_is_reproducible_with_a_seed_and_greedy_is_deterministic(capsys, checkpoint):
    capsys.readouterr()  # the training run's report

    def sample(*extra):
        argv = ["sample", "--checkpoint", str(checkpoint), "--max-new-tokens", "30", *extra]
        assert cli.main(argv) == 0
        return capsys.readouterr().out

    assert sample("--seed", "1") == sample("--seed", "1")
    assert sample("--greedy", "--seed", "1") == sample("--greedy", "--seed", "2")
    two = sample("--num-samples", "2", "--top-k", "3", "--top-p", "0.9", "--temperature", "0.8")
    assert two.count("-" * 40) == 1


def test_a_prompt_with_unknown_characters_is_a_clear_error(capsys, checkpoint):
    code = cli.main(["sample", "--checkpoint", str(checkpoint), "--prompt", "the Zebra"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not in the vocabulary" in err and "'Z'" in err
    assert "Traceback" not in err


def test_bad_sampling_settings_and_missing_checkpoints_exit_with_2(capsys, tmp_path, checkpoint):
    assert cli.main(["sample", "--checkpoint", str(checkpoint), "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    assert cli.main(["sample", "--checkpoint", str(notes)]) == 2
    assert "not a gptlib checkpoint" in capsys.readouterr().err


def test_bad_training_options_exit_with_2(capsys, corpus, tmp_path):
    out = str(tmp_path / "x.pt")
    assert cli.main(["train", "--corpus", str(corpus), *TINY, "--n-head", "5", "--out", out]) == 2
    assert "divisible by n_head" in capsys.readouterr().err
    assert cli.main(["train", "--corpus", str(tmp_path / "missing.txt"), "--out", out]) == 2
    assert capsys.readouterr().err.startswith("gptlib: error:")
    assert cli.main(["train", "--corpus", str(corpus), *TINY, "--resume", "--out", out]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_matches_an_uninterrupted_run(
    capsys, monkeypatch, corpus, tmp_path
):
    argv = ["train", "--corpus", str(corpus), *TINY, *FAST, "--dropout", "0.1", "--max-iters", "20"]
    straight = tmp_path / "straight.pt"
    assert cli.main([*argv, "--out", str(straight)]) == 0

    real_step = Trainer.train_step

    def ctrl_c_at_step_7(self):
        if self.step == 7:
            raise KeyboardInterrupt
        return real_step(self)

    broken = tmp_path / "broken.pt"
    monkeypatch.setattr(Trainer, "train_step", ctrl_c_at_step_7)
    assert cli.main([*argv, "--out", str(broken)]) == 130
    assert "holds step 5" in capsys.readouterr().err  # the evaluation at step 5 saved it
    monkeypatch.undo()

    assert cli.main([*argv, "--resume", "--out", str(broken)]) == 0
    assert "resumed from" in capsys.readouterr().out
    resumed, expected = load_checkpoint(broken), load_checkpoint(straight)
    assert resumed["trainer"]["step"] == 20
    assert resumed["trainer"]["history"] == expected["trainer"]["history"]
    assert all(resumed["model"][k].equal(v) for k, v in expected["model"].items())

    assert cli.main([*argv[:-1], "25", "--resume", "--out", str(broken)]) == 0  # train on past the old end
    assert load_checkpoint(broken)["trainer"]["step"] == 25


def test_resume_with_other_model_options_is_refused(capsys, corpus, checkpoint):
    argv = ["train", "--corpus", str(corpus), *TINY, *FAST, "--n-embd", "24", "--max-iters", "20"]
    assert cli.main([*argv, "--resume", "--out", str(checkpoint)]) == 2
    assert "n_embd: checkpoint 12, model 24" in capsys.readouterr().err


def test_default_checkpoint_goes_to_runs_in_the_current_folder(monkeypatch, tmp_path, corpus):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--corpus", str(corpus), *TINY, *FAST, "--max-iters", "2"]) == 0
    assert load_checkpoint(tmp_path / "runs" / "fox.pt")["trainer"]["step"] == 2


def test_python_dash_m_gptlib_runs_the_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "gptlib", "sample", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--checkpoint" in result.stdout
    assert list(tmp_path.iterdir()) == []
