"""Tests for lm.data.normalize: each normalisation step, its count, and its switch."""

import pickle
import unicodedata

import pytest

from lm.data.normalize import Normalize


def test_clean_text_is_unchanged_with_no_counts():
    text = "A clean line.\n\tIndented line with a tab.\n\n中文也不变。"
    assert Normalize()(text) == (text, {})


def test_line_endings_become_newlines():
    assert Normalize()("a\r\nb\rc\nd") == ("a\nb\nc\nd", {"line_endings": 2})


def test_control_characters_are_removed_but_newline_and_tab_kept():
    text = "\ufeffa\x00b\x07c\td\x1b[0m\ne\u200bf\x85g"
    assert Normalize()(text) == ("abc\td[0m\nefg", {"control_chars": 6})


def test_nfc_composes_combining_marks():
    decomposed = "cafe\u0301 and Ame\u0301lie"
    out, counts = Normalize()(decomposed)
    assert out == "café and Amélie"
    assert unicodedata.is_normalized("NFC", out)
    assert counts == {"nfc": 1}


def test_inner_space_runs_collapse_and_indentation_is_kept():
    text = "word  \t  word   word\n    indented  line"
    assert Normalize()(text) == ("word word word\n    indented line", {"collapse_spaces": 3})


def test_trailing_spaces_are_stripped_per_line():
    assert Normalize()("one  \ntwo\t\nthree") == ("one\ntwo\nthree", {"strip_trailing": 2})


def test_each_step_can_be_switched_off():
    text = "e\u0301  x \r\ny\x00"
    assert Normalize(nfc=False, line_endings=False, control_chars=False, collapse_spaces=False,
                     strip_trailing=False)(text) == (text, {})
    assert Normalize(nfc=False)(text)[0] == "e\u0301 x\ny"
    assert Normalize(line_endings=False, control_chars=False)(text)[0] == "é x \r\ny\x00"
    assert Normalize(collapse_spaces=False)(text)[0] == "é  x\ny"


def test_is_deterministic_and_picklable():
    step = pickle.loads(pickle.dumps(Normalize(collapse_spaces=False)))
    assert step.collapse_spaces is False
    assert step("a  b\r\n") == Normalize(collapse_spaces=False)("a  b\r\n") == ("a  b\n", {
        "line_endings": 1})


@pytest.mark.parametrize("text, expected", [
    ("", ("", {})), ("\n\n", ("\n\n", {})), ("  \t", ("", {"strip_trailing": 1}))])
def test_empty_and_blank_text(text, expected):
    assert Normalize()(text) == expected
