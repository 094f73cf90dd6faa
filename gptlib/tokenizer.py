"""CharTokenizer: text <-> integer ids, one id per distinct character.

The simplest tokenizer there is, and the one Karpathy's "Let's build GPT" and
minGPT's char demo use: the vocabulary is the sorted set of characters in the
training text, and a character's id is its index in that list. It is small,
exact (decode(encode(s)) == s) and needs no download. Its limit is that it
only knows the characters it was built from, so it refuses unknown ones with
a message that says which ones and where, instead of silently dropping them.

Taught in lesson 00: lessons/00_tokens_and_batches.ipynb.
"""

from __future__ import annotations

import json
import operator
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from gptlib.files import atomic_file

FORMAT = "gptlib.CharTokenizer"
FORMAT_VERSION = 1

_MAX_LISTED = 10  # unknown characters named in an error message
_MAX_POSITIONS = 5  # positions named in an error message


class UnknownCharacterError(ValueError):
    """encode() met characters that are not in the tokenizer's vocabulary."""


def checked_ids(ids: Sequence[int] | torch.Tensor, vocab_size: int, whose: str) -> list[int]:
    """ids as a list of ints in 0 .. vocab_size - 1, for a decode; ValueError saying what is wrong otherwise.

    ids: a list/tuple of ints or a 1-D integer tensor. whose names the vocabulary in
    the messages ("this tokenizer's", "GPT-2's").
    """
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(
                f"decode needs a 1-D tensor of ids, got shape {tuple(ids.shape)}; "
                "decode one row at a time, e.g. tokenizer.decode(idx[0])."
            )
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"decode needs integer ids, got a tensor of dtype {ids.dtype}.")
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise ValueError(
            f"decode needs a list/tuple of ints or a 1-D integer tensor, got {type(ids).__name__}."
        )
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, bool):
            raise ValueError(f"id at position {pos} is a bool ({i}); ids are ints.")
        try:
            i = operator.index(i)
        except TypeError:
            raise ValueError(f"id at position {pos} is {i!r}, not an int.") from None
        if not 0 <= i < vocab_size:
            raise ValueError(
                f"id {i} at position {pos} is out of range: {whose} ids are 0..{vocab_size - 1} "
                f"(vocab_size={vocab_size}). Were these ids made by a different tokenizer?"
            )
        out.append(i)
    return out


class CharTokenizer:
    """A character-level tokenizer: id i stands for the character chars[i].

    Build one with `CharTokenizer.from_text(text)`; the vocabulary is then the
    sorted distinct characters of `text`, so the same text always gives the
    same ids.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(chars)
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character; got an empty vocabulary.")
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entry {i} must be a single character, got {c!r}.")
        if len(set(chars)) != len(chars):
            repeated = sorted(c for c, k in Counter(chars).items() if k > 1)
            raise ValueError(f"the vocabulary repeats characters {repeated!r}; each must appear once.")
        self._chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted distinct characters of `text`."""
        if not isinstance(text, str):
            raise ValueError(f"from_text needs a str, got {type(text).__name__}.")
        if not text:
            raise ValueError("cannot build a tokenizer from empty text: it would have no characters.")
        return cls(sorted(set(text)))

    @property
    def chars(self) -> list[str]:
        """The vocabulary: chars[i] is the character with id i (a copy)."""
        return list(self._chars)

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids, 0 .. vocab_size - 1."""
        return len(self._chars)

    def __len__(self) -> int:
        return len(self._chars)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(tuple(self._chars))

    def __repr__(self) -> str:
        shown = "".join(self._chars[:20])
        more = "..." if len(self._chars) > 20 else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={shown!r}{more})"

    def encode(self, text: str) -> list[int]:
        """The ids of the characters of `text`, in order."""
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}.")
        try:
            return [self._stoi[c] for c in text]
        except KeyError:
            raise self._unknown_error(text) from None

    def encode_tensor(self, text: str) -> torch.Tensor:
        """encode(text) as a 1-D torch.long tensor."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text that the ids stand for; accepts a list/tuple of ints or a 1-D integer tensor."""
        return "".join(self._chars[i] for i in checked_ids(ids, len(self._chars), "this tokenizer's"))

    def _unknown_error(self, text: str) -> UnknownCharacterError:
        unknown: dict[str, list[int]] = {}
        for pos, c in enumerate(text):
            if c not in self._stoi:
                unknown.setdefault(c, []).append(pos)
        listed = list(unknown)[:_MAX_LISTED]
        names = ", ".join(repr(c) for c in listed)
        if len(unknown) > _MAX_LISTED:
            names += f" and {len(unknown) - _MAX_LISTED} more"
        positions = sorted(p for ps in unknown.values() for p in ps)
        where = ", ".join(str(p) for p in positions[:_MAX_POSITIONS])
        if len(positions) > _MAX_POSITIONS:
            where += ", ..."
        vocab = "".join(self._chars)
        if len(vocab) > 40:
            vocab = vocab[:40] + "..."
        return UnknownCharacterError(
            f"{len(unknown)} character(s) not in the vocabulary: {names} (at position(s) {where}). "
            f"The tokenizer was built from a text with {self.vocab_size} distinct characters ({vocab!r}); "
            "remove them or build the tokenizer from a text that contains them."
        )

    # --- saving and loading -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, e.g. to store in a checkpoint."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "chars": list(self._chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """The tokenizer that to_dict() described."""
        if not isinstance(d, dict) or d.get("format") != FORMAT or "chars" not in d:
            kind = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(
                f"not a saved CharTokenizer (expected format {FORMAT!r} with a 'chars' list, got {kind!r})."
            )
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"saved CharTokenizer has version {d.get('version')!r}; this gptlib reads version "
                f"{FORMAT_VERSION}. Upgrade gptlib or rebuild the tokenizer from its text."
            )
        return cls(d["chars"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the tokenizer as UTF-8 JSON, atomically (a crash never leaves half a file)."""
        with atomic_file(path) as f:
            f.write(json.dumps(self.to_dict(), ensure_ascii=False, indent=1).encode("utf-8"))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Read a tokenizer written by save()."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}; write one with tokenizer.save(path).")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a saved CharTokenizer (not UTF-8 JSON: {e}).") from None
        return cls.from_dict(d)
