"""AttentionExplorer: an offline attention-map explorer made of core ipywidgets and matplotlib PNGs.

Pick a layer, a head and a view (one head, all heads, one query's weights,
checkpoints side by side), type a new prompt and re-run, save the picture as a
PNG. It uses only ipywidgets' built-in controls and an Image widget, so it
needs no JavaScript of its own and nothing from the internet: it works offline
in JupyterLab (tests/test_browser.py drives it in Chromium) and in any front
end that renders the core ipywidgets, where bertviz (require.js, d3 and jQuery
from a CDN) fails offline and CircuitsVis inlines ~1.3 MB of JavaScript.

No flicker: every picture is rendered to PNG in the kernel and swapped into
one fixed-height Image; sliders only report when released
(continuous_update=False); pictures are cached, so going back is instant.

For tests and scripts, every control has a stable CSS class (gptlib-attn-*)
and a status element, `.gptlib-attn-state`, carries the shown state in data
attributes (data-layer, data-head, data-view, data-checkpoint, data-query,
data-tokens, data-renders, data-error).
"""

from __future__ import annotations

import html
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from gptlib.viz.maps import as_maps, block_size_of, encode_prompt, model_attention, token_labels
from gptlib.viz.plots import figure_to_png, plot_all_heads, plot_attention, plot_compare, plot_query, save_png

VIEWS = {"single head": "head", "all heads": "grid", "query": "query", "compare": "compare"}
_DPI = 100
_CACHE_SIZE = 64


