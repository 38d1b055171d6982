"""WebSocket close codes and which code each situation gets (sans-IO: no trio, no network).

RFC 6455 section 7.4 defines the codes; 1012-1014 come from the IANA registry. The
connection actor never invents a code on the spot: it names the :class:`Situation` and
:func:`close_code_for` decides, so the mapping is in one table and tested on its own.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

from actors import StopReason


class CloseCode(enum.IntEnum):
    """The registered WebSocket close codes."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: Never sent on the wire: the peer's Close frame carried no code.
    NO_STATUS_RECEIVED = 1005
    #: Never sent on the wire: the connection ended without a Close frame.
    ABNORMAL_CLOSURE = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    #: Never sent on the wire: the TLS handshake failed.
    TLS_HANDSHAKE = 1015


class Situation(enum.Enum):
    """Why a connection is being closed, from the point of view of this side."""

    #: The application asked for a close, or its handler returned.
    NORMAL = "normal"
    #: The server or the actor system is shutting down.
    SHUTDOWN = "shutdown"
    #: The server is restarting and the peer may come back soon.
    RESTART = "restart"
    #: The application handler raised.
    HANDLER_FAILED = "handler failed"
    #: An inbound message exceeded the size limit.
    MESSAGE_TOO_BIG = "message too big"
    #: The inbound queue overflowed under the ``CLOSE_POLICY_VIOLATION`` policy.
    OVERFLOW_POLICY_VIOLATION = "overflow: policy violation"
    #: The inbound queue overflowed under the ``CLOSE_TRY_AGAIN_LATER`` policy.
    OVERFLOW_TRY_AGAIN_LATER = "overflow: try again later"
    #: An inbound message had an invalid payload (bad UTF-8 in a text message).
    BAD_PAYLOAD = "bad payload"
    #: The peer broke the WebSocket protocol.
    PROTOCOL_ERROR = "protocol error"
    #: No inbound message for the idle timeout.
    IDLE_TIMEOUT = "idle timeout"


_CODES: dict[Situation, CloseCode] = {
    Situation.NORMAL: CloseCode.NORMAL_CLOSURE,
    Situation.SHUTDOWN: CloseCode.GOING_AWAY,
    Situation.RESTART: CloseCode.SERVICE_RESTART,
    Situation.HANDLER_FAILED: CloseCode.INTERNAL_ERROR,
    Situation.MESSAGE_TOO_BIG: CloseCode.MESSAGE_TOO_BIG,
    Situation.OVERFLOW_POLICY_VIOLATION: CloseCode.POLICY_VIOLATION,
    Situation.OVERFLOW_TRY_AGAIN_LATER: CloseCode.TRY_AGAIN_LATER,
    Situation.BAD_PAYLOAD: CloseCode.INVALID_PAYLOAD,
    Situation.PROTOCOL_ERROR: CloseCode.PROTOCOL_ERROR,
    Situation.IDLE_TIMEOUT: CloseCode.GOING_AWAY,
}

#: Codes that must never appear in a Close frame (RFC 6455 section 7.4.1).
_RESERVED = frozenset({1004, 1005, 1006, 1015})

#: Codes after which reconnecting makes sense: the peer went away or was overloaded,
#: the network broke. Everything else (protocol errors, policy, too big) is fatal.
_TRANSIENT = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def close_code_for(situation: Situation) -> CloseCode:
    """The close code this side sends in ``situation``."""
    return _CODES[situation]


def is_sendable(code: int) -> bool:
    """True if ``code`` may be sent in a Close frame (1000-1014 except the reserved ones, 3000-4999)."""
    if 1000 <= code <= 1014:
        return code not in _RESERVED
    return 3000 <= code <= 4999


def is_transient(code: int) -> bool:
    """True if a client may reconnect after a close with ``code``."""
    return code in _TRANSIENT


def check_sendable(code: int) -> None:
    """Raise :exc:`ValueError` if ``code`` cannot be sent in a Close frame."""
    if not is_sendable(code):
        raise ValueError(
            f"close code {code} cannot be sent in a Close frame; use 1000-1003, "
            "1007-1014 or an application code in 3000-4999"
        )


@final
@attrs.frozen
class ConnectionClosed(StopReason):
    """A WebSocket connection ended: the connection actor's stop reason.

    ``code`` is the close code that ended the connection (1006 if no Close
    frame was exchanged); ``reason`` its text; ``by_peer`` is true when the
    peer started the close; ``error`` is the exception behind a failure
    (a handler that raised, a broken stream), if any. Watchers and
    subscribers receive this same value.
    """

    code: int
    reason: str = ""
    by_peer: bool = False
    error: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_failure(self) -> bool:
        """True unless the code is 1000 (normal) or 1001 (going away)."""
        return self.code not in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY)

    @property
    def is_transient(self) -> bool:
        """True if reconnecting after this close makes sense (see :func:`is_transient`)."""
        return is_transient(self.code)
