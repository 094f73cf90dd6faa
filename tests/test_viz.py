"""gptlib.viz without a browser: the maps, the figures (masked cells grey, labels, colour scale), the errors
and the explorer's state. tests/test_browser.py drives the explorer in a real browser."""

from __future__ import annotations

import base64
import io
import math
import re

import ipywidgets as widgets
import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba

from gptlib import GPT, GPTConfig
from gptlib.tokenizer import CharTokenizer
from gptlib.viz import (
    AttentionExplorer,
    as_maps,
    cell_clock,
    encode_prompt,
    figure_to_png,
    model_attention,
    plot_all_heads,
    plot_attention,
    plot_compare,
    plot_query,
    save_png,
    token_labels,
    visible_token,
)
from gptlib.viz.maps import attention_modules
from gptlib.viz.plots import MASKED_COLOR, MAX_WIDTH, MIN_FONT

TEXT = "to be or not to be\nthat is the question"


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text(TEXT)


def tiny_gpt(tokenizer: CharTokenizer, seed: int = 0, block_size: int = 16) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16)
    return GPT(config)


def random_maps(L: int = 2, H: int = 3, T: int = 6, seed: int = 0) -> torch.Tensor:
    """Causal attention weights: a softmax over random scores with the future masked."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(L, H, T, T, generator=g) * 2
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


def pixel(fig, ax, key: int, query: int) -> tuple[int, int, int]:
    """The RGB colour drawn at the centre of cell (query, key) of an attention map."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    x, y = ax.transData.transform((key, query))
    return tuple(int(v) for v in rgba[int(round(rgba.shape[0] - y)), int(round(x)), :3])


def rgb(color) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in to_rgba(color)[:3])


def same_color(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 2  # 8-bit rounding


# --- tokens -------------------------------------------------------------------------------------------


def test_whitespace_is_visible_in_labels():
    assert visible_token(" ") == "␣"
    assert visible_token("\n") == "⏎"
    assert visible_token("\t") == "⇥"
    assert visible_token("a b") == "a␣b"
    assert visible_token("") == "∅"
    assert visible_token("\x00") == "\\x00"
    assert token_labels(["a", " ", "\n"]) == ["a", "␣", "⏎"]
    with pytest.raises(ValueError, match="token 1 is 3"):
        token_labels(["a", 3])


def test_encode_prompt_gives_ids_and_visible_labels(tokenizer):
    ids, labels = encode_prompt("to be\nor", tokenizer, block_size=16)
    assert ids == tokenizer.encode("to be\nor")
    assert labels == ["t", "o", "␣", "b", "e", "⏎", "o", "r"]


def test_encode_prompt_errors(tokenizer):
    with pytest.raises(ValueError, match="20 tokens long, but the model's block_size .* is 16"):
        encode_prompt("to be or not to be t", tokenizer, block_size=16)
    with pytest.raises(ValueError, match="not in the vocabulary: 'X'"):
        encode_prompt("to be X", tokenizer)
    with pytest.raises(ValueError, match="empty"):
        encode_prompt("", tokenizer)
    with pytest.raises(ValueError, match="encode"):
        encode_prompt("hi", object())


def test_encode_prompt_turns_a_dict_tokenizers_keyerror_into_valueerror():
    class DictTokenizer:  # the stoi[c] tokenizer of Karpathy's lecture
        stoi = {"a": 0, "b": 1}

        def encode(self, s):
            return [self.stoi[c] for c in s]

        def decode(self, ids):
            return "".join("ab"[i] for i in ids)

    assert encode_prompt("ab", DictTokenizer()) == ([0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="does not know: 'z'"):
        encode_prompt("az", DictTokenizer())


# --- maps ---------------------------------------------------------------------------------------------


def test_as_maps_accepts_a_tensor_an_array_and_a_list_of_layers():
    maps = random_maps(L=2, H=3, T=5)
    a = as_maps(maps)
    assert a.shape == (2, 3, 5, 5) and a.dtype == np.float32
    np.testing.assert_allclose(as_maps(maps.numpy()), a)
    np.testing.assert_allclose(as_maps([maps[0], maps[1]]), a)  # (H, T, T) per layer
    np.testing.assert_allclose(as_maps([maps[0][None], maps[1][None]]), a)  # (1, H, T, T) per layer


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(4, 4).softmax(-1), "rank 4.*got rank 2.*plot_attention"),
        (torch.rand(2, 4, 4).softmax(-1), "rank 3.*one layer"),
        (torch.rand(2, 1, 2, 4, 4).softmax(-1), "rank 5.*batch"),
        (torch.rand(2, 2, 3, 4).softmax(-1), r"T query rows and T key columns; got shape \(2, 2, 3, 4\)"),
        ([torch.rand(2, 2, 4, 4).softmax(-1)], "batch of 2 prompts"),
        ([torch.rand(2, 4, 4), torch.rand(3, 4, 4)], "differ in shape"),
        ([], "empty list"),
        ("weights", "torch.Tensor or numpy array"),
    ],
)
def test_as_maps_rejects_wrong_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        as_maps(bad)


