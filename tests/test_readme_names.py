"""The README's library section is true: its tree lists gptlib's files, its table of parameter names the models' tensors."""

from __future__ import annotations

import re
from pathlib import Path

import mingpt_reference as mingpt
import pytest
import torch

from gptlib.config import GPTConfig
from gptlib.interop import mingpt_names
from gptlib.model import GPT

README = Path(__file__).resolve().parents[1] / "README.md"
SIZES = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)


def table() -> list[tuple[str, list[str], list[str], list[str]]]:
    """(part, gptlib names, minGPT names, GPT-2 names) for each row of the README's parameter-name table."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- parameter-names:")
    rows = []
    for line in text[start:].splitlines()[3:]:
        if not line.startswith("|"):
            break
        part, *cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((part, *[names(c) for c in cells]))
    return rows


def names(cell: str) -> list[str]:
    """The full names a cell gives: its first code span, and `.bias` after it -> ["a.b.weight", "a.b.bias"]."""
    codes = re.findall(r"`([^`]+)`", cell)
    out = codes[:1]
    out += [out[0].rsplit(".", 1)[0] + c for c in codes[1:] if c.startswith(".")]
    return out


def test_the_table_is_read():
    rows = table()
    assert len(rows) == 12
    assert rows[0] == (
        "token embeddings",
        ["embeddings.tok_emb.weight"],
        ["tok_emb.weight"],
        ["transformer.wte.weight"],
    )
    assert rows[-1][1] == ["head.proj.weight"]


def test_gptlib_names_are_the_state_dict_of_a_one_block_gpt():
    listed = [n for _, ours, _, _ in table() for n in ours]
    assert sorted(listed) == sorted(GPT(GPTConfig(**SIZES)).state_dict())


def test_mingpt_names_exist_in_mingpt_and_match_the_converter():
    theirs = mingpt.GPT(mingpt.GPTConfig(**SIZES)).state_dict()
    mapping = mingpt_names(n_layer=1)
    for part, ours, mine_gpt, _ in table():
        assert len(ours) == len(mine_gpt), part
        for our_name, their_name in zip(ours, mine_gpt, strict=True):
            assert their_name in theirs, f"{part}: minGPT has no {their_name}"
            assert mapping[their_name] == our_name, (
                f"{part}: from_mingpt maps {their_name} to {mapping[their_name]}"
            )


def test_gpt2_names_exist_in_hugging_faces_model():
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=11, n_positions=8, n_layer=1, n_head=2, n_embd=8)
    )
    theirs = hf.state_dict()
    for part, _, _, gpt2 in table():
        assert gpt2, part
        for name in gpt2:
            assert name in theirs, f"{part}: GPT-2 has no {name}"
    assert torch.equal(theirs["lm_head.weight"], theirs["transformer.wte.weight"])  # "tied to wte"


def test_the_tree_lists_every_file_and_folder_of_gptlib():
    text = README.read_text(encoding="utf-8")
    tree = text[text.index("```\ngptlib/\n") :].split("```")[1]
    listed = set(re.findall(r"^  (\w+\.py|\w+/)", tree, re.M))
    package = README.parent / "gptlib"
    present = {p.name for p in package.glob("*.py")} | {
        f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()
    }
    present -= {"__init__.py", "__main__.py"}  # the package itself; __main__.py only calls cli.py
    assert listed == present
