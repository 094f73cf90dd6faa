"""Number formats: bfloat16 training tracks float32 with float32 master weights, "auto" falls back to exactly
float32 where it finds no gain, formats a device cannot do are clear errors, checkpoints stay float32 and
resume exactly, and 16-bit generation keeps float32's greedy tokens or says where and by how little it differs."""

from __future__ import annotations

import pytest
import torch

from bench.generation import first_divergence
from gptlib import precision
from gptlib.checkpoint import load_checkpoint, load_model
from gptlib.config import GPTConfig
from gptlib.data import train_val_split
from gptlib.generate import in_dtype
from gptlib.kvcache import KVCache
from gptlib.model import GPT
from gptlib.tokenizer import CharTokenizer
from gptlib.train import TrainConfig, Trainer, _probe_step

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat. " * 40
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    tok = CharTokenizer.from_text(TEXT)
    return tok, *train_val_split(tok.encode_tensor(TEXT), val_fraction=0.1)


@pytest.fixture(autouse=True)
def fresh_probes():
    """Each test sees no earlier test's probe results (auto's verdicts are cached per device and shape)."""
    precision._probed.clear()
    yield
    precision._probed.clear()


def model_for(tok: CharTokenizer, seed: int = 0, dropout: float = 0.0) -> GPT:
    torch.manual_seed(seed)
    p = dropout
    cfg = GPTConfig(
        tok.vocab_size, 16, n_layer=2, n_head=2, n_embd=32, embd_pdrop=p, resid_pdrop=p, attn_pdrop=p
    )
    return GPT(cfg)


def config(**overrides) -> TrainConfig:
    settings = dict(
        max_iters=40,
        lr_decay_iters=40,  # fixed, so a run cut short follows the schedule of the whole one
        batch_size=8,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_iters=5,
        eval_interval=None,
    )
    return TrainConfig(**(settings | {"progress": False} | overrides))


def losses(trainer: Trainer) -> list[float]:
    return [h["train_loss"] for h in trainer.history]


def test_bfloat16_training_tracks_float32(data):
    tok, train, val = data
    runs = {}
    for dtype in ("float32", "bfloat16"):
        trainer = Trainer(model_for(tok), train, val, config(dtype=dtype))
        trainer.run()
        runs[dtype] = trainer
    assert runs["bfloat16"].dtype == torch.bfloat16 and runs["float32"].dtype == torch.float32
    f32, b16 = losses(runs["float32"]), losses(runs["bfloat16"])
    assert f32 != b16  # the passes really ran in another format
    assert b16[-1] < b16[0] - 1.0  # it learns
    # Same weights, same batches: step by step the losses stay within bfloat16's few digits of float32's.
    assert max(abs(a - b) for a, b in zip(f32, b16, strict=True)) < 0.05
    assert runs["bfloat16"].estimate_loss()["val"] == pytest.approx(
        runs["float32"].estimate_loss()["val"], abs=0.05
    )


def test_bfloat16_keeps_float32_weights_gradients_optimizer_state_and_loss(data):
    tok, train, val = data
    trainer = Trainer(model_for(tok), train, val, config(dtype="bfloat16", max_iters=3))
    trainer.run()
    model = trainer.model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    state = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    assert state and all(v.dtype == torch.float32 for v in state)
    x, y = train[:16].view(1, 16), train[1:17].view(1, 16)
    with precision.autocast(CPU, torch.bfloat16):
        logits, loss = model(x, y)
    assert logits.dtype == torch.bfloat16  # the matmuls ran in bfloat16 ...
    assert loss.dtype == torch.float32  # ... the log-softmax over the vocabulary did not


