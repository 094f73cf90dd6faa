"""Attention maps drawn with matplotlib: one head, all heads, one query, checkpoints side by side.

Every picture uses the same conventions, so that two of them can be compared:
- rows are queries (the position that attends), columns are keys (the
  positions attended to), both labelled with their tokens;
- a fixed colour scale from 0 to 1 with a colour bar, in viridis (perceptual:
  equal steps in weight look like equal steps in colour);
- the causally masked cells (key after query) drawn grey, not as dark zeros:
  a zero there would read as "attends to nothing" when the model simply
  cannot look at the future.

The figures are made with matplotlib.figure.Figure directly, not pyplot, so
drawing never touches the user's backend or pyplot's list of open figures
(nothing to close; they are freed like any object). They show as PNGs in a
notebook and can be written with save_png.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from gptlib.files import atomic_file
from gptlib.viz.maps import as_maps, token_labels

CMAP = "viridis"
# JupyterLab's output area in a 1400 x 900 window with its file browser open is 968 pixels wide:
# a figure up to that width shows at its size, a wider one is shrunk, text and all. The inline
# backend saves at 100 dpi with 0.1 in of padding around the drawing: 9.4 in makes at most 960 px.
MAX_WIDTH = 9.4  # inches: the widest default figure
MIN_FONT = 8.0  # points: no text is drawn smaller
MAX_TICK_FONT = 10.0
LABEL_SPACING = 1.3  # a tick label needs about this many times its font size
MASKED_COLOR = "#c4c4c4"  # light grey: far from viridis' dark purple (0) and yellow (1)
HIGHLIGHT_COLOR = "#e8402a"
NORM = Normalize(vmin=0.0, vmax=1.0)


class AttentionFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in a notebook, whatever the backend."""

    def _repr_png_(self) -> bytes:
        return figure_to_png(self)


def figure_to_png(fig: Figure, dpi: float = 100) -> bytes:
    """The figure as PNG bytes, rendered by Agg (the user's backend is left as it is)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: float = 150) -> Path:
    """Write the figure to a PNG file, atomically (a crash never leaves half a file); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_png writes PNG files; give a path ending in .png, got {str(path)!r}.")
    data = figure_to_png(fig, dpi=dpi)
    with atomic_file(path) as f:
        f.write(data)
    return path


# --- helpers --------------------------------------------------------------------------------------


def _cmap(name: str = CMAP) -> Any:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=MASKED_COLOR)


def causal_mask(T: int) -> np.ndarray:
    """(T, T) booleans, True where key > query: the cells a causal model cannot attend to."""
    return np.triu(np.ones((T, T), dtype=bool), k=1)


def _pick(weights: Any, layer: int | None, head: int | None) -> np.ndarray:
    """One head's (T, T) map, from a (T, T) array or from (L, H, T, T) maps with layer and head."""
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        weights = weights.detach().to("cpu", torch.float32).numpy()
    if isinstance(weights, np.ndarray) and weights.ndim == 2:
        return as_maps(weights[None, None])[0, 0]
    maps = as_maps(weights)
    L, H = maps.shape[:2]
    layer = 0 if layer is None else layer
    head = 0 if head is None else head
    _check_index("layer", layer, L)
    _check_index("head", head, H)
    return maps[layer, head]


def _check_index(name: str, i: int, n: int) -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise ValueError(f"{name} must be an int in 0..{n - 1} (there are {n}), got {i!r}.")


def _labels(tokens: Sequence[str] | None, T: int) -> list[str]:
    if tokens is None:
        return [str(i) for i in range(T)]
    labels = token_labels(tokens)
    if len(labels) != T:
        raise ValueError(
            f"got {len(labels)} tokens for attention maps over T={T} positions; they must match."
        )
    return labels