def test_as_maps_rejects_scores_and_nans():
    scores = torch.randn(1, 1, 4, 4) * 3
    with pytest.raises(ValueError, match="before the softmax"):
        as_maps(scores)
    nan = random_maps(1, 1, 4)
    nan[0, 0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN .*\(0, 0, 2, 0\).*all -inf"):
        as_maps(nan)


def test_model_attention_matches_gpt_attention_maps_and_restores_train_mode(tokenizer):
    model = tiny_gpt(tokenizer)
    idx = torch.tensor([tokenizer.encode("to be or")])
    model.train()
    maps = model_attention(model, idx)
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    expected = torch.stack([w[0] for w in model.attention_maps(idx)]).numpy()
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-6)
    assert maps.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)


class HookedGPT(GPT):
    """A gptlib GPT without attention_maps, so the hooks on its CausalSelfAttention modules are used."""

    attention_maps = None


def test_hooks_find_the_innermost_attention_modules_and_match_attention_maps(tokenizer):
    ref = tiny_gpt(tokenizer).eval()
    hooked = HookedGPT(ref.config).eval()
    hooked.load_state_dict(ref.state_dict())
    assert attention_modules(hooked) == [b.attn for b in hooked.blocks]  # not the Blocks, which pass it on
    idx = torch.tensor([tokenizer.encode("that is")])
    logits_before, _ = hooked(idx)
    maps = model_attention(hooked, idx)
    expected = torch.stack([w[0] for w in ref.attention_maps(idx)]).numpy()
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-6)
    logits_after, _ = hooked(idx)  # the hooks are gone and the model's output is unchanged
    torch.testing.assert_close(logits_after, logits_before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in hooked.modules())


