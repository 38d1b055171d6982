"""Values of the reconnecting client: its messages, notices, stop reason, statistics, handle."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import attrs
import trio

import actors

from .._close_codes import CloseCode, ConnectionClosed
from .._connection._messages import (
    Close,
    ConnectionInfo,
    Received,
    SendBytes,
    SendMessage,
    SendText,
)
from .._exceptions import TransportError
from ._policy import ClientState, SendBuffer

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from .._connection._handle import WebSocketConnection
    from ._acked._wire import Window

#: What a reconnecting client buffers and hands to its connection.
Outgoing = SendText | SendBytes | SendMessage

#: The schedule used when none is given: 0.5 s doubling to 30 s, 20% jitter.
DEFAULT_BACKOFF = actors.Backoff(minimum=0.5, maximum=30.0, factor=2.0, jitter=0.2)


def _check_data(instance: object, attribute: attrs.Attribute[str | bytes], value: object) -> None:
    if not isinstance(value, str | bytes):
        raise TypeError(f"a websocket message is str or bytes, not {type(value).__qualname__}")


@final
@attrs.frozen
class Send(actors.Request[None]):
    """Ask a reconnecting client (or a pool) to send ``data``: text for ``str``, binary for ``bytes``.

    The reply comes once the message is handed to the live connection or buffered;
    under ``Overflow.FAIL`` a full buffer is raised to the asker as
    :exc:`BufferFullError`. ``key`` picks the connection of a pool routed by
    ``KEY_HASH``; a single client ignores it.
    """

    data: str | bytes = attrs.field(validator=_check_data)
    key: Hashable | None = None


@final
@attrs.frozen
class GetReconnectStatistics(actors.Request["ReconnectStatistics"]):
    """Ask a reconnecting client for its :class:`ReconnectStatistics`."""


#: Every message a reconnecting client accepts.
ReconnectingMessage = SendText | SendBytes | SendMessage | Send | Close | GetReconnectStatistics


@final
@attrs.frozen
class Connected:
    """Told to the subscriber each time the client ``client`` (its path) is connected.

    It comes after the ``on_connected`` hook has run and before any message received
    on that connection. ``connects`` counts the connections so far (1 for the first).
    """

    client: str
    connects: int
    info: ConnectionInfo


@final
@attrs.frozen
class Disconnected:
    """Told to the subscriber when a connection it was told about has ended.

    ``closed`` says how; ``reconnecting`` is false when the client will not try again
    (it gave up, or it is closing).
    """

    client: str
    closed: ConnectionClosed
    reconnecting: bool


class UnconfirmedError(TransportError):
    """An acknowledged client stopped before the server confirmed this message.

    It was sent at least once; the server's application may or may not have it.
    """


@final
@attrs.frozen
class GaveUp(actors.StopReason):
    """A reconnecting client stopped trying: its stop reason and its subscriber's last message.

    ``reason`` says why in words; ``attempts`` counts the connection attempts made;
    ``error`` is the failure behind it (a :exc:`TLSError`, a :exc:`HandshakeRejected`,
    the hook's exception...), if any.
    """

    reason: str
    attempts: int
    error: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_failure(self) -> bool:
        """Always true."""
        return True


#: Every message a reconnecting client tells its subscriber: per connection one
#: :class:`Connected`, the messages received, one :class:`Disconnected`; a final
#: :class:`GaveUp` if it gives up.
ClientEvent = Connected | Received | Disconnected | GaveUp


@final
@attrs.frozen
class ReconnectStatistics:
    """A snapshot of a reconnecting client.

    - ``state``; ``attempts`` (all connection attempts), ``failed_attempts`` (in a row
      since the last success), ``connects`` (successful connections),
      ``next_attempt_at`` (``trio.current_time()`` of the next attempt while backing
      off), ``last_error`` (the last failed attempt's error or a failed connection's).
    - ``sent``: messages written by all of its connections; ``received``: messages
      received by all of them.
    - ``buffered`` of ``buffer_capacity``: waiting for a connection now.
    - ``dropped``: messages the buffer policy dropped or refused (each reported as a
      dead letter or an error to its sender); ``undelivered``: messages still buffered
      when the client stopped (dead letters).
    - ``outbound_depth``: messages waiting to be written: buffered plus queued in the
      live connection.
    - With acknowledged delivery: ``unconfirmed`` (sent, not yet acknowledged),
      ``confirmed`` (acknowledged in all), ``resent`` (sent again after a reconnect).
      ``undelivered`` then also counts the messages still unconfirmed at the stop.
    """

    state: ClientState
    attempts: int
    failed_attempts: int
    connects: int
    next_attempt_at: float | None
    last_error: BaseException | None
    sent: int
    received: int
    buffered: int
    buffer_capacity: int
    dropped: int
    undelivered: int
    outbound_depth: int
    unconfirmed: int = 0
    confirmed: int = 0
    resent: int = 0


@attrs.define(eq=False)
class Status:
    """State shared by a reconnecting client and its handle (no stream in here)."""

    outbox: SendBuffer[Outgoing]
    state: ClientState = ClientState.CONNECTING
    attempts: int = 0
    failed_attempts: int = 0
    connects: int = 0
    next_attempt_at: float | None = None
    last_error: BaseException | None = None
    sent_before: int = 0
    received: int = 0
    dropped: int = 0
    undelivered: int = 0
    connection: WebSocketConnection | None = None
    #: Acknowledged delivery's unconfirmed messages (``None`` without it).
    window: Window[Outgoing] | None = None
    resent: int = 0
    #: Called after every state change (a pool listens to its members this way).
    listener: Callable[[], None] | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def set_state(self, state: ClientState) -> None:
        self.state = state
        self._changed.set()
        self._changed = trio.Event()
        if self.listener is not None:
            self.listener()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def snapshot(self) -> ReconnectStatistics:
        connection = self.connection
        sent = self.sent_before
        outbound = len(self.outbox)
        if connection is not None:
            stats = connection.statistics()
            sent += stats.messages_sent
            outbound += stats.outbound_depth + connection.ref.statistics().depth
        return ReconnectStatistics(
            state=self.state,
            attempts=self.attempts,
            failed_attempts=self.failed_attempts,
            connects=self.connects,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            sent=sent,
            received=self.received,
            buffered=len(self.outbox),
            buffer_capacity=self.outbox.capacity,
            dropped=self.dropped,
            undelivered=self.undelivered,
            outbound_depth=outbound,
            unconfirmed=0 if self.window is None else len(self.window),
            confirmed=0 if self.window is None else self.window.confirmed,
            resent=self.resent,
        )


def frame_of(data: str | bytes) -> Outgoing:
    """The connection message that sends ``data``."""
    return SendText(data) if isinstance(data, str) else SendBytes(bytes(data))


def as_closed(reason: actors.StopReason) -> ConnectionClosed:
    """A connection actor's stop reason as a :class:`ConnectionClosed` (it nearly always is one)."""
    if isinstance(reason, ConnectionClosed):
        return reason
    error = reason.error if isinstance(reason, actors.Failed) else None
    return ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, type(reason).__name__.lower(), error=error)
