"""The checked number arguments every command line shares (``command_io/arguments.py``)."""
from __future__ import annotations

import argparse

import pytest

from appliance.command_io.arguments import bounded, positive_int


def test_a_number_in_range_is_taken_with_underscores():
    assert bounded(int, 0, 65535)("9_464") == 9464
    assert bounded(float, 0.01, 600, " s")("0.5") == 0.5
    assert positive_int("1") == 1


@pytest.mark.parametrize("parse, text, message", [
    (bounded(int, 0, 65535), "65536", "'65536' must be between 0 and 65535"),
    (bounded(float, 0.01, 600, " s"), "0", "'0' must be between 0.01 and 600 s"),
    (bounded(int, 0, 10), "1.5", "'1.5' is not an integer"),
    (bounded(float, 0, 1), "nan?", "'nan?' is not a number"),
    (positive_int, "0", "'0' must be between 1 and"),
])
def test_a_bad_number_is_an_argparse_error_naming_the_text_and_the_range(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace(".", r"\.").replace("?", r"\?")):
        parse(text)
