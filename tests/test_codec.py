"""Unit tests of redistimers.codec: payloads and envelopes on the wire, without Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import platform
import subprocess
import sys
from json import encoder as json_encoder
from json import scanner as json_scanner
from typing import Any

import attrs
import pytest

from redistimers import PayloadTypeError
from redistimers._json_speedups import c_encoder, c_scanner
from redistimers.codec import (
    ENVELOPE_VERSION,
    Envelope,
    EnvelopeError,
    decode_envelope,
    encode_envelope,
    structure_payload,
    unstructure_payload,
)
from redistimers.periodic import Period

from .helpers import REPO, cli_environment

UTC = dt.timezone.utc


@attrs.frozen
class InvoiceDue:
    invoice_id: str
    amount_cents: int


@attrs.frozen
class Reminder:
    user: str
    at: dt.datetime
    tags: list[str] = attrs.field(factory=list)
    invoice: InvoiceDue | None = None


@dataclasses.dataclass(frozen=True)
class Ping:
    host: str
    port: int
    weights: dict[str, float] = dataclasses.field(default_factory=dict)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def encode(payload: Any, payload_type: Any = None, **kwargs: Any) -> str:
    options: dict[str, Any] = {"headers": {}, "correlation_id": None}
    options.update(kwargs)
    return encode_envelope("topic", payload, payload_type, **options)


def round_trip(payload: Any, payload_type: Any) -> Any:
    return structure_payload(decode_envelope(encode(payload, payload_type)).payload, payload_type)


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "payload_type"),
    [
        (InvoiceDue("INV-1", 995), InvoiceDue),
        (
            Reminder(
                "ann",
                dt.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
                ["a", "b"],
                InvoiceDue("INV-2", 5),
            ),
            Reminder,
        ),
        (Reminder("bob", dt.datetime(2030, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3)))),
         Reminder),
        (Ping("db.local", 5432, {"a": 0.5}), Ping),
        ({"a": 1, "b": [1, 2, {"c": None}]}, dict),
        ({"a": 1, "b": 2}, dict[str, int]),
        ([1, "two", 3.5, None, True], list),
        ([InvoiceDue("A", 1), InvoiceDue("B", 2)], list[InvoiceDue]),
        ({"x": InvoiceDue("A", 1)}, dict[str, InvoiceDue]),
        (dt.datetime(2030, 5, 6, 7, 8, 9, 1, tzinfo=UTC), dt.datetime),
        (dt.date(2030, 5, 6), dt.date),
        ("text with ünïcode and \"quotes\" \n", str),
        (42, int),
        (2.5, float),
        (False, bool),
        (Color.BLUE, Color),
        (InvoiceDue("A", 1), InvoiceDue | None),
        (None, InvoiceDue | None),
    ],
)
def test_payload_round_trips_through_its_envelope(payload: Any, payload_type: Any) -> None:
    result = round_trip(payload, payload_type)
    assert result == payload
    assert type(result) is type(payload)


def test_int_payload_is_accepted_for_a_float_topic_and_decodes_as_float() -> None:
    result = round_trip(3, float)
    assert result == 3.0
    assert isinstance(result, float)


def test_untyped_payload_is_stored_as_json_and_handed_back_as_json() -> None:
    envelope = decode_envelope(encode({"when": dt.datetime(2030, 1, 1, tzinfo=UTC), "n": 1}))
    assert envelope.payload == {"when": "2030-01-01T00:00:00+00:00", "n": 1}
    assert structure_payload(envelope.payload, None) == envelope.payload


def test_untyped_attrs_payload_is_stored_as_its_fields() -> None:
    assert decode_envelope(encode(InvoiceDue("INV-1", 995))).payload == {
        "invoice_id": "INV-1",
        "amount_cents": 995,
    }


def test_unstructure_payload_gives_the_json_form() -> None:
    raw = unstructure_payload("t", Reminder("ann", dt.datetime(2030, 1, 1, tzinfo=UTC)), Reminder)
    assert raw == {
        "user": "ann",
        "at": "2030-01-01T00:00:00+00:00",
        "tags": [],
        "invoice": None,
    }


# -- the envelope -----------------------------------------------------------------------


def test_envelope_is_compact_versioned_json_with_all_fields() -> None:
    text = encode(
        InvoiceDue("INV-1", 995),
        InvoiceDue,
        headers={"tenant": "acme"},
        correlation_id="req-1",
    )
    assert " " not in text
    assert json.loads(text) == {
        "v": ENVELOPE_VERSION,
        "p": {"invoice_id": "INV-1", "amount_cents": 995},
        "h": {"tenant": "acme"},
        "c": "req-1",
    }
    assert ENVELOPE_VERSION == 1


def test_envelope_leaves_out_empty_headers_and_missing_correlation_id() -> None:
    assert json.loads(encode("p")) == {"v": 1, "p": "p"}


def test_envelope_keeps_non_ascii_text_as_is() -> None:
    assert "ünï" in encode("ünï")


def test_decode_envelope_gives_payload_headers_and_correlation() -> None:
    text = encode([1, 2], None, headers={"k": "v"}, correlation_id="c-1")
    assert decode_envelope(text) == Envelope(
        payload=[1, 2], headers={"k": "v"}, correlation_id="c-1"
    )
    assert decode_envelope(text.encode()) == decode_envelope(text)


def test_decode_envelope_of_minimal_foreign_envelope() -> None:
    """Another language may write just the version and the payload."""
    assert decode_envelope('{"v":1,"p":{"a":1}}') == Envelope(payload={"a": 1})


@pytest.mark.parametrize("created", ["1700000000000", "null", '"then"', "1.5"])
def test_decode_envelope_ignores_the_creation_time_older_versions_wrote(created: str) -> None:
    """Older versions could write a "t" (creation time, ms): such timers still decode."""
    old = f'{{"v":1,"p":{{"a":1}},"h":{{"k":"v"}},"c":"c-1","t":{created}}}'
    assert decode_envelope(old) == Envelope(
        payload={"a": 1}, headers={"k": "v"}, correlation_id="c-1"
    )


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "JSON object with a payload"),
        ('{"v": 1}', "JSON object with a payload"),
        ('{"p": 1}', "version None"),
        ('{"v": 2, "p": 1}', "version 2"),
        ('{"v": 1, "p": 1, "h": ["a"]}', "malformed"),
        ('{"v": 1, "p": 1, "c": 5}', "malformed"),
    ],
)
def test_decode_envelope_rejects_what_is_not_a_version_1_envelope(
    raw: str | bytes, match: str
) -> None:
    with pytest.raises(EnvelopeError, match=match):
        decode_envelope(raw)


def test_structure_payload_that_no_longer_fits_its_type_raises_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="InvoiceDue") as info:
        structure_payload({"invoice_id": "x"}, InvoiceDue)
    assert "amount_cents" in str(info.value)


# -- payloads that do not fit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "payload_type", "got"),
    [
        ({"invoice_id": "INV-1", "amount_cents": 1}, InvoiceDue, "dict"),
        (Ping("h", 1), InvoiceDue, "Ping"),
        ("5", int, "str"),
        (None, str, "NoneType"),
        (1.5, int, "float"),
        ([1, 2], dict, "list"),
    ],
)
def test_payload_not_of_the_topic_type_is_rejected_naming_topic_and_type(
    payload: Any, payload_type: Any, got: str
) -> None:
    with pytest.raises(PayloadTypeError) as info:
        encode_envelope("invoices", payload, payload_type, {}, None)
    message = str(info.value)
    assert "'invoices'" in message
    assert payload_type.__qualname__ in message
    assert got in message
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("payload", "payload_type"),
    [
        ([InvoiceDue("A", 1), {"invoice_id": "B", "amount_cents": 2}], list[InvoiceDue]),
        (["a", "b"], list[int]),
        ({"a": "x"}, dict[str, int]),
        ("text", InvoiceDue | None),
    ],
)
def test_payload_not_matching_a_generic_topic_type_is_rejected(
    payload: Any, payload_type: Any
) -> None:
    with pytest.raises(PayloadTypeError, match=r"payload for topic 'invoices' does not match"):
        encode_envelope("invoices", payload, payload_type, {}, None)


def test_attrs_payload_with_a_field_of_the_wrong_type_is_rejected() -> None:
    """InvoiceDue("INV-1", "lots") cannot be decoded into InvoiceDue by a worker: it must be
    rejected when it is scheduled, as it is when it sits in a list[InvoiceDue]."""
    with pytest.raises(PayloadTypeError, match=r"'invoices'.*InvoiceDue"):
        encode_envelope("invoices", InvoiceDue("INV-1", "lots"), InvoiceDue, {}, None)  # type: ignore[arg-type]


class Opaque:
    pass


def _cyclic() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    "payload",
    [
        Opaque(),
        {"k": Opaque()},
        decimal.Decimal("1.5"),
        1 + 2j,
        float("nan"),
        float("inf"),
        [1.0, float("-inf")],
        {(1, 2): "tuple keys"},
        _cyclic(),
    ],
    ids=[
        "object", "nested-object", "decimal", "complex", "nan", "inf", "nested-inf",
        "tuple-keys", "cyclic",
    ],
)
def test_payload_that_cannot_be_stored_as_json_raises_payload_type_error(payload: Any) -> None:
    with pytest.raises(PayloadTypeError, match="payload for topic 'untyped'"):
        encode_envelope("untyped", payload, None, {}, None)


def test_nan_in_a_typed_payload_is_rejected() -> None:
    with pytest.raises(PayloadTypeError, match="cannot be stored as JSON"):
        encode_envelope("pings", Ping("h", 1, {"w": float("nan")}), Ping, {}, None)


# -- json's public way, where CPython's C accelerators are missing -----------------------


def _encoding_cases() -> list[tuple[Any, Any, dict[str, Any]]]:
    """(payload, payload type, other encode_envelope arguments) of envelopes of every kind."""
    every = Period(every_ms=60_000.0)
    cron = Period(cron="0 7 * * mon", tz="Europe/Berlin")
    text = "ünïcode \u2028 \U0001f600 \x00\x1f \"quoted\" back\\slash \n"
    return [
        (text, None, {}),
        ({"é": [0.1, -0.0, 1e300, 2**70, True, None, {"ключ": text}]}, None, {}),
        ({1: "int key", 2.5: "float key"}, None, {}),
        (Reminder("ånn", dt.datetime(2030, 5, 6, 7, 8, 9, 1, tzinfo=UTC), ["ä", "b"],
                  InvoiceDue("INV-ü", 5)), Reminder, {}),
        ([InvoiceDue("A", 1), InvoiceDue("B", 2)], list[InvoiceDue], {}),
        (Reminder("bob", dt.datetime(2030, 1, 1, tzinfo=UTC)), None,
         {"headers": {"tenant": "äcme", "k": "v"}, "correlation_id": "req-ü"}),
        ({"n": 1}, None, {"period": every}),
        ({"n": 1}, None, {"period": every, "anchor_ms": 1_700_000_000_000.5}),
        (InvoiceDue("INV-1", 995), InvoiceDue, {"period": cron, "correlation_id": "c"}),
        (float("nan"), None, {}),
        (Ping("h", 1, {"w": float("inf")}), Ping, {}),
        (_cyclic(), None, {}),
        ("lone \ud800 surrogate", None, {}),
        (Opaque(), None, {}),
    ]


_DECODING_CASES = [
    '{"v":1,"p":"\\u00e9\\ud83d\\ude00","h":{"k":"v"},"c":"c"}',
    '{"v":1,"p":"\\ud800"}',
    ' {"v": 1, "p": [1, 2.5e400, -1e-400, NaN, Infinity]} ',
    '{"v":1,"p":1,"t":5}',
    '{"a":null,"v":1,"p":1,"e":60000}',
    '{"v":1,"p":1,"cron":"0 7 * * mon","tz":"Europe/Berlin"}',
    '{"v":1,"p":1}x',
    '{"v":1,"p":[1,}',
    '{"v":1,"p":"unterminated}',
    "not json",
    "",
]


def _failure(exc: Exception) -> str:
    """An error as text: the codec's words, without json's about why a payload cannot be
    written (about a bad float, its C and its Python code differ on some CPythons)."""
    if isinstance(exc, PayloadTypeError):
        return f"{type(exc).__name__}: {str(exc).partition(' as JSON: ')[0]}"
    return f"{type(exc).__name__}: {exc}"


def codec_outcomes() -> list[str]:
    """What the codec makes of every case, as text: each envelope encoded, decoded and its
    payload structured; then each raw envelope decoded, from str and from bytes."""
    outcomes: list[str] = []
    for payload, payload_type, options in _encoding_cases():
        arguments: dict[str, Any] = {"headers": {}, "correlation_id": None, **options}
        try:
            text = encode_envelope("t", payload, payload_type, **arguments)
        except PayloadTypeError as exc:
            outcomes.append(_failure(exc))
            continue
        envelope = decode_envelope(text)
        structured = structure_payload(envelope.payload, payload_type)
        outcomes += [text, repr(envelope), repr(structured)]
    for raw in _DECODING_CASES:
        for given in (raw, raw.encode()):
            try:
                outcomes.append(repr(decode_envelope(given)))
            except EnvelopeError as exc:
                outcomes.append(_failure(exc))
    return outcomes


_WITHOUT_C_JSON = """
import sys
sys.modules["_json"] = None  # as on an interpreter without json's C accelerators
import json
from redistimers._json_speedups import c_encoder, c_scanner
from tests.test_codec import codec_outcomes
speedups = [c_encoder(json.JSONEncoder()), c_scanner(json.JSONDecoder())]
print(json.dumps({"speedups": [s is not None for s in speedups], "outcomes": codec_outcomes()}))
"""


def test_without_cpythons_c_json_envelopes_encode_and_decode_exactly_the_same() -> None:
    """The codec's public-json way gives the very text and values of its C fast paths."""
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_C_JSON], capture_output=True, text=True, cwd=REPO,
        env=cli_environment(), timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    assert child["speedups"] == [False, False]  # the child took the public way
    if platform.python_implementation() == "CPython":
        assert c_encoder(json.JSONEncoder()) is not None  # and this process the C one
        assert c_scanner(json.JSONDecoder()) is not None
    outcomes = codec_outcomes()
    assert len(outcomes) > 40
    assert child["outcomes"] == outcomes


