"""The backplane's framing, without trio or a server."""

from __future__ import annotations

import pytest

import transport
from tests.redis_support import CODEC, Echo
from transport import _codec
from transport._backplane._failures import is_connection_failure, redact
from transport._backplane._wire import (
    MalformedFrameError,
    OversizedFrameError,
    ReplyHeader,
    RequestHeader,
    decode_envelope,
    decode_payload,
    encode_payload,
    encode_reply,
    encode_request,
)

RAW = transport.RawCodec()


def test_payloads_keep_text_and_bytes_apart() -> None:
    assert encode_payload(RAW, "é", 100) == "té".encode()
    assert decode_payload(RAW, encode_payload(RAW, "é", 100), 100) == "é"
    assert decode_payload(RAW, encode_payload(RAW, b"\xff", 100), 100) == b"\xff"
    assert decode_payload(CODEC, encode_payload(CODEC, Echo("x"), 100), 100) == Echo("x")


def test_bad_payloads_raise_decode_errors_only() -> None:
    with pytest.raises(MalformedFrameError):
        decode_payload(RAW, b"", 100)
    with pytest.raises(MalformedFrameError):
        decode_payload(RAW, b"x", 100)
    with pytest.raises(MalformedFrameError):
        decode_payload(RAW, b"t\xff", 100)
    with pytest.raises(OversizedFrameError):
        decode_payload(RAW, b"t" + b"a" * 100, 100)
    with pytest.raises(_codec.UnknownTagError):
        decode_payload(CODEC, b't{"type":"nope"}', 100)


def test_oversized_and_unencodable_messages_are_refused() -> None:
    with pytest.raises(transport.OversizedMessageError, match="max_message_size"):
        encode_payload(RAW, "a" * 100, 100)
    with pytest.raises(transport.EncodeError):
        encode_payload(RAW, 42, 100)


def test_envelopes_round_trip() -> None:
    request = RequestHeader("1", "echo", "ns:node:x", 2.5)
    assert decode_envelope(encode_request(request, b"tpayload"), 1000) == (request, b"tpayload")
    reply = ReplyHeader("1", error="ValueError", detail="no")
    assert decode_envelope(encode_reply(reply), 1000) == (reply, b"")
    for bad in (b"Qnot json\n", b"X{}\n", b"R[]\n", b'Q{"id":1}\n', b"Q{}"):
        with pytest.raises(MalformedFrameError):
            decode_envelope(bad, 1000)


def test_connection_failures_and_redaction() -> None:
    assert is_connection_failure(ExceptionGroup("x", [OSError(), TimeoutError()]))
    assert not is_connection_failure(ExceptionGroup("x", [OSError(), ValueError()]))
    assert redact("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"
    assert redact("redis://host:1") == "redis://host:1"
