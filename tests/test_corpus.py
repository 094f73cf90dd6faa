"""Tests for gptlib.corpus: the offline default, local files, and downloads from a local server."""

import functools
import gzip
import hashlib
import http.server
import platform
import socket
import sys
import threading
from pathlib import Path

import pytest

from gptlib import corpus
from gptlib.corpus import (
    ChecksumMismatchError,
    CorpusSpec,
    CorpusUnavailableError,
    check_corpus,
    default_cache_dir,
    download,
    load_corpus,
)

PAYLOAD = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch):
    # A proxy from the environment must not intercept requests to the local test server.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """A local HTTP server serving tmp_path/'served'; yields (base_url, served_dir, request_paths)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "input.txt").write_bytes(PAYLOAD)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/input.txt"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- downloads ------------------------------------------------------------------------------


def test_download_then_cache_hit_makes_no_request(server, tmp_path):
    base, _, requests = server
    cache = tmp_path / "cache"
    path = download(f"{base}/input.txt", sha(PAYLOAD), cache_dir=cache, filename="corpus.txt")
    assert path == cache / "corpus.txt"
    assert path.read_bytes() == PAYLOAD
    assert requests == ["/input.txt"]
    again = download(f"{base}/input.txt", sha(PAYLOAD), cache_dir=cache, filename="corpus.txt")
    assert again == path
    assert requests == ["/input.txt"]  # served from the cache
    assert sorted(p.name for p in cache.iterdir()) == ["corpus.txt"]  # no temp files left


def test_download_names_file_after_url_by_default(server, tmp_path):
    base, _, _ = server
    path = download(f"{base}/input.txt", sha(PAYLOAD), cache_dir=tmp_path / "c")
    assert path.name == "input.txt"


def test_corrupt_cached_file_is_downloaded_again(server, tmp_path):
    base, _, requests = server
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "corpus.txt").write_bytes(b"truncated")
    path = download(f"{base}/input.txt", sha(PAYLOAD), cache_dir=cache, filename="corpus.txt")
    assert path.read_bytes() == PAYLOAD
    assert len(requests) == 1


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    base, _, _ = server
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        download(f"{base}/input.txt", wrong, cache_dir=cache, filename="corpus.txt")
    msg = str(info.value)
    assert sha(PAYLOAD) in msg and wrong in msg and "deleted" in msg
    assert isinstance(info.value, CorpusUnavailableError)
    assert list(cache.iterdir()) == []


