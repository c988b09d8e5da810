"""Reading ``--in -5s`` as an option and its value, not two options.

argparse takes a word that starts with a minus for an option unless it looks like a
negative number, and offers no public way to say what looks like one: recent CPython
keeps the pattern in the private attribute ``_negative_number_matcher``. This is the one
module that sets it. Where an argparse has no such attribute, nothing is set, and
``--in -5s`` is a usage error whose message says to write ``--in=-5s``.
"""

from __future__ import annotations

import argparse
import re

#: What is read as a value rather than an option: a minus then a digit, as in ``-5``,
#: ``-0.5``, ``-5s`` or ``-1h30m``.
VALUE_LIKE = re.compile(r"-\.?\d")

_ATTRIBUTE = "_negative_number_matcher"


def read_minus_digit_as_value(parser: argparse.ArgumentParser) -> bool:
    """Make `parser` read words like ``-5s`` as values; False where this argparse has no
    way to be told (they are then taken for options)."""
    if not hasattr(parser, _ATTRIBUTE):
        return False
    setattr(parser, _ATTRIBUTE, VALUE_LIKE)
    return True
