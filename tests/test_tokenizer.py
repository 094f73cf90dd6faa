"""Tests for gptlib.tokenizer.CharTokenizer."""

import json

import pytest
import torch

from gptlib.tokenizer import CharTokenizer, UnknownCharacterError

TEXT = "hello, world!\nÜber café — naïve 😀"


def test_vocab_is_sorted_distinct_characters():
    tok = CharTokenizer.from_text("banana")
    assert tok.chars == ["a", "b", "n"]
    assert tok.vocab_size == 3 == len(tok)
    assert tok.encode("nab") == [2, 0, 1]


def test_round_trip_including_non_ascii():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == TEXT
    assert tok.decode(tuple(ids)) == TEXT


def test_encode_tensor_and_decode_tensor():
    tok = CharTokenizer.from_text(TEXT)
    t = tok.encode_tensor(TEXT)
    assert t.dtype == torch.long and t.shape == (len(TEXT),)
    assert t.tolist() == tok.encode(TEXT)
    assert tok.decode(t) == TEXT
    assert tok.decode(t.to(torch.int32)) == TEXT


def test_empty_string_encodes_to_nothing():
    tok = CharTokenizer.from_text("ab")
    assert tok.encode("") == []
    assert tok.decode([]) == ""
    assert tok.encode_tensor("").shape == (0,)


def test_from_text_rejects_empty_and_non_str():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="str"):
        CharTokenizer.from_text(b"bytes")  # type: ignore[arg-type]


def test_constructor_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="repeats"):
        CharTokenizer(["a", "b", "a"])
    with pytest.raises(ValueError, match="single character"):
        CharTokenizer(["a", "bc"])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer([])


def test_unknown_characters_are_named_with_positions_and_advice():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("abXcY!")
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'X'" in msg and "'Y'" in msg and "'!'" in msg
    assert "2, 4, 5" in msg
    assert "build the tokenizer from a text that contains them" in msg


def test_unknown_character_message_is_bounded():
    tok = CharTokenizer.from_text("a")
    text = "".join(chr(0x4E00 + i) for i in range(500))
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode(text)
    msg = str(info.value)
    assert "and 490 more" in msg
    assert len(msg) < 600


def test_decode_rejects_out_of_range_and_non_int_ids():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"0\.\.2"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(torch.tensor([-1]))
    with pytest.raises(ValueError, match="not an int"):
        tok.decode([0.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="integer"):
        tok.decode(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="list/tuple"):
        tok.decode("abc")  # type: ignore[arg-type]


def test_equality_hash_and_repr():
    a = CharTokenizer.from_text("hello")
    b = CharTokenizer.from_text("olleh")
    c = CharTokenizer.from_text("help")
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != "ehlo"
    r = repr(CharTokenizer.from_text("".join(chr(32 + i) for i in range(90))))
    assert r.startswith("CharTokenizer(vocab_size=90") and len(r) < 100


def test_chars_property_is_a_copy():
    tok = CharTokenizer.from_text("ab")
    tok.chars.append("z")
    assert tok.vocab_size == 2


def test_dict_round_trip_and_json_able():
    tok = CharTokenizer.from_text(TEXT)
    d = json.loads(json.dumps(tok.to_dict()))
    assert CharTokenizer.from_dict(d) == tok
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.from_dict({"chars": ["a"]})
    with pytest.raises(ValueError, match="version"):
        CharTokenizer.from_dict({**tok.to_dict(), "version": 99})


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    path = tok.save(tmp_path / "sub" / "tok.json")
    assert path.is_file()
    assert CharTokenizer.load(path) == tok
    assert "😀" in path.read_text(encoding="utf-8")  # stored as UTF-8, not \u escapes
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temp file left


def test_save_replaces_atomically_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    old = CharTokenizer.from_text("old")
    old.save(path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("gptlib.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        CharTokenizer.from_text("new text").save(path)
    assert CharTokenizer.load(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        CharTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(bad)
