"""Attention maps: pictures of where each head looks, and an offline explorer widget (lesson 07).

plots.py draws with matplotlib only; explorer.py builds on core ipywidgets
only (no custom JavaScript, nothing loaded from the internet), so both work
offline and in an untrusted notebook. maps.py gets the weights from a gptlib
GPT, a learner's own model, or raw tensors.

Taught in lesson 07: lessons/07_attention_maps.ipynb.
"""

from gptlib.viz import cell_clock
from gptlib.viz.explorer import AttentionExplorer
from gptlib.viz.maps import as_maps, encode_prompt, model_attention, token_labels, visible_token
from gptlib.viz.plots import (
    figure_to_png,
    plot_all_heads,
    plot_attention,
    plot_compare,
    plot_query,
    save_png,
)

# In a notebook's kernel, time every cell from here on: the explorer's picture says how long
# running them again takes, to bring it back.
cell_clock.watch()

__all__ = [
    "AttentionExplorer",
    "as_maps",
    "encode_prompt",
    "model_attention",
    "token_labels",
    "visible_token",
    "figure_to_png",
    "plot_all_heads",
    "plot_attention",
    "plot_compare",
    "plot_query",
    "save_png",
]