class LearnerAttention(nn.Module):
    """A learner's single-head attention with the documented contract: return_weights=True -> (y, weights)."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)

    def forward(self, x, return_weights=False):
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, T, C) each
        T = x.size(1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, T, T)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        y = att @ v
        return (y, att[:, None]) if return_weights else y  # weights (B, 1, T, T)


class LearnerModel(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int = 8, n_layer: int = 3):
        super().__init__()
        self.block_size = 12
        self.emb = nn.Embedding(vocab_size, n_embd)
        self.attns = nn.ModuleList([LearnerAttention(n_embd) for _ in range(n_layer)])
        self.out = nn.Linear(n_embd, vocab_size)

    def forward(self, idx):
        x = self.emb(idx)
        for a in self.attns:
            x = x + a(x)  # positional call, no return_weights: the hooks add it
        return self.out(x)


def test_a_learners_model_works_through_hooks(tokenizer):
    torch.manual_seed(0)
    model = LearnerModel(tokenizer.vocab_size)
    idx = torch.tensor([tokenizer.encode("to be")])
    maps = model_attention(model, idx)
    assert maps.shape == (3, 1, 5, 5)
    x = model.emb(idx)
    with torch.no_grad():
        _, w0 = model.attns[0](x, return_weights=True)
    np.testing.assert_allclose(maps[0, 0], w0[0, 0].numpy(), atol=1e-6)
    explorer = AttentionExplorer(model, tokenizer, "to be")
    assert explorer.maps["model"].shape == (3, 1, 5, 5)
    with pytest.raises(ValueError, match="block_size .* is 12"):
        explorer.set_prompt("to be or not to")


def test_a_model_without_attention_weights_gets_a_clear_error(tokenizer):
    model = nn.Sequential(nn.Embedding(tokenizer.vocab_size, 4), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="attention_maps\\(idx\\) method.*return_weights=True"):
        model_attention(model, torch.tensor([[0, 1]]))


# --- figures ------------------------------------------------------------------------------------------


def test_plot_attention_labels_masks_grey_and_uses_a_fixed_scale():
    maps = random_maps(L=2, H=3, T=6)
    tokens = ["a", " ", "b", "\n", "c", "d"]
    fig = plot_attention(maps, tokens, layer=1, head=2)
    ax = fig.axes[0]
    assert ax.get_title() == "layer 1, head 2"
    assert ax.get_xlabel() == "key (attended to)" and ax.get_ylabel() == "query (attending)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "␣", "b", "⏎", "c", "d"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "␣", "b", "⏎", "c", "d"]
    (im,) = ax.images
    assert (im.norm.vmin, im.norm.vmax) == (0.0, 1.0)
    assert im.cmap.name.startswith("viridis")
    assert np.array_equal(np.ma.getmaskarray(im.get_array()), np.triu(np.ones((6, 6), dtype=bool), 1))
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "attention weight"  # the colour bar
    # Drawn: a masked cell is grey; an allowed cell of weight 0 is viridis' dark end, not grey.
    zero = torch.zeros(4, 4)
    zero[:, 0] = 1.0  # every query looks only at the first token: the other allowed cells are exactly 0
    fig = plot_attention(zero)
    ax = fig.axes[0]
    assert same_color(pixel(fig, ax, key=3, query=0), rgb(MASKED_COLOR))
    assert same_color(pixel(fig, ax, key=1, query=3), rgb(matplotlib.colormaps["viridis"](0.0)))
    assert same_color(pixel(fig, ax, key=0, query=3), rgb(matplotlib.colormaps["viridis"](1.0)))


def test_plot_attention_refuses_non_causal_weights_unless_told():
    full = torch.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="not causal: query 0 attends to the later key 1"):
        plot_attention(full)
    fig = plot_attention(full, causal=False)
    assert not np.ma.getmaskarray(fig.axes[0].images[0].get_array()).any()


def test_plot_attention_errors():
    maps = random_maps(L=2, H=3, T=4)
    with pytest.raises(ValueError, match="head must be an int in 0..2"):
        plot_attention(maps, layer=0, head=3)
    with pytest.raises(ValueError, match="got 3 tokens for attention maps over T=4"):
        plot_attention(maps, ["a", "b", "c"])


def test_plot_all_heads_has_one_thumbnail_per_head_and_frames_the_chosen_one():
    maps = random_maps(L=2, H=3, T=5)
    fig = plot_all_heads(maps, list("abcde"), highlight=(1, 2))
    thumbs = [ax for ax in fig.axes if ax.images]
    assert len(thumbs) == 6 and len(fig.axes) == 7  # 2 x 3 maps + a colour bar
    assert [ax.get_title() for ax in thumbs[:3]] == ["head 0", "head 1", "head 2"]
    assert thumbs[3].get_ylabel() == "layer 1"
    red = to_rgba("#e8402a")
    assert thumbs[5].spines["left"].get_edgecolor() == red
    assert thumbs[0].spines["left"].get_edgecolor() != red
    assert all((ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0, 1) for ax in thumbs)
    with pytest.raises(ValueError, match="layer must be an int in 0..1"):
        plot_all_heads(maps, highlight=(2, 0))


def test_plot_query_draws_the_chosen_rows_weights_as_bars():
    maps = random_maps(L=1, H=2, T=6)
    fig = plot_query(maps, list("abcdef"), 3, layer=0, head=1)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches if type(p).__name__ == "Rectangle" and p.get_width() == 0.8]
    np.testing.assert_allclose(heights, maps[0, 1, 3, :4].numpy(), atol=1e-6)  # keys 0..3 only
    assert any(p.get_label() == "masked (key after query)" for p in ax.patches)
    assert [line.get_label() for line in ax.lines if line.get_label().startswith("head")] == ["head 0"]
    assert ax.get_title() == "layer 0, head 1: query 3 (d) attends to"
    with pytest.raises(ValueError, match="query must be an int in 0..5"):
        plot_query(maps, None, 6)


def test_plot_compare_puts_checkpoints_side_by_side_on_one_scale():
    a, b = random_maps(seed=0), random_maps(seed=1)
    fig = plot_compare({"untrained": a, "trained": b}, list("abcdef"), layer=1, head=0)
    maps_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in maps_axes] == ["untrained", "trained"]
    assert len(fig.axes) == 3  # one colour bar for both
    np.testing.assert_allclose(np.ma.getdata(maps_axes[1].images[0].get_array()), b[1, 0].numpy())
    with pytest.raises(ValueError, match="different numbers of tokens"):
        plot_compare({"a": random_maps(T=4), "b": random_maps(T=5)})


def test_figures_save_as_png_atomically_without_touching_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    fig = plot_attention(random_maps(T=4), layer=0, head=0)
    path = save_png(fig, tmp_path / "sub" / "map.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[2] in (3, 4)
    assert [p.name for p in path.parent.iterdir()] == ["map.png"]  # no temp file left behind
    assert fig._repr_png_()[:4] == b"\x89PNG"  # shows itself in a notebook
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
    with pytest.raises(ValueError, match="ending in .png"):
        save_png(fig, tmp_path / "map.jpg")


# --- the explorer -------------------------------------------------------------------------------------


def state(explorer) -> dict[str, str]:
    """The data-* attributes of the explorer's status element."""
    return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', explorer._state.value))