def _masked(w: np.ndarray, causal: bool) -> np.ma.MaskedArray:
    T = w.shape[0]
    if not causal:
        return np.ma.masked_invalid(w)
    future = causal_mask(T)
    if T > 1 and float(w[future].max()) > 1e-4:
        q, k = (int(i) for i in np.argwhere(future & (w > 1e-4))[0])
        raise ValueError(
            f"these weights are not causal: query {q} attends to the later key {k} with weight {w[q, k]:.3g}. "
            "Pass causal=False to draw every cell."
        )
    return np.ma.masked_array(w, mask=future)


def _set_token_ticks(ax: Axes, labels: list[str], axes: str = "xy") -> None:
    """Label every token; _fit_token_ticks thins them out once the figure's layout is known."""
    T = len(labels)
    pos = list(range(T))
    rotate = 90 if max(len(s) for s in labels) > 2 else 0
    if "x" in axes:
        ax.set_xticks(pos, labels, fontsize=MAX_TICK_FONT, rotation=rotate)
    if "y" in axes:
        ax.set_yticks(pos, labels, fontsize=MAX_TICK_FONT)
    ax.tick_params(length=2, pad=1.5)
    ax._gptlib_token_labels = (labels, axes, rotate if "x" in axes else 0)  # read by _fit_token_ticks


def _fit_token_ticks(fig: Figure) -> None:
    """Size each token axis's labels to the space each token gets: MIN_FONT..MAX_TICK_FONT points,
    and where even MIN_FONT does not fit, label every k-th token (no text smaller, none overlapping)."""
    fig.draw_without_rendering()  # lays the figure out: the axes' sizes are known from here on
    for ax in fig.axes:
        labelled = getattr(ax, "_gptlib_token_labels", None)
        if labelled is None:
            continue
        labels, axes, rotate = labelled
        T = len(labels)
        box = ax.get_window_extent()
        for axis in axes:
            length = (box.width if axis == "x" else box.height) / fig.dpi * 72  # points
            size, step = token_tick_size(T, length)
            pos = list(range(0, T, step))
            shown = [labels[i] for i in pos]
            if axis == "x":
                ax.set_xticks(pos, shown, fontsize=size, rotation=rotate)
            else:
                ax.set_yticks(pos, shown, fontsize=size)


def token_tick_size(T: int, length: float) -> tuple[float, int]:
    """(font size, label every step-th token) for T tokens along an axis `length` points long.

    Each label needs about LABEL_SPACING times its font size; the font shrinks
    from MAX_TICK_FONT to MIN_FONT to fit, then labels are skipped.
    """
    per_token = length / max(T, 1)
    size = float(np.clip(per_token / LABEL_SPACING, MIN_FONT, MAX_TICK_FONT))
    step = max(1, int(np.ceil(LABEL_SPACING * size / per_token)))
    return size, step


def _title(layer: int | None, head: int | None, prefix: str | None = None) -> str:
    parts = []
    if layer is not None:
        parts.append(f"layer {layer}")
    if head is not None:
        parts.append(f"head {head}")
    text = ", ".join(parts)
    return f"{prefix}: {text}" if prefix and text else prefix or text


def _masked_legend(fig: Figure) -> None:
    fig.legend(
        handles=[Patch(facecolor=MASKED_COLOR, edgecolor="#888888", label="masked (key after query)")],
        loc="lower right",
        fontsize=MIN_FONT,
        frameon=False,
    )


def _square_size(T: int) -> tuple[float, float]:
    side = float(np.clip(2.8 + 0.17 * T, 4.5, MAX_WIDTH - 1.3))  # 1.3 in for the labels and colour bar
    return side + 1.3, side


# --- one head -------------------------------------------------------------------------------------


