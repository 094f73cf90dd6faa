"""Finding and reading submitted notebooks: hostile files, read safely, once.

A submissions folder is the students' doing. The grader never follows a
symbolic link inside it (a link to a classmate's notebook or to a secret file
is that student's "could not read" row, and nothing of the target is read),
never opens anything that is not a regular file (a FIFO named ``x.ipynb`` would
otherwise hang it), reads at most `MAX_BYTES`, and turns every malformed
notebook (not UTF-8, not JSON, nested too deep, cells or metadata of the wrong
type, text that is not valid Unicode) into that student's "could not read" row
with the reason: never a crash or a hang of the batch. What comes out is a
sanitised notebook whose every field has the type the grader expects. The files
are only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat

MAX_BYTES = 20 << 20  # a notebook of source code is far smaller; outputs with images can be large
MAX_CELLS = 5000
MAX_SOURCE = 5 << 20  # characters of code in all cells together
SKIPPED = (".ipynb_checkpoints", "__MACOSX")


class Unreadable(ValueError):
    """A submission the grader could not read, with the reason in words for the teacher and the student."""


@dataclass(frozen=True)
class Submission:
    """One submitted notebook: whose it is, where it is (relative to the folder it was found in)."""

    student: str
    path: Path  # as found (for the report); never opened by name, see `read`
    root: Path  # the folder given on the command line (or the file's folder)
    parts: tuple[str, ...]  # the path below root, one name per level
    problem: str | None = None  # found but refused before reading (a link, not a file)


def _walk(root: Path, parts: tuple[str, ...], found: list[Submission]) -> None:
    """Every *.ipynb below root/parts, without following a link; links and odd files are reported."""
    try:
        with os.scandir(root.joinpath(*parts)) as entries:
            items = sorted(entries, key=lambda e: e.name)
    except OSError as e:
        found.append(
            Submission(
                parts[0] if parts else root.name,
                root.joinpath(*parts),
                root,
                parts,
                f"cannot list it ({e.strerror})",
            )
        )
        return
    for entry in items:
        here = (*parts, entry.name)
        student = here[0] if len(here) > 1 else Path(entry.name).stem
        if entry.name in SKIPPED:
            continue
        if entry.is_symlink():
            if entry.name.endswith(".ipynb") or len(here) == 1:
                found.append(
                    Submission(
                        student, root.joinpath(*here), root, here, "it is a symbolic link (not followed)"
                    )
                )
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(root, here, found)
        elif entry.name.endswith(".ipynb"):
            problem = None if entry.is_file(follow_symlinks=False) else "it is not a regular file"
            found.append(Submission(student, root.joinpath(*here), root, here, problem))


def collect(paths: list[Path]) -> list[Submission]:
    """The submissions in `paths` (files, or folders with one notebook per student or one subfolder per
    student), in a stable order. The paths given are the teacher's; nothing inside them is followed."""
    found: list[Submission] = []
    for p in map(Path, paths):
        if p.is_dir():
            _walk(p, (), found)
        elif p.exists() or p.is_symlink():
            found.append(Submission(p.stem, p, p.parent, (p.name,)))
        else:
            raise ValueError(f"no such submission file or folder: {p}")
    if not found:
        raise ValueError("no notebooks (.ipynb) among the submissions given.")
    return found


def read(sub: Submission, max_bytes: int = MAX_BYTES) -> bytes:
    """The submission's bytes, opened one level at a time from its root without following any link, only if it
    is a regular file of at most `max_bytes`. Raises Unreadable with the reason."""
    if sub.problem:
        raise Unreadable(sub.problem)
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(sub.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise Unreadable(f"cannot open its folder ({e.strerror})") from None
    try:
        for name in sub.parts[:-1]:
            nxt = os.open(name, flags | getattr(os, "O_DIRECTORY", 0), dir_fd=fd)
            os.close(fd)
            fd = nxt
        nxt = os.open(sub.parts[-1], flags | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
        os.close(fd)
        fd = nxt
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("it is not a regular file")
        if info.st_size > max_bytes:
            raise Unreadable(f"it is larger than {max_bytes >> 20} MB")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise Unreadable(f"it is larger than {max_bytes >> 20} MB")
        return b"".join(chunks)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise Unreadable("it is a symbolic link, or inside one (not followed)") from None
        raise Unreadable(f"cannot read it ({e.strerror})") from None
    finally:
        os.close(fd)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the notebook inside ---------------------------------------------------------------------------------


def _text(value: object, where: str) -> str:
    """A cell's source: a string, or a list of strings (nbformat's two forms); valid Unicode."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "".join(value)
    if not isinstance(value, str):
        raise Unreadable(f"{where}: its source is a {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unreadable(f"{where}: it holds text that is not valid Unicode (a lone surrogate)") from None
    return value


def _meta(cell: dict, where: str, notes: list[str]) -> dict:
    """The metadata the grader reads, each of the right type; what is not is ignored, with a note."""
    meta = cell.get("metadata", {})
    if not isinstance(meta, dict):
        notes.append(f"{where}: its metadata is a {type(meta).__name__} (ignored)")
        meta = {}
    out = {}
    for key in ("gptlib", "nbgrader"):
        value = meta.get(key)
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if isinstance(v, str | bool | int | float)}
        elif value is not None:
            notes.append(f"{where}: its {key} metadata is a {type(value).__name__} (ignored)")
    tags = meta.get("tags")
    if isinstance(tags, list):
        out["tags"] = [t for t in tags if isinstance(t, str)]
    elif tags is not None:
        notes.append(f"{where}: its tags are a {type(tags).__name__} (ignored)")
    return out


def parse(data: bytes, notes: list[str] | None = None) -> nbformat.NotebookNode:
    """A submitted notebook's cells (type, source, the metadata the grader reads), sanitised. Unreadable if it
    is not a notebook the grader can read; metadata of the wrong type is ignored and noted in `notes`."""
    notes = notes if notes is not None else []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Unreadable(f"it is not UTF-8 text (byte {e.start})") from None
    try:
        nb = json.loads(text)
    except RecursionError:
        raise Unreadable("its JSON is nested too deeply") from None
    except ValueError as e:
        raise Unreadable(f"it is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(nb, dict):
        raise Unreadable(f"it is not a notebook (its JSON is a {type(nb).__name__}, not an object)")
    if "worksheets" in nb and "cells" not in nb:
        raise Unreadable("it is in the old notebook format (v3); open it in JupyterLab and save it again")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise Unreadable("it has no list of cells")
    if len(cells) > MAX_CELLS:
        raise Unreadable(f"it has more than {MAX_CELLS} cells")
    out, total = [], 0
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise Unreadable(f"cell {i + 1} is not a notebook cell")
        source = _text(cell.get("source", ""), f"cell {i + 1}")
        total += len(source)
        if total > MAX_SOURCE:
            raise Unreadable(f"its cells hold more than {MAX_SOURCE >> 20} M characters")
        out.append(
            {
                "cell_type": cell["cell_type"],
                "source": source,
                "metadata": _meta(cell, f"cell {i + 1}", notes),
            }
        )
    return nbformat.from_dict({"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