def descendants(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from descendants(c)


def test_explorer_is_made_of_core_widgets_with_stable_classes(tokenizer):
    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be")
    modules = {w._view_module for w in descendants(explorer)}
    assert modules <= {"@jupyter-widgets/controls", "@jupyter-widgets/base"}, modules  # no custom JavaScript
    classes = {c for w in descendants(explorer) for c in w._dom_classes}
    for name in ("explorer", "view", "layer", "head", "query", "prompt", "run", "save", "image", "status"):
        assert f"gptlib-attn-{name}" in classes
    sliders = [w for w in descendants(explorer) if isinstance(w, widgets.IntSlider)]
    assert sliders and not any(s.continuous_update for s in sliders)
    assert explorer._image.layout.height == "500px"
    assert repr(explorer) == "AttentionExplorer(checkpoints=['model'], layers=2, heads=2, tokens=5)"


def test_explorer_redraws_and_reports_its_state(tokenizer):
    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be or", layer=1, head=1)
    s = state(explorer)
    assert (s["data-layer"], s["data-head"], s["data-view"], s["data-tokens"]) == ("1", "1", "head", "8")
    first = explorer._image.value
    assert first[:4] == b"\x89PNG"
    pictures = {first}
    for choice in [dict(head=0), dict(layer=0), dict(view="grid"), dict(view="query", query=3)]:
        explorer.show(**choice)
        pictures.add(explorer._image.value)
    assert len(pictures) == 5  # every change drew a different picture
    s = state(explorer)
    assert (s["data-view"], s["data-query"], s["data-renders"], s["data-error"]) == ("query", "3", "5", "0")
    explorer._layer.value = 1  # as the slider does it
    assert state(explorer)["data-layer"] == "1" and explorer._image.value not in pictures
    with pytest.raises(ValueError, match="head must be an int in 0..1"):
        explorer.show(head=2)
    with pytest.raises(ValueError, match="view must be one of"):
        explorer.show(view="compare")  # only with two checkpoints


def test_explorer_prompt_errors_show_in_the_widget_and_keep_the_picture(tokenizer):
    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be")
    picture = explorer._image.value
    explorer._prompt.value = "to be XYZ"
    explorer._run_button.click()
    assert "not in the vocabulary" in explorer._message.value and state(explorer)["data-error"] == "1"
    assert explorer._image.value == picture
    explorer._prompt.value = "to be or not to be that"
    explorer._run_button.click()
    assert "block_size" in explorer._message.value
    explorer._prompt.value = "that is"
    explorer._run_button.click()
    s = state(explorer)
    assert (s["data-tokens"], s["data-error"], s["data-query"]) == ("7", "0", "6")
    assert explorer._message.value == "" and explorer._image.value != picture
    with pytest.raises(ValueError, match="block_size"):
        explorer.set_prompt("to be or not to be that")


def test_explorer_compares_checkpoints_and_saves_png(tokenizer, tmp_path):
    a, b = tiny_gpt(tokenizer, seed=0), tiny_gpt(tokenizer, seed=1)
    explorer = AttentionExplorer({"untrained": a, "other": b}, tokenizer, "to be", save_dir=tmp_path)
    assert explorer._checkpoint.options == ("untrained", "other")
    explorer.show(view="compare", layer=1)
    fig = explorer.figure()
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["untrained", "other"]
    explorer._save.click()
    saved = tmp_path / "attention_untrained_compare_L1_H0.png"
    assert saved.read_bytes()[:4] == b"\x89PNG" and "saved" in explorer._message.value
    explorer.show(view="head", checkpoint="other")
    assert explorer.figure().axes[0].get_title() == "other: layer 1, head 0"


def test_explorer_on_raw_tensors(tokenizer):
    maps = random_maps(L=3, H=2, T=4)
    explorer = AttentionExplorer(maps, tokens=["a", " ", "b", "\n"])
    assert explorer._prompt.disabled and explorer._run_button.disabled
    assert explorer.tokens == ["a", "␣", "b", "⏎"]
    explorer.show(layer=2, head=1)
    assert [t.get_text() for t in explorer.figure().axes[0].get_xticklabels()] == explorer.tokens
    with pytest.raises(ValueError, match="needs a model"):
        explorer.set_prompt("ab")
    with pytest.raises(ValueError, match="got 3 tokens for maps over T=4"):
        AttentionExplorer(maps, tokens=["a", "b", "c"])
    with pytest.raises(ValueError, match="rank 3"):
        AttentionExplorer(maps[0])


def test_explorer_construction_errors(tokenizer):
    model = tiny_gpt(tokenizer)
    with pytest.raises(ValueError, match="give a tokenizer and a prompt"):
        AttentionExplorer(model)
    with pytest.raises(ValueError, match="not a mix"):
        AttentionExplorer({"m": model, "t": random_maps()}, tokenizer, "to")
    with pytest.raises(ValueError, match="block_size .* is 16"):
        AttentionExplorer(model, tokenizer, "to be or not to be that")
    other = GPT(model.config.replace(n_layer=3))
    with pytest.raises(ValueError, match="differ in shape"):
        AttentionExplorer({"a": model, "b": other}, tokenizer, "to be")


def test_a_click_that_overtakes_the_typed_text_neither_wins_nor_undoes_it(tokenizer):
    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be")
    writes = []
    explorer._prompt.observe(lambda change: writes.append(change["new"]), names="value")
    # "that is" was typed and Run clicked; the click reaches the kernel first, with the old box.
    explorer._run_button.click()
    assert state(explorer)["data-prompt"] == "to be"
    assert writes == []  # Run never writes the box: the old prompt is not sent back over the typed one
    explorer._prompt.value = "that is"  # then the typed text arrives, and runs
    s = state(explorer)
    assert (s["data-prompt"], s["data-tokens"], s["data-error"]) == ("that is", "7", "0")
    assert writes == ["that is"]
    renders = int(s["data-renders"])
    explorer._run_button.click()  # Run re-runs what is in the box (say, after more training)
    s = state(explorer)
    assert s["data-prompt"] == "that is" and int(s["data-renders"]) == renders + 1


def test_explorer_events_on_two_threads_end_showing_the_box(tokenizer, monkeypatch):
    """ipykernel 7 may handle a Run click and the box's new text at once, on two threads: the box must win."""
    import threading
    import time

    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be")
    run = explorer._run
    clicked = threading.Event()

    def slow_first_run(prompt):  # the click's run (the old text) is slow; the new text's run is quick
        if not clicked.is_set():
            clicked.set()
            time.sleep(0.5)
        return run(prompt)

    monkeypatch.setattr(explorer, "_run", slow_first_run)
    click = threading.Thread(target=explorer._run_button.click)
    click.start()
    clicked.wait(5)
    explorer._prompt.value = "be or"  # the box's text arriving while the click still runs
    click.join(5)
    assert not click.is_alive()
    s = state(explorer)
    assert (s["data-prompt"], s["data-tokens"], s["data-error"]) == ("be or", "5", "0")


def test_newlines_show_as_a_symbol_and_can_be_typed(tokenizer):
    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be\nor")
    assert explorer._prompt.value == "to be⏎or" and explorer.tokens[5] == "⏎"
    explorer._prompt.value = "that⏎is"
    assert explorer.prompt == "that\nis"
    explorer._prompt.value = "is\\nthe"  # a backslash and an n, typed
    assert explorer.prompt == "is\nthe" and state(explorer)["data-error"] == "0"
    explorer.set_prompt("or\nnot")
    assert explorer._prompt.value == "or⏎not"
    assert "Enter" in explorer._help.value and "⏎" in explorer._help.value  # said on screen


def test_controls_a_view_ignores_are_hidden_in_place(tokenizer):
    explorer = AttentionExplorer(
        {"a": tiny_gpt(tokenizer, 0), "b": tiny_gpt(tokenizer, 1)}, tokenizer, "to be"
    )

    def visible(w) -> bool:
        return w.layout.visibility != "hidden" and w.layout.display != "none"

    assert not visible(explorer._query) and visible(explorer._checkpoint)
    explorer.show(view="query")
    assert visible(explorer._query) and visible(explorer._query_token)
    explorer.show(view="compare")  # shows every checkpoint: the checkpoint buttons do nothing
    assert not visible(explorer._checkpoint) and not visible(explorer._query)
    assert explorer._message.layout.height == "2.6em"  # a message has its line; nothing moves
    raw = AttentionExplorer(random_maps(T=6), tokens=list("abcdef"))
    assert not visible(raw._run_button) and raw._help.value == ""


def test_in_a_notebook_a_picture_of_the_last_view_goes_before_the_live_explorer(tokenizer, monkeypatch):
    import IPython.display

    shown, updated = [], []
    monkeypatch.setattr(
        IPython.display, "display", lambda b, raw, display_id=None: shown.append((b, display_id))
    )
    monkeypatch.setattr(
        IPython.display, "update_display", lambda b, raw, display_id: updated.append((b, display_id))
    )

    def png_in(bundle) -> bytes:
        return base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', bundle["text/html"])[1])

    explorer = AttentionExplorer(tiny_gpt(tokenizer), tokenizer, "to be")
    explorer._ipython_display_()
    (picture, picture_id), (live, live_id) = shown
    assert picture_id and live_id is None and set(picture) == {"text/html", "text/plain"}
    assert png_in(picture) == explorer._image.value
    assert "run the cells above and this one again" in picture["text/plain"]
    # The live explorer: no repr to show without a kernel, and a style rule that hides the picture.
    assert live["text/plain"] == ""
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert ".gptlib-attn-static" in explorer._style.value and ".gptlib-attn-explorer" in explorer._style.value
    # The picture's own rule hides a widget output that has lost its model (text, no elements).
    assert ":not(:has(*))" in picture["text/html"]
    explorer.show(head=1)  # every new view replaces the picture
    bundle, picture_id_again = updated[-1]
    assert picture_id_again == picture_id and png_in(bundle) == explorer._image.value != png_in(picture)


def test_cell_clock_sums_each_cells_latest_run(monkeypatch):
    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(cell_clock, "time", clock)
    monkeypatch.setattr(cell_clock, "_last_run", {})
    monkeypatch.setattr(cell_clock, "_current", {})
    monkeypatch.setattr(cell_clock, "_watching", True)

    def run(cell_id: str | None, start: float, end: float) -> None:
        clock.now = start
        cell_clock._started(type("Info", (), {"cell_id": cell_id})())
        clock.now = end
        cell_clock._finished(None)

    run("a", 0, 2)
    run("b", 10, 13)
    run("a", 20, 21)  # run again: its latest time counts, once
    run(None, 22, 24)  # no cell id (a console): a run of its own
    clock.now = 30.0
    cell_clock._started(type("Info", (), {"cell_id": "c"})())
    clock.now = 35.0  # the cell that builds the explorer is still running
    assert cell_clock.seconds_to_rerun() == 1 + 3 + 2 + 5
    assert cell_clock.about(34.4) == "about 34 s" and cell_clock.about(200) == "about 3 min"
    monkeypatch.setattr(cell_clock, "_watching", False)
    assert cell_clock.seconds_to_rerun() is None


def test_cell_clock_hooks_into_ipython_only_once(monkeypatch):
    import IPython

    registered = []

    class Events:
        def register(self, name, fn):
            registered.append(name)

    monkeypatch.setattr(cell_clock, "_watching", False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert cell_clock.watch() is False and registered == []  # not in a kernel: nothing happens
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"events": Events()})())
    assert cell_clock.watch() is True and cell_clock.watch() is True
    assert registered == ["pre_run_cell", "post_run_cell"]