def draw_attention(
    ax: Axes,
    weights: np.ndarray,
    labels: list[str] | None = None,
    *,
    causal: bool = True,
    cmap: str = CMAP,
    ticks: bool = True,
) -> Any:
    """Draw one (T, T) map into ax (rows: queries, columns: keys); returns the image for a colour bar."""
    T = weights.shape[0]
    im = ax.imshow(_masked(weights, causal), cmap=_cmap(cmap), norm=NORM, interpolation="nearest")
    if ticks:
        _set_token_ticks(ax, labels if labels is not None else [str(i) for i in range(T)])
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def plot_attention(
    weights: Any,
    tokens: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    head: int | None = None,
    title: str | None = None,
    causal: bool = True,
    cmap: str = CMAP,
    ax: Axes | None = None,
    colorbar: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One attention map as a Figure: tokens on both axes, 0..1 colour bar, masked cells grey.

    weights: one head's (T, T) map, or maps (L, H, T, T) / a list of per-layer
    (H, T, T) tensors, with layer and head choosing the map (default 0, 0).
    tokens: T token strings (whitespace is shown as ␣ and ⏎); None labels
    positions 0..T-1. title defaults to "layer L, head H". Draws into ax if
    given (and returns its figure), else into a new figure.
    """
    w = _pick(weights, layer, head)
    T = w.shape[0]
    labels = _labels(tokens, T)
    if ax is None:
        fig = AttentionFigure(figsize=figsize or _square_size(T), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = draw_attention(ax, w, labels, causal=causal, cmap=cmap)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title if title is not None else _title(layer, head) or "attention", fontsize=12)
    if colorbar:
        fig.colorbar(im, ax=ax, label="attention weight", shrink=0.8)
    if causal and not fig.legends:
        _masked_legend(fig)
    _fit_token_ticks(fig)
    return fig


# --- all heads ------------------------------------------------------------------------------------


def plot_all_heads(
    maps: Any,
    tokens: Sequence[str] | None = None,
    *,
    highlight: tuple[int, int] | None = None,
    title: str | None = None,
    causal: bool = True,
    cmap: str = CMAP,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """A grid of thumbnails, one row per layer and one column per head, on one 0..1 colour scale.

    highlight=(layer, head) frames that head in red. Thumbnails carry no token
    labels (they would not be readable); the title gives the prompt if tokens
    are given.
    """
    m = as_maps(maps)
    L, H, T, _ = m.shape
    labels = _labels(tokens, T)
    if highlight is not None:
        _check_index("layer", highlight[0], L)
        _check_index("head", highlight[1], H)
    thumb = min(1.6, (MAX_WIDTH - 1.6) / H)  # many heads: smaller thumbnails, not a wider figure
    fig = AttentionFigure(figsize=figsize or (thumb * H + 1.6, thumb * L + 0.9), layout="constrained")
    axes = fig.subplots(L, H, squeeze=False)
    im = None
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            im = draw_attention(ax, m[l, h], causal=causal, cmap=cmap, ticks=False)
            if l == 0:
                ax.set_title(f"head {h}", fontsize=9)
            if h == 0:
                ax.set_ylabel(f"layer {l}", fontsize=9)
            if highlight == (l, h):
                for side in ax.spines.values():
                    side.set(edgecolor=HIGHLIGHT_COLOR, linewidth=2.5)
    fig.colorbar(im, ax=axes, label="attention weight", shrink=0.8)
    prompt = "".join(labels) if tokens is not None else f"{T} positions"
    if len(prompt) > 60:
        prompt = prompt[:57] + "..."
    fig.suptitle(
        title if title is not None else f"all heads (rows: queries, columns: keys) — {prompt}", fontsize=11
    )
    return fig


# --- one query ------------------------------------------------------------------------------------


def plot_query(
    maps: Any,
    tokens: Sequence[str] | None = None,
    query: int | None = None,
    *,
    layer: int = 0,
    head: int = 0,
    other_heads: bool = True,
    title: str | None = None,
    causal: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Where one query token looks: its attention weights over the keys, as bars.

    The bars are the chosen head; with other_heads=True the other heads of the
    same layer are drawn as thin lines, as bertviz's hover lines show every
    head at once. Keys after the query (masked) are shaded grey. query
    defaults to the last token.
    """
    m = as_maps(maps)
    L, H, T, _ = m.shape
    labels = _labels(tokens, T)
    _check_index("layer", layer, L)
    _check_index("head", head, H)
    query = T - 1 if query is None else query
    _check_index("query", query, T)
    for h in range(H):
        _masked(m[layer, h], causal)  # refuses non-causal weights when causal=True
    fig = AttentionFigure(
        figsize=figsize or (float(np.clip(3 + 0.28 * T, 6.0, MAX_WIDTH)), 4.2), layout="constrained"
    )
    ax = fig.add_subplot()
    x = np.arange(T)
    row = m[layer, head, query]
    visible = x <= query if causal else np.ones(T, dtype=bool)
    ax.bar(x[visible], row[visible], width=0.8, color="#31688e", label=f"head {head}", zorder=3)
    if other_heads and H > 1:
        import matplotlib

        colors = matplotlib.colormaps["tab10"]
        for h in range(H):
            if h != head:
                ax.plot(
                    x[visible],
                    m[layer, h, query][visible],
                    marker=".",
                    lw=1,
                    alpha=0.8,
                    color=colors(h % 10),
                    label=f"head {h}",
                    zorder=4,
                )
    if causal and query < T - 1:
        ax.add_patch(
            Rectangle(
                (query + 0.5, 0),
                T - query - 1,
                1.0,
                facecolor=MASKED_COLOR,
                alpha=0.6,
                edgecolor="none",
                zorder=1,
                label="masked (key after query)",
            )
        )
    ax.axvline(query, color=HIGHLIGHT_COLOR, lw=1, ls="--", zorder=2)
    ax.set_xlim(-0.6, T - 0.4)
    ax.set_ylim(0, 1.0)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    _set_token_ticks(ax, labels, axes="x")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("attention weight")
    q_label = labels[query]
    ax.set_title(
        title if title is not None else f"layer {layer}, head {head}: query {query} ({q_label}) attends to",
        fontsize=12,
    )
    ax.legend(fontsize=MIN_FONT, loc="upper left", ncols=max(1, min(4, (H + 1) // 3)), framealpha=0.9)
    _fit_token_ticks(fig)
    return fig


# --- checkpoints side by side ---------------------------------------------------------------------


def plot_compare(
    maps_by_name: Mapping[str, Any],
    tokens: Sequence[str] | None = None,
    *,
    layer: int = 0,
    head: int = 0,
    causal: bool = True,
    cmap: str = CMAP,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The same head of several checkpoints (e.g. untrained and trained) side by side, one colour bar.

    At most two maps to a row: three or more continue on the next row, so each
    map stays large enough to label its tokens.
    """
    if not maps_by_name:
        raise ValueError("plot_compare needs at least one {name: maps} entry.")
    names = list(maps_by_name)
    picked = [_pick(maps_by_name[n], layer, head) for n in names]
    Ts = {w.shape[0] for w in picked}
    if len(Ts) > 1:
        raise ValueError(
            f"the checkpoints' maps cover different numbers of tokens {sorted(Ts)}; use one prompt."
        )
    T = Ts.pop()
    labels = _labels(tokens, T)
    n = len(names)
    cols = min(n, 2)
    rows = -(-n // cols)
    side = min(_square_size(T)[1], (MAX_WIDTH - 1.3) / cols)
    fig = AttentionFigure(figsize=figsize or (cols * side + 1.3, rows * side + 0.6), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.flat[:n])
    for ax in grid.flat[n:]:
        ax.set_visible(False)
    im = None
    for i, (ax, name, w) in enumerate(zip(axes, names, picked, strict=True)):
        im = draw_attention(ax, w, labels, causal=causal, cmap=cmap)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("key (attended to)")
        if i % cols == 0:
            ax.set_ylabel("query (attending)")
    fig.colorbar(im, ax=axes, label="attention weight", shrink=0.8)
    fig.suptitle(f"layer {layer}, head {head}", fontsize=12)
    if causal:
        _masked_legend(fig)
    _fit_token_ticks(fig)
    return fig
