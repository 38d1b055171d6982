"""Inbound limits a peer must respect, checked frame by frame (sans-IO: no trio, no network).

trio-websocket checks one thing, the size of a whole message, and only once its bytes
have arrived. :class:`InboundGuard` adds what a hostile peer exploits otherwise:

- a frame header that declares more bytes than the message limit is refused when the
  header arrives, not after the peer has streamed a megabyte;
- the frames of one message are counted: a flood of tiny or empty continuation frames
  grows the library's list of parts without bound (empty ones add nothing to the size);
- an optional token bucket limits messages (and pings, and pongs) per second.

The guard only counts and answers with a :class:`Violation`; the frame guard
(``_guard.py``) turns one into a Close frame with its code. :class:`BackendLimits` are all
the limits one connection hands to the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, final

import attrs

from .._close_codes import CloseCode

if TYPE_CHECKING:
    from .._compression import Compression

#: Default budget of frames in one message.
DEFAULT_MAX_FRAGMENTS = 1024


@final
@attrs.frozen(kw_only=True)
class InboundLimits:
    """What a peer may send on one connection, besides the size of a message.

    - ``max_fragments``: frames in one message (a message split into more
      frames is closed with 1009, message too big, at the first frame past
      the budget).
    - ``max_messages_per_second`` and ``burst``: a token bucket refilled at
      ``max_messages_per_second`` and holding at most ``burst`` tokens; each
      inbound message, Ping and Pong costs one token, and a peer that sends
      when the bucket is empty is closed with 1008 (policy violation).
      ``None`` (the default) sets no rate limit.
    """

    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    max_messages_per_second: float | None = None
    burst: int = 100

    def __attrs_post_init__(self) -> None:
        if self.max_fragments < 1:
            raise ValueError(f"max_fragments must be at least 1, not {self.max_fragments!r}")
        rate = self.max_messages_per_second
        if rate is not None and not rate > 0:
            raise ValueError(f"max_messages_per_second must be positive or None, not {rate!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")


#: No rate limit; at most :data:`DEFAULT_MAX_FRAGMENTS` frames per message.
DEFAULT_INBOUND_LIMITS = InboundLimits()

#: Default limit on one inbound message, in bytes (UTF-8 bytes for text, not characters).
DEFAULT_MAX_MESSAGE_SIZE = 2**20


@final
@attrs.frozen
class BackendLimits:
    """Per-connection limits handed to the library."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: ``None`` lets trio choose (large); the library's 4 KiB default halves throughput.
    receive_buffer_size: int | None = None
    inbound: InboundLimits = DEFAULT_INBOUND_LIMITS
    #: permessage-deflate to offer (client) or accept (server); ``None``: never negotiated.
    compression: Compression | None = None


DEFAULT_LIMITS = BackendLimits()


@final
@attrs.frozen
class Violation:
    """A limit the peer broke: the close code to send and its reason."""

    code: int
    reason: str


@final
class InboundGuard:
    """Counts one connection's inbound frames against its limits.

    ``clock`` returns seconds (``trio.current_time`` in the adapter); it is
    only read when a rate limit is set.
    """

    __slots__ = (
        "_clock",
        "_fragments",
        "_last_refill",
        "_limits",
        "_max_message_size",
        "_message_bytes",
        "_tokens",
    )

    def __init__(
        self, limits: InboundLimits, max_message_size: int, clock: Callable[[], float]
    ) -> None:
        self._limits = limits
        self._max_message_size = max_message_size
        self._clock = clock
        self._fragments = 0
        self._message_bytes = 0
        self._tokens = float(limits.burst)
        self._last_refill: float | None = None

    def on_data(self, size: int, frame_finished: bool, message_finished: bool) -> Violation | None:
        """A piece of a Text or Binary message arrived (``size`` payload bytes)."""
        self._message_bytes += size
        if frame_finished:
            self._fragments += 1
        if self._message_bytes > self._max_message_size:
            return Violation(
                CloseCode.MESSAGE_TOO_BIG,
                f"message exceeds the limit of {self._max_message_size} bytes",
            )
        if self._fragments > self._limits.max_fragments:
            return Violation(
                CloseCode.MESSAGE_TOO_BIG,
                f"message split into more than {self._limits.max_fragments} frames",
            )
        if message_finished:
            self._fragments = 0
            self._message_bytes = 0
            return self._take_token()
        return None

    def on_control(self) -> Violation | None:
        """A Ping or Pong arrived."""
        return self._take_token()

    def on_frame_header(self, remaining: int) -> Violation | None:
        """A data frame's header promises ``remaining`` more payload bytes."""
        if self._message_bytes + remaining > self._max_message_size:
            return Violation(
                CloseCode.MESSAGE_TOO_BIG,
                f"frame header announces more than the limit of {self._max_message_size} bytes",
            )
        return None

    def _take_token(self) -> Violation | None:
        rate = self._limits.max_messages_per_second
        if rate is None:
            return None
        now = self._clock()
        if self._last_refill is not None:
            elapsed = max(now - self._last_refill, 0.0)
            self._tokens = min(float(self._limits.burst), self._tokens + elapsed * rate)
        self._last_refill = now
        if self._tokens < 1.0:
            return Violation(CloseCode.POLICY_VIOLATION, f"more than {rate:g} messages per second")
        self._tokens -= 1.0
        return None