def test_http_error_is_reported(server, tmp_path):
    base, _, _ = server
    with pytest.raises(CorpusUnavailableError, match="HTTP 404"):
        download(f"{base}/missing.txt", None, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_offline_error_says_what_to_do(closed_port_url, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(CorpusUnavailableError) as info:
        download(closed_port_url, sha(PAYLOAD), cache_dir=cache, timeout=5)
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert closed_port_url in msg
    assert "pass its path" in msg and "load_corpus('pydoc')" in msg
    assert list(cache.iterdir()) == []


def test_load_corpus_downloads_a_registered_corpus(server, tmp_path, monkeypatch):
    base, _, requests = server
    spec = CorpusSpec(name="tiny", url=f"{base}/input.txt", sha256=sha(PAYLOAD), filename="tiny.txt")
    monkeypatch.setitem(corpus.CORPORA, "tiny", spec)
    text = load_corpus("tiny", cache_dir=tmp_path / "cache")
    assert text == PAYLOAD.decode()
    assert load_corpus("tiny", cache_dir=tmp_path / "cache") == text
    assert len(requests) == 1
    assert "tiny" in corpus.known_corpora()


def test_load_corpus_uses_the_cache_env_var(server, tmp_path, monkeypatch):
    base, _, _ = server
    spec = CorpusSpec(name="tiny", url=f"{base}/input.txt", sha256=sha(PAYLOAD), filename="tiny.txt")
    monkeypatch.setitem(corpus.CORPORA, "tiny", spec)
    monkeypatch.setenv("GPTLIB_CACHE", str(tmp_path / "envcache"))
    load_corpus("tiny")
    assert (tmp_path / "envcache" / "tiny.txt").read_bytes() == PAYLOAD


def test_mirror_url_must_serve_the_real_tinyshakespeare(server, tmp_path):
    base, _, requests = server
    with pytest.raises(ChecksumMismatchError, match=corpus.TINYSHAKESPEARE_SHA256):
        load_corpus("tinyshakespeare", cache_dir=tmp_path / "cache", url=f"{base}/input.txt")
    assert requests == ["/input.txt"]
    assert list((tmp_path / "cache").iterdir()) == []


def test_tinyshakespeare_offline_is_a_clear_error(closed_port_url, tmp_path):
    with pytest.raises(CorpusUnavailableError, match="pydoc"):
        load_corpus("tinyshakespeare", cache_dir=tmp_path / "cache", url=closed_port_url)


def test_tinyshakespeare_spec_is_the_known_file():
    spec = corpus.CORPORA["tinyshakespeare"]
    assert (
        spec.url
        == "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    )
    assert spec.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert spec.size_bytes == 1_115_394


# --- cache folder ---------------------------------------------------------------------------


def test_default_cache_dir_env_and_platforms(monkeypatch, tmp_path):
    monkeypatch.setenv("GPTLIB_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("GPTLIB_CACHE")

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "gptlib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "gptlib"

    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_cache_dir() == Path.home() / "Library" / "Caches" / "gptlib"

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_cache_dir() == tmp_path / "local" / "gptlib" / "Cache"


# --- the offline default --------------------------------------------------------------------


def test_pydoc_corpus_is_offline_large_and_deterministic():
    text = load_corpus()
    assert text == load_corpus("pydoc")
    assert len(text) == 465_048 and len(set(text)) == 103  # the numbers the stored notebooks rely on
    assert "def " in text and "\n" in text
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == corpus.PYDOC_SHA256


@pytest.mark.skipif(
    platform.python_version() != corpus.PYDOC_SNAPSHOT_PYTHON,
    reason=f"the snapshot was made on Python {corpus.PYDOC_SNAPSHOT_PYTHON}; other releases edit the docs",
)
def test_the_snapshot_is_pydoc_data_of_the_python_it_names():
    assert load_corpus("pydoc") == corpus.pydoc_text_from_stdlib()


def test_the_snapshot_is_close_to_this_pythons_pydoc_data():
    # On any Python the snapshot and the live topics share their beginning: it is the same documentation.
    live = corpus.pydoc_text_from_stdlib()
    assert live[:2000] == load_corpus("pydoc")[:2000]


def test_a_damaged_or_missing_snapshot_says_to_reinstall(tmp_path, monkeypatch):
    good = gzip.decompress(corpus.PYDOC_SNAPSHOT.read_bytes())
    damaged = tmp_path / "pydoc.txt.gz"
    damaged.write_bytes(gzip.compress(good.replace(b"def ", b"fed ", 1)))
    monkeypatch.setattr(corpus, "PYDOC_SNAPSHOT", damaged)
    with pytest.raises(CorpusUnavailableError, match="damaged.*Reinstall gptlib"):
        load_corpus("pydoc")
    damaged.write_bytes(b"not gzip")
    with pytest.raises(CorpusUnavailableError, match="cannot be read.*Reinstall gptlib"):
        load_corpus("pydoc")
    monkeypatch.setattr(corpus, "PYDOC_SNAPSHOT", tmp_path / "missing.txt.gz")
    with pytest.raises(CorpusUnavailableError, match="cannot be read"):
        load_corpus("pydoc")


def test_pydoc_refuses_a_url():
    with pytest.raises(ValueError, match="never downloaded"):
        load_corpus("pydoc", url="http://127.0.0.1:1/x.txt")


# --- local files ----------------------------------------------------------------------------


def test_local_path_as_str_or_path(tmp_path):
    p = tmp_path / "my.txt"
    p.write_bytes("to be, or not to be\r\nthat is the question — ✓\n".encode())
    assert load_corpus(p) == "to be, or not to be\nthat is the question — ✓\n"
    assert load_corpus(str(p)) == load_corpus(p)


def test_byte_order_mark_is_dropped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfhello")
    assert load_corpus(p) == "hello"


def test_missing_path_names_the_known_corpora(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_corpus(tmp_path / "nope.txt")
    msg = str(info.value)
    assert "nope.txt" in msg and "pydoc" in msg and "tinyshakespeare" in msg
    with pytest.raises(FileNotFoundError, match="neither a known corpus name"):
        load_corpus("shakespeare")


def test_empty_file_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(p)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text: byte 0xe9 at offset 3"):
        load_corpus(p)


def test_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        load_corpus(tmp_path)


def test_url_with_a_path_is_refused(tmp_path):
    p = tmp_path / "my.txt"
    p.write_text("abc", encoding="utf-8")
    with pytest.raises(ValueError, match="named corpora"):
        load_corpus(p, url="http://127.0.0.1:1/x")


# --- check_corpus ---------------------------------------------------------------------------


def test_check_corpus_lengths():
    assert check_corpus("abcd", block_size=3) == "abcd"
    with pytest.raises(ValueError, match=r"has 4 characters.*block_size=4.*needs block_size \+ 1 = 5"):
        check_corpus("abcd", block_size=4)
    with pytest.raises(ValueError, match="empty"):
        check_corpus("", block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        check_corpus("abcd", block_size=-1)