def test_speedups_are_none_without_cpythons_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_encoder, "c_make_encoder", None)
    monkeypatch.setattr(json_scanner, "c_make_scanner", None)
    assert c_encoder(json.JSONEncoder()) is None
    assert c_scanner(json.JSONDecoder()) is None


@pytest.mark.skipif(getattr(json_encoder, "c_make_encoder", None) is None, reason="no C json here")
def test_speedups_that_take_other_arguments_or_answer_otherwise_are_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def other_signature(*args: Any) -> Any:
        raise TypeError("takes 3 arguments")

    monkeypatch.setattr(json_encoder, "c_make_encoder", other_signature)
    monkeypatch.setattr(json_scanner, "c_make_scanner", other_signature)
    assert c_encoder(json.JSONEncoder()) is None
    assert c_scanner(json.JSONDecoder()) is None
    real_make_encoder = getattr(json_encoder, "c_make_encoder", None)
    assert real_make_encoder is not None

    def differs_without_markers(markers: Any, *args: Any) -> Any:
        """Like the real one for json (which passes markers), another JSON for the codec."""
        if markers is None:
            return lambda value, level: ["{}"]
        return real_make_encoder(markers, *args)

    monkeypatch.setattr(json_encoder, "c_make_encoder", differs_without_markers)
    monkeypatch.setattr(json_scanner, "c_make_scanner", lambda decoder: lambda text, i: ({}, 2))
    assert c_encoder(json.JSONEncoder()) is None
    assert c_scanner(json.JSONDecoder()) is None


def test_the_c_encoder_keeps_the_encoders_options() -> None:
    value = {"é": [1.5, None], "k": "\u2028"}
    choices: list[dict[str, Any]] = [{}, {"ensure_ascii": False}, {"separators": (",", ":")}]
    for options in choices:
        encoder = json.JSONEncoder(**options)
        encode = c_encoder(encoder)
        if encode is not None:
            assert "".join(encode(value, 0)) == encoder.encode(value)