def test_auto_without_a_measured_gain_is_exactly_float32(data, monkeypatch):
    tok, train, val = data
    calls = []

    def no_gain(run, dtype, device, rounds=3):
        calls.append(dtype)
        return 1.02  # faster, but by less than AUTO_MIN_SPEEDUP

    monkeypatch.setattr(precision, "fast_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(precision, "probe_speedup", no_gain)
    runs = {}
    for dtype in ("float32", "auto"):
        trainer = Trainer(model_for(tok, dropout=0.1), train, val, config(dtype=dtype))
        trainer.run()
        runs[dtype] = trainer
    assert calls == [torch.bfloat16]  # auto asked the probe, once
    assert runs["auto"].dtype == torch.float32
    assert runs["auto"].history == runs["float32"].history  # bit for bit, dropout included
    for a, b in zip(runs["auto"].model.parameters(), runs["float32"].model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_auto_takes_the_fast_format_where_measured_faster_and_probes_once_per_shape(data, monkeypatch):
    tok, train, val = data
    calls = []

    def gain(run, dtype, device, rounds=3):
        calls.append(dtype)
        return 2.0

    monkeypatch.setattr(precision, "fast_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(precision, "probe_speedup", gain)
    first = Trainer(model_for(tok), train, val, config(dtype="auto"))
    second = Trainer(model_for(tok, seed=1), train, val, config(dtype="auto"))
    assert first.dtype == second.dtype == torch.bfloat16
    assert len(calls) == 1  # the same device and shapes: the second trainer reuses the verdict
    Trainer(model_for(tok), train, val, config(dtype="auto", batch_size=4))
    assert len(calls) == 2  # another batch size is another shape


def test_an_auto_run_resumes_in_the_format_it_chose_whatever_a_new_probe_says(data, monkeypatch, tmp_path):
    tok, train, val = data
    verdict = {"speedup": 2.0}
    monkeypatch.setattr(precision, "fast_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(precision, "probe_speedup", lambda run, dtype, device, rounds=3: verdict["speedup"])
    ckpt = tmp_path / "auto.pt"
    whole = Trainer(model_for(tok), train, val, config(dtype="auto"))
    whole.run()
    precision._probed.clear()
    first = Trainer(model_for(tok), train, val, config(dtype="auto", max_iters=20, checkpoint_path=str(ckpt)))
    first.run()
    assert load_checkpoint(ckpt)["trainer"]["dtype"] == "bfloat16"
    precision._probed.clear()
    verdict["speedup"] = 1.0  # this time the probe finds no gain: a fresh run would be float32
    assert Trainer(model_for(tok), train, val, config(dtype="auto")).dtype == torch.float32
    resumed = Trainer(model_for(tok), train, val, config(dtype="auto", resume_from=str(ckpt)))
    assert resumed.dtype == torch.bfloat16
    resumed.run()
    assert resumed.history == whole.history


def test_auto_on_a_cpu_without_bfloat16_is_float32_without_probing(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(
        precision, "probe_speedup", lambda *a, **k: pytest.fail("no probe without a fast format")
    )
    assert precision.fast_dtype(CPU) is None
    assert precision.choose("auto", CPU, key=("x",), run=lambda d: lambda: None) == torch.float32


def test_the_real_probe_leaves_the_model_and_the_random_generators_alone(data):
    tok, train, val = data
    model = model_for(tok, dropout=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    speedup = precision.probe_speedup(lambda d: _probe_step(model, 8, CPU, d), torch.bfloat16, CPU, rounds=1)
    assert speedup > 0
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's generator: not one number drawn
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_formats_a_device_cannot_do_are_clear_errors(data, monkeypatch):
    tok, train, val = data
    with pytest.raises(ValueError, match=r"float16.*'cpu'.*bfloat16"):
        precision.check_dtype("float16", CPU)
    with pytest.raises(ValueError, match=r"float16.*'cpu'.*Use one of: float32, bfloat16"):
        Trainer(model_for(tok), train, val, config(dtype="float16"))
    with pytest.raises(ValueError, match="TrainConfig.dtype must be one of"):
        config(dtype="fp8")
    # A CUDA GPU older than Ampere (compute capability 8.0) has no bfloat16: float16 is its format.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    gpu = torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda'.*Tesla T4.*7\.5.*float16"):
        precision.check_dtype("bfloat16", gpu)
    precision.check_dtype("float16", gpu)  # no error
    assert precision.fast_dtype(gpu) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert precision.fast_dtype(gpu) == torch.bfloat16
    precision.check_dtype("bfloat16", gpu)


def test_float16_trains_through_a_grad_scaler_and_resumes_with_its_scale(data, monkeypatch, tmp_path):
    """float16 is a GPU format; letting the CPU run it here exercises the Trainer's scaler path."""
    tok, train, val = data
    monkeypatch.setattr(precision, "supported", lambda device: ("float32", "bfloat16", "float16"))
    ckpt = tmp_path / "f16.pt"
    whole = Trainer(model_for(tok), train, val, config(dtype="float16", max_iters=20))
    assert isinstance(whole.grad_scaler, torch.amp.GradScaler)
    whole.run()
    assert all(p.dtype == torch.float32 for p in whole.model.parameters())
    first = Trainer(
        model_for(tok), train, val, config(dtype="float16", max_iters=10, checkpoint_path=str(ckpt))
    )
    first.run()
    assert load_checkpoint(ckpt)["trainer"]["grad_scaler"]["scale"] == first.grad_scaler.get_scale()
    resumed = Trainer(
        model_for(tok), train, val, config(dtype="float16", max_iters=20, resume_from=str(ckpt))
    )
    resumed.run()
    assert resumed.history == whole.history
    f32 = Trainer(model_for(tok), train, val, config(max_iters=20))
    f32.run()
    assert losses(whole)[-1] == pytest.approx(losses(f32)[-1], abs=0.05)


def test_a_bfloat16_run_checkpoints_float32_weights_and_resumes_exactly(data, tmp_path):
    tok, train, val = data
    ckpt = tmp_path / "bf16.pt"
    whole = Trainer(model_for(tok, dropout=0.1), train, val, config(dtype="bfloat16"))
    whole.run()
    half = Trainer(
        model_for(tok, dropout=0.1),
        train,
        val,
        config(dtype="bfloat16", max_iters=20, checkpoint_path=str(ckpt)),
    )
    half.run()
    weights = load_checkpoint(ckpt)["model"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    model, _ = load_model(ckpt)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    resumed = Trainer(
        model_for(tok, dropout=0.1), train, val, config(dtype="bfloat16", resume_from=str(ckpt))
    )
    resumed.run()
    assert resumed.history == whole.history
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def trained(data) -> GPT:
    """A model trained enough that its greedy choices are clear, not near-ties between random logits."""
    tok, train, val = data
    model = model_for(tok)
    Trainer(model, train, val, config(max_iters=150)).run()
    return model.eval()


def test_bfloat16_generation_keeps_float32_greedy_tokens_or_says_how_close_the_call_was(data, trained):
    tok, _, _ = data
    prompt = torch.tensor([tok.encode("the ")])
    f32 = trained.generate(prompt, 40)
    b16 = trained.generate(prompt, 40, dtype="bfloat16")
    assert all(p.dtype == torch.float32 for p in trained.parameters())  # a copy ran in bfloat16
    assert b16.dtype == torch.long and b16.shape == f32.shape
    div = first_divergence(trained, f32, b16, prompt.size(1))
    if div["position"] is None:
        assert torch.equal(f32, b16) and div["same_tokens"] == 40
    else:
        # Only a near-tie may go the other way: bfloat16 keeps 3 significant digits.
        assert torch.equal(f32[:, : div["position"]], b16[:, : div["position"]])
        assert 0 <= div["logit_margin"] < 0.25


def test_first_divergence_finds_the_first_differing_token_and_float32s_margin(trained, data):
    tok, _, _ = data
    prompt = torch.tensor([tok.encode("the ")])
    f32 = trained.generate(prompt, 10)
    other = f32.clone()
    other[0, 7] = (other[0, 7] + 1) % tok.vocab_size
    div = first_divergence(trained, f32, other, prompt.size(1))
    assert div["position"] == 7 and div["same_tokens"] == 3
    with torch.no_grad():
        last = trained(f32[:, :7])[0][0, -1]
    assert div["logit_margin"] == pytest.approx((last[f32[0, 7]] - last[other[0, 7]]).item())
    assert div["logit_margin"] > 0  # greedy took float32's best


def test_a_16bit_copy_keeps_its_kv_cache_in_16_bits_and_the_model_untouched(trained, monkeypatch):
    assert in_dtype(trained, None) is trained
    assert in_dtype(trained, "float32") is trained
    copy = in_dtype(trained, "bfloat16")
    assert copy is not trained and all(p.dtype == torch.bfloat16 for p in copy.parameters())
    cache = KVCache(len(copy.blocks), copy.block_size)
    with torch.inference_mode():
        copy(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    assert cache.layers[0].k.dtype == torch.bfloat16 and cache.length == 3
    # "auto": the 16-bit copy where the probe measures it faster, the model itself where not.
    monkeypatch.setattr(precision, "fast_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(precision, "probe_speedup", lambda *a, **k: 1.0)
    assert in_dtype(trained, "auto") is trained
    precision._probed.clear()
    monkeypatch.setattr(precision, "probe_speedup", lambda *a, **k: 1.5)
    assert next(in_dtype(trained, "auto").parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float16.*'cpu'"):
        trained.generate(torch.zeros(1, 1, dtype=torch.long), 2, dtype="float16")