class AttentionExplorer(widgets.VBox):
    """An attention-map explorer widget for one or several checkpoints.

    source: a gptlib GPT; a learner's model (one with an attention_maps(idx)
    method, or whose attention modules take return_weights=True and then return
    (y, weights)); attention maps (L, H, T, T) or a list of per-layer (H, T, T);
    or a dict {name: one of these} of checkpoints to compare, e.g.
    {"untrained": model0, "trained": model1}. All checkpoints need the same
    number of layers and heads.

    With models, give the tokenizer (encode/decode, e.g. gptlib's
    CharTokenizer) and a prompt; Run re-runs the models as they are now (after
    more training, say) on the prompt in the box. With maps,
    give tokens (a list of T token strings), or none to label positions.

    Display it by making it the last expression of a cell. The same actions are
    methods for scripts: set_prompt(text), show(layer=, head=, view=, ...),
    figure(), save_png(path).
    """

    def __init__(
        self,
        source: Any,
        tokenizer: Any = None,
        prompt: str | None = None,
        *,
        tokens: Sequence[str] | None = None,
        layer: int = 0,
        head: int = 0,
        view: str = "head",
        save_dir: str | os.PathLike[str] = ".",
        height: int = 600,
    ) -> None:
        self._sources = _checkpoints(source)
        self._models = {n: s for n, s in self._sources.items() if isinstance(s, nn.Module)}
        if self._models and len(self._models) != len(self._sources):
            raise ValueError(
                "give either models or attention maps for every checkpoint, not a mix: "
                f"models {list(self._models)}, maps {[n for n in self._sources if n not in self._models]}."
            )
        if self._models and (tokenizer is None or prompt is None):
            raise ValueError(
                "with a model, give a tokenizer and a prompt too, e.g. AttentionExplorer(model, tokenizer, 'Hi')."
            )
        if self._models and tokens is not None:
            raise ValueError("tokens= labels raw maps; with a model the tokens come from the prompt.")
        if not isinstance(height, int) or height < 200:
            raise ValueError(f"height is the picture's height in pixels, at least 200; got {height!r}.")
        self.tokenizer = tokenizer
        self.save_dir = Path(save_dir)
        self._height = height
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._renders = 0
        self._error = ""
        self._updating = False

        if self._models:
            sizes = [b for b in (block_size_of(m) for m in self._models.values()) if b is not None]
            self._block_size = min(sizes) if sizes else None
            self.prompt = prompt
            self.maps, self.tokens = self._run(self.prompt)
        else:
            if prompt is not None:
                raise ValueError("a prompt needs a model to run; with raw maps give tokens= instead.")
            self._block_size = None
            self.maps = {n: as_maps(s) for n, s in self._sources.items()}
            T = _same_shapes(self.maps)[2]
            self.tokens = token_labels(tokens) if tokens is not None else [str(i) for i in range(T)]
            if len(self.tokens) != T:
                raise ValueError(
                    f"got {len(self.tokens)} tokens for maps over T={T} positions; they must match."
                )
            self.prompt = "".join(self.tokens)
        L, H, T, _ = _same_shapes(self.maps)

        names = list(self.maps)
        views = [(k, v) for k, v in VIEWS.items() if v != "compare" or len(names) > 1]
        if view not in dict(views).values():
            raise ValueError(f"view must be one of {[v for _, v in views]}, got {view!r}.")
        self._checkpoint = widgets.ToggleButtons(options=names, value=names[0], description="checkpoint")
        self._view = widgets.ToggleButtons(options=views, value=view, description="view")
        self._layer = widgets.IntSlider(
            value=0, min=0, max=L - 1, description="layer", continuous_update=False
        )
        self._head = widgets.IntSlider(value=0, min=0, max=H - 1, description="head", continuous_update=False)
        self._query = widgets.IntSlider(
            value=T - 1, min=0, max=T - 1, description="query", continuous_update=False
        )
        self._query_token = widgets.Label()
        # A Textarea, not a Text: an <input> drops newlines, and char-level prompts often hold them.
        # The prompt runs when Run is clicked (Enter types a newline).
        self._prompt = widgets.Textarea(
            value=self.prompt,
            description="prompt",
            rows=2,
            continuous_update=False,
            disabled=not self._models,
            layout=widgets.Layout(width="60%"),
        )
        self._run_button = widgets.Button(
            description="Run", disabled=not self._models, icon="play", tooltip="run the model on the prompt"
        )
        self._save = widgets.Button(description="Save PNG", icon="download")
        self._image = widgets.Image(
            format="png", layout=widgets.Layout(height=f"{height}px", width="auto", object_fit="contain")
        )
        self._message = widgets.HTML()
        self._state = widgets.HTML()
        for w, name in [
            (self, "explorer"),
            (self._checkpoint, "checkpoint"),
            (self._view, "view"),
            (self._layer, "layer"),
            (self._head, "head"),
            (self._query, "query"),
            (self._prompt, "prompt"),
            (self._run_button, "run"),
            (self._save, "save"),
            (self._image, "image"),
            (self._message, "message"),
            (self._state, "status"),
        ]:
            w.add_class(f"gptlib-attn-{name}")

        picture = widgets.Box(
            [self._image], layout=widgets.Layout(height=f"{height + 4}px", overflow="hidden")
        )
        rows = [widgets.HBox([self._prompt, self._run_button])]
        if len(names) > 1:
            rows.append(self._checkpoint)
        rows += [
            self._view,
            widgets.HBox([self._layer, self._head]),
            widgets.HBox([self._query, self._query_token]),
            widgets.HBox([self._save, self._state]),
            self._message,
            picture,
        ]
        super().__init__(rows)

        for w in (self._checkpoint, self._view, self._layer, self._head, self._query):
            w.observe(self._on_control, names="value")
        self._run_button.on_click(lambda _: self._try(self.set_prompt, self._prompt.value))
        self._save.on_click(lambda _: self._try(self._save_clicked))
        self.show(layer=layer, head=head)

    # --- what is shown ----------------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The shown choice: checkpoint, view, layer, head, query."""
        return {
            "checkpoint": self._checkpoint.value,
            "view": self._view.value,
            "layer": self._layer.value,
            "head": self._head.value,
            "query": self._query.value,
        }

    def show(self, **choice: Any) -> None:
        """Change any of checkpoint, view, layer, head, query (ValueError if out of range) and redraw."""
        controls = {
            "checkpoint": self._checkpoint,
            "view": self._view,
            "layer": self._layer,
            "head": self._head,
            "query": self._query,
        }
        for key, value in choice.items():
            if key not in controls:
                raise ValueError(f"show() takes {sorted(controls)}, got {key!r}.")
            w = controls[key]
            if isinstance(w, widgets.IntSlider):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, np.integer))
                    or not w.min <= value <= w.max
                ):
                    raise ValueError(f"{key} must be an int in {w.min}..{w.max}, got {value!r}.")
            else:
                allowed = [o[1] if isinstance(o, tuple) else o for o in w.options]
                if value not in allowed:
                    raise ValueError(f"{key} must be one of {allowed}, got {value!r}.")
        self._updating = True  # one redraw for the whole change, not one per control
        try:
            for key, value in choice.items():
                controls[key].value = value
        finally:
            self._updating = False
        self._render()

    def figure(self, **choice: Any) -> Figure:
        """The Figure for the current choice (or for the given checkpoint/view/layer/head/query)."""
        s = {**self.state, **choice}
        height = self._height / _DPI
        maps = self.maps[s["checkpoint"]]
        L, H, T, _ = maps.shape
        if s["view"] == "head":
            fig = plot_attention(
                maps, self.tokens, layer=s["layer"], head=s["head"], figsize=(height + 1.4, height)
            )
            if len(self.maps) > 1:
                fig.axes[0].set_title(f"{s['checkpoint']}: layer {s['layer']}, head {s['head']}")
            return fig
        if s["view"] == "grid":
            thumb = (height - 0.9) / L
            return plot_all_heads(
                maps,
                self.tokens,
                highlight=(s["layer"], s["head"]),
                figsize=(float(np.clip(thumb * H + 1.6, 5.0, 16.0)), height),
            )
        if s["view"] == "query":
            return plot_query(
                maps,
                self.tokens,
                s["query"],
                layer=s["layer"],
                head=s["head"],
                figsize=(float(np.clip(3 + 0.28 * T, 7.0, 14.0)), min(height, 5.0)),
            )
        return plot_compare(
            self.maps,
            self.tokens,
            layer=s["layer"],
            head=s["head"],
            figsize=(len(self.maps) * (height - 0.3) + 1.4, height),
        )

    def set_prompt(self, prompt: str) -> None:
        """Run the model(s) on a new prompt and redraw; ValueError if it cannot be encoded or is too long."""
        if not self._models:
            raise ValueError("these are fixed attention maps; a new prompt needs a model to run.")
        maps, tokens = self._run(prompt)
        self.maps, self.tokens, self.prompt = maps, tokens, prompt
        self._cache.clear()
        T = len(tokens)
        self._updating = True
        try:
            self._prompt.value = prompt
            self._query.max = T - 1
            self._query.value = T - 1
        finally:
            self._updating = False
        self._render()

    def save_png(self, path: str | os.PathLike[str] | None = None, dpi: float = 150) -> Path:
        """Write the shown picture to a PNG file (default: save_dir/attention_<choice>.png); returns the path."""
        s = self.state
        if path is None:
            name = f"attention_{s['checkpoint']}_{s['view']}_L{s['layer']}_H{s['head']}"
            if s["view"] == "query":
                name += f"_Q{s['query']}"
            path = self.save_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
        return save_png(self.figure(), path, dpi=dpi)

    # --- internals ------------------------------------------------------------------------------

    def _run(self, prompt: str) -> tuple[dict[str, np.ndarray], list[str]]:
        ids, labels = encode_prompt(prompt, self.tokenizer, self._block_size)
        idx = torch.tensor([ids], dtype=torch.long)
        maps = {}
        for name, model in self._models.items():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            maps[name] = model_attention(model, idx.to(device))
        _same_shapes(maps)
        return maps, labels

    def _on_control(self, change: dict) -> None:
        if not getattr(self, "_updating", False):
            self._try(self._render)

    def _save_clicked(self) -> None:
        path = self.save_png()
        self._say(f"saved {html.escape(str(path))}")

    def _try(self, action: Any, *args: Any) -> None:
        # Errors in widget callbacks would go to a log that learners never see: show them instead.
        try:
            self._error = ""
            action(*args)
        except Exception as e:  # shown to the user, not swallowed
            self._error = f"{type(e).__name__}: {e}"
            self._say(html.escape(self._error), error=True)
            self._update_state()

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#1b5e20"
        self._message.value = f'<span style="color:{color}">{text}</span>'

    def _render(self) -> None:
        s = self.state
        self._query.disabled = s["view"] != "query"
        self._query_token.value = f"token: {self.tokens[s['query']]}"
        key = (
            s["checkpoint"],
            s["view"],
            s["layer"],
            s["head"],
            s["query"] if s["view"] == "query" else None,
        )
        png = self._cache.get(key)
        if png is None:
            png = figure_to_png(self.figure(), dpi=_DPI)
            self._cache[key] = png
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        self._image.value = png
        self._renders += 1
        if not self._error:
            self._message.value = ""
        self._update_state()

    def _update_state(self) -> None:
        s = self.state
        attrs = {
            "data-layer": s["layer"],
            "data-head": s["head"],
            "data-view": s["view"],
            "data-checkpoint": s["checkpoint"],
            "data-query": s["query"],
            "data-tokens": len(self.tokens),
            "data-renders": self._renders,
            "data-error": int(bool(self._error)),
        }
        a = " ".join(f'{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        text = f"layer {s['layer']}, head {s['head']} · {len(self.tokens)} tokens"
        self._state.value = f'<span class="gptlib-attn-state" {a}>{html.escape(text)}</span>'

    def __repr__(self) -> str:
        L, H, T, _ = next(iter(self.maps.values())).shape
        return f"AttentionExplorer(checkpoints={list(self.maps)}, layers={L}, heads={H}, tokens={T})"


def _checkpoints(source: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        if not source:
            raise ValueError("got an empty dict of checkpoints; give {name: model or maps}.")
        for name in source:
            if not isinstance(name, str) or not name:
                raise ValueError(f"checkpoint names must be non-empty strings, got {name!r}.")
        return dict(source)
    return {"model" if isinstance(source, nn.Module) else "maps": source}


def _same_shapes(maps: Mapping[str, np.ndarray]) -> tuple[int, int, int, int]:
    shapes = {n: m.shape for n, m in maps.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"the checkpoints' attention maps differ in shape (layers, heads, T, T): {shapes}; "
            "compare checkpoints of the same architecture on the same prompt."
        )
    return next(iter(shapes.values()))
