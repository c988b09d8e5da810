"""CPython's C accelerators of json, which its private names reach, kept in this one module.

The codec encodes and decodes an envelope per timer, and json's public entry points rebuild
the C encoder on every call. Each function here returns the accelerator, checked against
json's public result, or None where the interpreter has none (or a different one): the
caller then takes json's public way, which gives the same text and values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json import encoder as json_encoder
from json import scanner as json_scanner
from typing import Any

#: A C encoder: (value, indent level) -> the JSON text's chunks.
Encode = Callable[[Any, int], Sequence[str]]
#: A scanner: (text, index) -> (value, index just after it); StopIteration when none.
Scan = Callable[[str, int], tuple[Any, int]]

#: What a speedup must encode and decode exactly as json's public way does.
_SAMPLE: dict[str, Any] = {"v": 1, "p": [1, 1.5, "é\n\u2028", None, True, {"k": -2e300}]}


def c_encoder(encoder: json.JSONEncoder) -> Encode | None:
    """CPython's C encoder with `encoder`'s separators, ensure_ascii and allow_nan (keys
    unsorted, none skipped), or None. It keeps no circular-reference markers: markers
    shared between threads would report false cycles, and a real cycle still fails
    (RecursionError)."""
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return None
    text_of = (
        json_encoder.encode_basestring_ascii if encoder.ensure_ascii
        else json_encoder.encode_basestring
    )
    try:
        encode: Encode = make(
            None, encoder.default, text_of, None, encoder.key_separator,
            encoder.item_separator, False, False, encoder.allow_nan,
        )
        if "".join(encode(_SAMPLE, 0)) != encoder.encode(_SAMPLE):
            return None
    except (TypeError, ValueError):  # another signature: keep the public way
        return None
    return encode


def c_scanner(decoder: json.JSONDecoder) -> Scan | None:
    """CPython's C scanner of `decoder`'s options, or None: the function json.loads ends
    up calling, without its two regex matches and three calls around it."""
    make = getattr(json_scanner, "c_make_scanner", None)
    if make is None:
        return None
    try:
        scan: Scan = make(decoder)
        text = json.dumps(_SAMPLE, ensure_ascii=False)
        if scan(text, 0) != (decoder.decode(text), len(text)):
            return None
    except (TypeError, ValueError, StopIteration):
        return None
    return scan
