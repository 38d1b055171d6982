"""How backplane messages travel through Redis: plain bytes, no pickle (sans-IO).

A *payload* is one message encoded by the backplane's codec, prefixed by one byte
saying what the codec produced: ``t`` for text (sent as UTF-8), ``b`` for bytes.
Topic messages and stream entries are payloads. Remote asks and tells travel as
*envelopes*: one kind byte (``Q`` request, ``R`` reply), a line of JSON with the
routing header, a newline, then the payload (absent in an error reply)::

    Q{"id":"9f..","name":"counter","reply_to":"ns:node:ab12..","timeout":4.5}\\n t{"type":"get"}

Nothing here awaits or touches the network; every function is tested without trio.
"""

from __future__ import annotations

import json
from typing import final

import attrs

from .._codec import Codec, DecodeError, EncodeError, as_decode_error

#: Default bound on one encoded backplane message, in bytes (1 MiB).
DEFAULT_MAX_PAYLOAD_SIZE = 1 << 20

_TEXT = b"t"[0]
_BYTES = b"b"[0]


class OversizedMessageError(EncodeError):
    """An encoded message is larger than the backplane's ``max_message_size``; nothing was sent."""


class OversizedFrameError(DecodeError):
    """A message received from the backplane is larger than ``max_message_size``."""


class MalformedFrameError(DecodeError):
    """A message received from the backplane does not have the backplane's framing."""


def encode_payload(codec: Codec, message: object, max_size: int) -> bytes:
    """``message`` encoded by ``codec`` and framed; :exc:`EncodeError` if it cannot be sent."""
    try:
        frame = codec.encode(message)
    except EncodeError:
        raise
    except Exception as exc:  # a user codec may raise anything; it is still an encode failure
        raise EncodeError(f"{message!r} cannot be encoded: {exc}") from exc
    data = b"t" + frame.encode("utf-8") if isinstance(frame, str) else b"b" + bytes(frame)
    if len(data) > max_size:
        raise OversizedMessageError(
            f"{type(message).__qualname__} encodes to {len(data)} bytes, more than the "
            f"backplane's max_message_size of {max_size}; send less, or raise the limit "
            "in every process"
        )
    return data


def decode_payload(codec: Codec, data: bytes, max_size: int) -> object:
    """The message a payload holds; :exc:`DecodeError` (never anything else) for bad input."""
    if len(data) > max_size:
        raise OversizedFrameError(
            f"a backplane message of {len(data)} bytes exceeds max_message_size ({max_size})",
            data,
        )
    if not data or data[0] not in (_TEXT, _BYTES):
        raise MalformedFrameError(
            "a backplane message must start with b't' or b'b'; it was not sent by a backplane",
            data,
        )
    body = data[1:]
    frame: str | bytes
    if data[0] == _TEXT:
        try:
            frame = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFrameError(f"a text payload is not utf-8: {exc}", data) from None
    else:
        frame = body
    try:
        return codec.decode(frame)
    except Exception as exc:  # a user codec may raise anything: it still met bad input
        raise as_decode_error(exc, data) from exc


@final
@attrs.frozen
class RequestHeader:
    """Routing of one remote tell or ask: ``reply_to`` is ``None`` for a tell.

    ``timeout`` is what remains of the asker's deadline, in seconds, when it was sent.
    """

    id: str
    name: str
    reply_to: str | None
    timeout: float | None


@final
@attrs.frozen
class ReplyHeader:
    """The answer to the request ``id``: a payload when ``error`` is ``None``.

    Otherwise ``error`` is the exception's class name, ``detail`` its text, and
    ``stopped`` says the named actor is gone (no process answers for it here).
    """

    id: str
    error: str | None = None
    detail: str = ""
    stopped: bool = False


def encode_request(header: RequestHeader, payload: bytes) -> bytes:
    """A request envelope."""
    return b"Q" + _header_bytes(attrs.asdict(header)) + b"\n" + payload


def encode_reply(header: ReplyHeader, payload: bytes = b"") -> bytes:
    """A reply envelope (an error reply carries no payload)."""
    return b"R" + _header_bytes(attrs.asdict(header)) + b"\n" + payload


def decode_envelope(data: bytes, max_size: int) -> tuple[RequestHeader | ReplyHeader, bytes]:
    """The header and payload of an envelope; :exc:`DecodeError` for anything malformed."""
    if len(data) > max_size:
        raise OversizedFrameError(
            f"a backplane envelope of {len(data)} bytes exceeds max_message_size ({max_size})",
            data,
        )
    kind = data[:1]
    line_end = data.find(b"\n")
    if kind not in (b"Q", b"R") or line_end < 0:
        raise MalformedFrameError("not a backplane request or reply envelope", data)
    try:
        fields = json.loads(data[1:line_end])
        if not isinstance(fields, dict):
            raise TypeError("the header is not a json object")
        header: RequestHeader | ReplyHeader
        if kind == b"Q":
            header = RequestHeader(
                id=_str(fields["id"]),
                name=_str(fields["name"]),
                reply_to=None if fields["reply_to"] is None else _str(fields["reply_to"]),
                timeout=None if fields["timeout"] is None else float(fields["timeout"]),
            )
        else:
            error = fields.get("error")
            header = ReplyHeader(
                id=_str(fields["id"]),
                error=None if error is None else _str(error),
                detail=_str(fields.get("detail", "")),
                stopped=bool(fields.get("stopped", False)),
            )
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedFrameError(f"bad envelope header: {exc!r}", data) from None
    return header, data[line_end + 1 :]


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _header_bytes(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")
