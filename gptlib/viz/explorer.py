"""AttentionExplorer: an offline attention-map explorer made of core ipywidgets and matplotlib PNGs.

Pick a layer, a head and a view (one head, all heads, one query's weights,
checkpoints side by side), type a new prompt and press Enter, save the picture
as a PNG. It uses only ipywidgets' built-in controls and an Image widget, so it
needs no JavaScript of its own and nothing from the internet: it works offline
in JupyterLab (tests/test_browser.py drives it in Chromium) and in any front
end that renders the core ipywidgets, where bertviz (require.js, d3 and jQuery
from a CDN) fails offline and CircuitsVis inlines ~1.3 MB of JavaScript.

No flicker, no jumping: every picture is rendered to PNG in the kernel and
swapped into one fixed-height Image; sliders only report when released
(continuous_update=False); pictures are cached, so going back is instant;
controls a view ignores are hidden but keep their place, and messages have a
line of their own. The whole explorer fits a 1400 x 900 browser window.

The prompt runs when its text reaches the kernel (Enter, or leaving the box,
which clicking Run does), and Run runs the box as the kernel has it then: a
click can overtake the box's text on its way to the kernel, whose arrival runs
it again. The kernel may handle two widget events at once, on two threads
(ipykernel 7 does), so every event takes one lock and reads the box when its
turn comes: the last one to run shows what is in the box.
A one-line box cannot hold a newline, so newlines show as ⏎, and ⏎ or \\n
typed in the box is one.

A widget needs its kernel. So next to the explorer goes a picture of its last
view and a line saying which cells to run again and how long they took
(cell_clock.py): a notebook reopened the next day, or viewed without a kernel,
shows that picture instead of "Error displaying widget", and the live explorer
hides it with a style rule it carries.

For tests and scripts, every control has a stable CSS class (gptlib-attn-*)
and a status element, `.gptlib-attn-state`, carries the shown state in data
attributes (data-layer, data-head, data-view, data-checkpoint, data-query,
data-tokens, data-prompt, data-renders, data-error).
"""

from __future__ import annotations

import base64
import functools
import html
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure

from gptlib.viz import cell_clock
from gptlib.viz.maps import as_maps, block_size_of, encode_prompt, model_attention, token_labels
from gptlib.viz.plots import (
    MAX_WIDTH,
    figure_to_png,
    plot_all_heads,
    plot_attention,
    plot_compare,
    plot_query,
    save_png,
)

VIEWS = {"single head": "head", "all heads": "grid", "query": "query", "compare": "compare"}
NEWLINE = "⏎"  # how the prompt box shows a newline; typing it (or \\n) gives one
HELP = "Enter or Run: run the prompt · ⏎ or \\n: a new line"
_DPI = 100
_CACHE_SIZE = 64
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# JupyterLab's output area: the picture of the last view is the output just before the explorer.
# A live explorer hides that picture (its own style element carries this rule) ...
_HIDE_PICTURE = (
    ".jp-OutputArea-child:has(.gptlib-attn-static):has(+ .jp-OutputArea-child .gptlib-attn-explorer)"
    " { display: none; }"
)
# ... and without a kernel the picture (when trusted, with its style element) hides the explorer's
# "Loading widget..." and then "Error displaying widget: model not found": an output of bare text.
# (No :has() inside another :has(): browsers drop such a rule.)
_HIDE_DEAD_WIDGET = (
    ".jp-OutputArea-child:has(.gptlib-attn-static)"
    " + .jp-OutputArea-child > .jp-OutputArea-output:not(:has(*)) { display: none; }"
)