# --- legible in a notebook --------------------------------------------------------------------------


def texts_and_overlaps(fig) -> tuple[float, list[str]]:
    """The smallest font size of any visible text, and the tick labels that overlap their neighbour."""
    fig.draw_without_rendering()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    overlaps = []
    for ax in fig.axes:
        for axis, labels in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
            spans = sorted((b.x0, b.x1) if axis == "x" else (b.y0, b.y1) for b in boxes)
            overlaps += [
                f"{axis} at {a[1]:.0f}" for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1] - 0.5
            ]
    return min(t.get_fontsize() for t in texts), overlaps


@pytest.mark.parametrize("T", [5, 24, 51, 120])
def test_figures_fit_the_notebook_with_legible_unoverlapping_text(T):
    maps = random_maps(L=2, H=4, T=T)
    tokens = list((TEXT * 4)[:T])
    figures = {
        "one head": plot_attention(maps, tokens),
        "all heads": plot_all_heads(maps, tokens),
        "query": plot_query(maps, tokens),
        "two checkpoints": plot_compare({"a": maps, "b": maps}, tokens),
        "three checkpoints": plot_compare({"a": maps, "b": maps, "c": maps}, tokens),
        "twelve heads": plot_all_heads(random_maps(L=12, H=12, T=T)),
    }
    for name, fig in figures.items():
        assert fig.get_figwidth() <= MAX_WIDTH, f"{name}: {fig.get_figwidth()} in wide: shrunk in a notebook"
        smallest, overlaps = texts_and_overlaps(fig)
        assert smallest >= MIN_FONT, f"{name}, T={T}: text at {smallest} pt"
        assert not overlaps, f"{name}, T={T}: tick labels overlap: {overlaps}"
    fig = figures["one head"]
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ticks = [int(round(x)) for x in fig.axes[0].get_xticks()]
    step = (
        ticks[1] - ticks[0] if len(ticks) > 1 else 1
    )  # the axis's length decides it (it differs by matplotlib)
    assert (
        ticks == list(range(0, T, step)) and shown == token_labels(tokens)[::step]
    )  # every token, or every k-th


@pytest.mark.parametrize("view", ["head", "grid", "query", "compare"])
def test_the_explorers_pictures_fit_and_stay_legible(tokenizer, view):
    explorer = AttentionExplorer(
        {"a": tiny_gpt(tokenizer, 0), "b": tiny_gpt(tokenizer, 1)}, tokenizer, "to be or not to", view=view
    )
    fig = explorer.figure()
    assert fig.get_figwidth() <= MAX_WIDTH and fig.get_figheight() <= explorer._height / 100
    smallest, overlaps = texts_and_overlaps(fig)
    assert smallest >= MIN_FONT and not overlaps


def test_figure_to_png_is_a_png():
    png = figure_to_png(plot_attention(random_maps(T=3)))
    assert matplotlib.image.imread(io.BytesIO(png)).ndim == 3
