"""What every ``appliance`` command line shares: the usage error and checked number arguments.

Both the appliance's commands and the simulated exchange's (``appliance exchange``) use these, so
a bad number reads the same everywhere and a usage error exits 2 with one line.
"""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """A command line that cannot be acted on; reported in one line, exit status 2."""


def bounded(kind: type, low, high, unit: str = ""):
    """An argparse type: a number of `kind` (int or float, underscores allowed) within [low, high]."""
    def parse(text: str):
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} must be between {low} and {high}{unit}")
        return value
    return parse


positive_int = bounded(int, 1, 2**62)
