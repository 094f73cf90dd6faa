"""Corpora: the text a model learns from, by name or by path.

`load_corpus()` gives the offline default, "pydoc": the English text of
Python's own documentation, taken from the standard library's `pydoc_data`,
so the course runs with no network at all (dead download hosts are the most
common complaint about courses like this one). Each Python release edits that
text, and every number the lessons print (vocabulary, losses, samples) follows
it, so gptlib ships the text of one release (corpora/pydoc.txt.gz) and checks it. "tinyshakespeare", the corpus of
Karpathy's lecture, is downloaded once into a cache folder and checked
against its SHA-256. Any other name is read as the path of a UTF-8 text file.

Named downloads are data (`CORPORA`, a dict of `CorpusSpec`), and `download()`
takes its URL, checksum and cache folder as arguments, so a mirror or a test
server can stand in for the real host.

Taught in lesson 00: lessons/00_tokens_and_batches.ipynb.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CORPUS = "pydoc"
DOWNLOAD_TIMEOUT_S = 30.0

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394


class CorpusUnavailableError(RuntimeError):
    """A named corpus could not be fetched (no network, host down, or wrong bytes)."""


class ChecksumMismatchError(CorpusUnavailableError):
    """A download finished but its SHA-256 is not the expected one; nothing was kept."""


@dataclass(frozen=True)
class CorpusSpec:
    """Where a downloadable corpus lives and how to recognise the right bytes."""

    name: str
    url: str
    sha256: str
    filename: str
    size_bytes: int | None = None
    description: str = ""


CORPORA: dict[str, CorpusSpec] = {
    "tinyshakespeare": CorpusSpec(
        name="tinyshakespeare",
        url=TINYSHAKESPEARE_URL,
        sha256=TINYSHAKESPEARE_SHA256,
        filename="tinyshakespeare.txt",
        size_bytes=TINYSHAKESPEARE_BYTES,
        description="40,000 lines of Shakespeare from Karpathy's char-rnn (1.1 MB, 65 characters)",
    ),
}


def known_corpora() -> list[str]:
    """The names load_corpus() understands without a path."""
    return [DEFAULT_CORPUS, *CORPORA]


def default_cache_dir() -> Path:
    """Where downloads are kept: $GPTLIB_CACHE, else the platform's per-user cache folder.

    Linux: $XDG_CACHE_HOME/gptlib or ~/.cache/gptlib; macOS: ~/Library/Caches/gptlib;
    Windows: %LOCALAPPDATA%\\gptlib\\Cache.
    """
    env = os.environ.get("GPTLIB_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform.startswith("win"):
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "gptlib" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "gptlib"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "gptlib"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(
    url: str,
    sha256: str | None,
    cache_dir: str | os.PathLike[str] | None = None,
    filename: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Fetch `url` into `cache_dir/filename` once, and return the cached file's path.

    A cached file whose SHA-256 matches is used without touching the network.
    A download goes to a temporary file that replaces the target only when its
    SHA-256 matches `sha256` (None skips the check), so the cache never holds
    a partial or wrong file. Raises CorpusUnavailableError when the URL cannot
    be reached and ChecksumMismatchError when the bytes are not the expected ones.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if filename is None:
        filename = Path(urllib.parse.urlparse(url).path).name or "download"
    target = cache / filename
    if target.is_file() and (sha256 is None or sha256_of(target) == sha256):
        return target

    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        h.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as e:
                raise CorpusUnavailableError(
                    _offline_message(url, f"the server answered HTTP {e.code}")
                ) from e
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                raise CorpusUnavailableError(_offline_message(url, f"{reason}")) from e
        got = h.hexdigest()
        if sha256 is not None and got != sha256:
            raise ChecksumMismatchError(
                f"the file downloaded from {url} has SHA-256 {got}, expected {sha256}; it was deleted. "
                "The host may serve a changed or truncated file: download it yourself, check it, "
                "and pass its path to load_corpus(path)."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _offline_message(url: str, reason: str) -> str:
    return (
        f"could not download {url} ({reason}). If this machine has no network, download the file "
        "yourself (e.g. in a browser, on another machine) and pass its path: "
        f"load_corpus('path/to/file.txt'); or use the offline default: load_corpus({DEFAULT_CORPUS!r})."
    )


# The "pydoc" corpus as Python 3.11.7's pydoc_data has it (465,048 characters), and the SHA-256 of its UTF-8 bytes.
PYDOC_SNAPSHOT = Path(__file__).parent / "corpora" / "pydoc.txt.gz"
PYDOC_SNAPSHOT_PYTHON = "3.11.7"
PYDOC_SHA256 = "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"


def pydoc_text_from_stdlib() -> str:
    """This Python's documentation topics (`pydoc_data.topics`), joined in sorted-key order with newlines.

    The snapshot that pydoc_text() reads was made by this function on Python
    PYDOC_SNAPSHOT_PYTHON; other releases give a slightly different text.
    """
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def pydoc_text() -> str:
    """The "pydoc" corpus: ~465 kB of English about Python, ~103 distinct characters, the same on every Python.

    Read from the snapshot that ships with gptlib, so that stored outputs do not
    change with the Python patch release; checked against its SHA-256.
    """
    try:
        data = gzip.decompress(PYDOC_SNAPSHOT.read_bytes())
    except (OSError, EOFError) as e:
        raise CorpusUnavailableError(
            f"the 'pydoc' corpus that ships with gptlib ({PYDOC_SNAPSHOT}) cannot be read ({e}). "
            "Reinstall gptlib: pip install --force-reinstall --no-deps gptlib-course (in a clone: pip install -e .)."
        ) from e
    if hashlib.sha256(data).hexdigest() != PYDOC_SHA256:
        raise CorpusUnavailableError(
            f"the 'pydoc' corpus that ships with gptlib ({PYDOC_SNAPSHOT}) is damaged: its checksum is wrong. "
            "Reinstall gptlib: pip install --force-reinstall --no-deps gptlib-course (in a clone: pip install -e .)."
        )
    return data.decode("utf-8")


def check_corpus(text: str, block_size: int = 0, name: str = "the corpus") -> str:
    """Return `text` if it can make at least one (x, y) example of `block_size` tokens, else raise ValueError.

    One example needs block_size + 1 characters: x is block_size of them and
    y is the same window shifted by one. With block_size=0 this only checks
    that the text is not empty.
    """
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str, got {type(text).__name__}.")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 0:
        raise ValueError(f"block_size must be a non-negative int, got {block_size!r}.")
    if not text:
        raise ValueError(
            f"{name} is empty: there is nothing to learn from. Use a text file with some text in it."
        )
    need = block_size + 1
    if len(text) < need:
        raise ValueError(
            f"{name} has {len(text)} characters, too short to make even one training example with "
            f"block_size={block_size} (that needs block_size + 1 = {need}). Use a longer text or a "
            f"block_size below {len(text)}."
        )
    return text


def load_corpus(
    name_or_path: str | os.PathLike[str] = DEFAULT_CORPUS,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
) -> str:
    """The text of a corpus: "pydoc" (offline default), "tinyshakespeare" (downloaded once), or a file path.

    `url` overrides where a named corpus is downloaded from (a mirror); the
    checksum still applies, so the mirror must serve the same bytes.
    `cache_dir` overrides default_cache_dir(). A file path is read as UTF-8
    (a leading byte-order mark is dropped, line endings become "\\n").
    """
    if isinstance(name_or_path, str) and name_or_path == DEFAULT_CORPUS:
        if url is not None:
            raise ValueError(f"{DEFAULT_CORPUS!r} ships with gptlib and is never downloaded; drop url=.")
        return check_corpus(pydoc_text(), name=DEFAULT_CORPUS)
    if isinstance(name_or_path, str) and name_or_path in CORPORA:
        spec = CORPORA[name_or_path]
        path = download(url or spec.url, spec.sha256, cache_dir=cache_dir, filename=spec.filename)
        return check_corpus(path.read_bytes().decode("utf-8"), name=spec.name)
    if url is not None:
        raise ValueError(
            f"url= is for the named corpora ({', '.join(CORPORA)}), got a path {str(name_or_path)!r}. "
            "Download the file yourself and pass its path alone."
        )
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(f"load_corpus needs a corpus name or a path, got {type(name_or_path).__name__}.")
    return read_text_file(name_or_path)


def read_text_file(path: str | os.PathLike[str]) -> str:
    """A local text file as a str, with errors that say what to do."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{str(path)!r} is neither a known corpus name ({', '.join(known_corpora())}) nor an existing "
            f"file (looked for {p.resolve()}). Check the path, or use load_corpus({DEFAULT_CORPUS!r}) "
            "for the offline default."
        )
    if p.is_dir():
        raise ValueError(f"{p} is a folder; load_corpus needs a text file inside it.")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{p} is not UTF-8 text: byte 0x{e.object[e.start]:02x} at offset {e.start} is not valid UTF-8. "
            "Save the file as UTF-8 (most editors offer it under 'Save as... / Encoding') and try again."
        ) from None
    return check_corpus(text, name=str(p))