def _one_at_a_time(method: Any) -> Any:
    """The method under the explorer's lock: widget events may run on another thread meanwhile."""

    @functools.wraps(method)
    def locked(self: AttentionExplorer, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class AttentionExplorer(widgets.VBox):
    """An attention-map explorer widget for one or several checkpoints.

    source: a gptlib GPT; a learner's model (one with an attention_maps(idx)
    method, or whose attention modules take return_weights=True and then return
    (y, weights)); attention maps (L, H, T, T) or a list of per-layer (H, T, T);
    or a dict {name: one of these} of checkpoints to compare, e.g.
    {"untrained": model0, "trained": model1}. All checkpoints need the same
    number of layers and heads.

    With models, give the tokenizer (encode/decode, e.g. gptlib's
    CharTokenizer) and a prompt; Enter (or Run) re-runs the models as they are
    now (after more training, say) on the prompt in the box. With maps, give
    tokens (a list of T token strings), or none to label positions. height is
    the picture's height in pixels.

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
        height: int = 500,
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
        self._lock = threading.RLock()  # one widget event or public call at a time (see the module docstring)
        self._picture_id = f"gptlib-attn-{uuid.uuid4().hex}"  # the display id of the last view's picture
        self._displayed = False

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
        compact = {"description_width": "initial"}
        # No descriptions on the buttons (ToggleButtons puts one on a line of its own): a label before them.
        self._checkpoint = widgets.ToggleButtons(
            options=names, value=names[0], style={"button_width": "auto"}
        )
        self._view = widgets.ToggleButtons(options=views, value=view, style={"button_width": "auto"})
        self._layer, self._head, self._query = (
            widgets.IntSlider(
                value=value,
                min=0,
                max=n - 1,
                description=name,
                continuous_update=False,
                style=compact,
                layout=widgets.Layout(width="250px"),  # one Layout each: the query slider hides on its own
            )
            for name, value, n in (("layer", 0, L), ("head", 0, H), ("query", T - 1, T))
        )
        self._query_token = widgets.Label()
        # One line: Enter sends the text to the kernel, which runs it (see the module docstring).
        self._prompt = widgets.Text(
            value=_shown(self.prompt),
            description="prompt",
            continuous_update=False,
            disabled=not self._models,
            style=compact,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
        )
        self._run_button = widgets.Button(
            description="Run",
            icon="play",
            disabled=not self._models,
            tooltip="run the model on the prompt (Enter does too)",
            layout=widgets.Layout(width="auto", visibility="visible" if self._models else "hidden"),
        )
        self._save = widgets.Button(
            description="Save PNG", icon="download", layout=widgets.Layout(width="auto")
        )
        self._image = widgets.Image(
            format="png",
            layout=widgets.Layout(height=f"{height}px", width="auto", max_width="100%", object_fit="contain"),
        )
        self._help = widgets.HTML(
            f'<span style="color:#666">{html.escape(HELP)}</span>' if self._models else "",
            layout=widgets.Layout(margin="0 0 0 auto"),
        )
        # Reserved space: a message never pushes the picture down.
        self._message = widgets.HTML(layout=widgets.Layout(height="2.6em", overflow="hidden"))
        self._state = widgets.HTML()
        self._style = widgets.HTML(f"<style>{_HIDE_PICTURE}</style>", layout=widgets.Layout(display="none"))
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
            (self._help, "help"),
        ]:
            w.add_class(f"gptlib-attn-{name}")

        picture = widgets.Box(
            [self._image], layout=widgets.Layout(height=f"{height + 4}px", overflow="hidden")
        )
        views_row = [widgets.Label("view"), self._view]
        if len(names) > 1:
            self._checkpoint_label = widgets.Label("checkpoint", layout=widgets.Layout(margin="0 0 0 1em"))
            views_row += [self._checkpoint_label, self._checkpoint]
        super().__init__(
            [
                widgets.HBox([self._prompt, self._run_button, self._save]),
                widgets.HBox(views_row, layout=widgets.Layout(align_items="center")),
                widgets.HBox([self._layer, self._head, self._query, self._query_token]),
                widgets.HBox([self._state, self._help]),
                self._message,
                picture,
                self._style,
            ]
        )

        for w in (self._checkpoint, self._view, self._layer, self._head, self._query):
            w.observe(lambda _: self._on_event(self._render), names="value")
        self._prompt.observe(lambda _: self._on_event(self._run_box), names="value")
        self._run_button.on_click(lambda _: self._on_event(self._run_box))
        self._save.on_click(lambda _: self._on_event(self._save_clicked))
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

    @_one_at_a_time
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
                maps,
                self.tokens,
                layer=s["layer"],
                head=s["head"],
                figsize=(min(height + 1.4, MAX_WIDTH), height),
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
                figsize=(float(np.clip(thumb * H + 1.6, 5.0, MAX_WIDTH)), height),
            )
        if s["view"] == "query":
            return plot_query(
                maps,
                self.tokens,
                s["query"],
                layer=s["layer"],
                head=s["head"],
                figsize=(float(np.clip(3 + 0.28 * T, 7.0, MAX_WIDTH)), min(height, 5.0)),
            )
        return plot_compare(
            self.maps,
            self.tokens,
            layer=s["layer"],
            head=s["head"],
            figsize=(min(len(self.maps) * (height - 0.3) + 1.4, MAX_WIDTH), height),
        )

    @_one_at_a_time
    def set_prompt(self, prompt: str) -> None:
        """Run the model(s) on a new prompt and redraw; ValueError if it cannot be encoded or is too long."""
        self._apply_prompt(prompt)
        self._updating = True
        try:
            self._prompt.value = _shown(prompt)
        finally:
            self._updating = False

    def save_png(self, path: str | os.PathLike[str] | None = None, dpi: float = 150) -> Path:
        """Write the shown picture to a PNG file (default: save_dir/attention_<choice>.png); returns the path."""
        s = self.state
        if path is None:
            name = f"attention_{s['checkpoint']}_{s['view']}_L{s['layer']}_H{s['head']}"
            if s["view"] == "query":
                name += f"_Q{s['query']}"
            path = self.save_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
        return save_png(self.figure(), path, dpi=dpi)

    # --- in a notebook ----------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        """Show the picture of the last view (for when the kernel is gone), then the live explorer."""
        from IPython.display import display

        display(self._picture_bundle(), raw=True, display_id=self._picture_id)
        bundle = self._repr_mimebundle_()
        display({_WIDGET_VIEW: bundle[_WIDGET_VIEW], "text/plain": ""}, raw=True)
        self._displayed = True

    def _picture_bundle(self) -> dict[str, str]:
        """The last view as a picture, and what brings the explorer back: HTML, and the words as plain text."""
        s = self.state
        shown = f"{s['checkpoint']}, " if len(self.maps) > 1 else ""
        label = next(k for k, v in VIEWS.items() if v == s["view"])
        shown += f"{label}, layer {s['layer']}, head {s['head']}"
        seconds = cell_clock.seconds_to_rerun()
        took = f"; they took {cell_clock.about(seconds)} when this notebook last ran" if seconds else ""
        note = (
            f"The attention explorer's last view ({shown}), as a picture. The explorer needs this notebook's "
            "kernel: to bring it back, run the cells above and this one again (Run > Run All Above Selected "
            f"Cell, then this cell){took}."
        )
        png = base64.b64encode(self._current_png()).decode("ascii")
        page = (
            f'<div class="gptlib-attn-static"><style>{_HIDE_DEAD_WIDGET}</style>'
            f'<img src="data:image/png;base64,{png}" alt="{html.escape(note)}" style="max-width:100%">'
            f'<div style="color:#555; font-size:0.9em">{html.escape(note)}</div></div>'
        )
        return {"text/html": page, "text/plain": note}

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

    def _apply_prompt(self, prompt: str) -> None:
        """Run the model(s) on prompt and redraw, leaving the prompt box as it is."""
        if not self._models:
            raise ValueError("these are fixed attention maps; a new prompt needs a model to run.")
        maps, tokens = self._run(prompt)
        self.maps, self.tokens, self.prompt = maps, tokens, prompt
        self._cache.clear()
        T = len(tokens)
        self._updating = True
        try:
            self._query.max = T - 1
            self._query.value = T - 1
        finally:
            self._updating = False
        self._render()

    def _run_box(self) -> None:
        # Reads the box now, not when the event was sent; never writes it (that could undo what is being typed).
        self._apply_prompt(_typed(self._prompt.value))

    def _on_event(self, action: Any) -> None:
        """A widget event: one at a time; none while the explorer sets its own controls."""
        with self._lock:
            if not self._updating:
                self._try(action)

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

    def _current_png(self) -> bytes:
        s = self.state
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
        return png

    def _render(self) -> None:
        s = self.state
        # Controls the view ignores are hidden, but keep their place (nothing below them moves).
        query = "visible" if s["view"] == "query" else "hidden"
        self._query.layout.visibility = self._query_token.layout.visibility = query
        checkpoint = "hidden" if s["view"] == "compare" else "visible"
        self._checkpoint.layout.visibility = checkpoint
        if hasattr(self, "_checkpoint_label"):
            self._checkpoint_label.layout.visibility = checkpoint
        self._query_token.value = f"token: {self.tokens[s['query']]}"
        self._image.value = self._current_png()
        self._renders += 1
        if not self._error:
            self._message.value = ""
        self._update_state()
        if self._displayed:
            from IPython.display import update_display

            update_display(self._picture_bundle(), raw=True, display_id=self._picture_id)

    def _update_state(self) -> None:
        s = self.state
        attrs = {
            "data-layer": s["layer"],
            "data-head": s["head"],
            "data-view": s["view"],
            "data-checkpoint": s["checkpoint"],
            "data-query": s["query"],
            "data-tokens": len(self.tokens),
            "data-prompt": self.prompt,
            "data-renders": self._renders,
            "data-error": int(bool(self._error)),
        }
        a = " ".join(f'{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        text = f"layer {s['layer']}, head {s['head']} · {len(self.tokens)} tokens"
        self._state.value = f'<span class="gptlib-attn-state" {a}>{html.escape(text)}</span>'

    def __repr__(self) -> str:
        L, H, T, _ = next(iter(self.maps.values())).shape
        return f"AttentionExplorer(checkpoints={list(self.maps)}, layers={L}, heads={H}, tokens={T})"


def _shown(prompt: str) -> str:
    """The prompt as the one-line box shows it: newlines as ⏎."""
    return prompt.replace("\n", NEWLINE)


def _typed(text: str) -> str:
    """The prompt typed in the box: ⏎ and the two characters \\n are newlines."""
    return text.replace(NEWLINE, "\n").replace("\\n", "\n")


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
