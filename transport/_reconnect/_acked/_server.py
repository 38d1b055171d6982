"""The server side of acknowledged delivery: :class:`AckedSessions` and :class:`AckedConnection`.

The wire format and the client's window are in ``_wire``; the client side is a
mode of :class:`ReconnectingClient` (``acknowledged=True``).
"""

from __future__ import annotations

import collections
import contextlib
from typing import final

import attrs
import trio

import actors

from ..._close_codes import CloseCode
from ..._codec import Codec, RawCodec
from ..._connection._handle import WebSocketConnection
from ..._connection._messages import Close, ConnectionInfo
from .._inbox_reader import ReceiveIterable
from ._wire import AckProtocolError, ack, parse_data, parse_hello, push

#: A server acknowledges at least this often while messages keep arriving.
ACK_EVERY = 32


@attrs.define(eq=False)
class _Session:
    #: The last number handed to the application; ``None`` until the first one (a
    #: session the server has forgotten starts wherever its client resumes).
    last: int | None = None


@final
@attrs.frozen
class SessionStatistics:
    """Counters of an :class:`AckedSessions` table.

    ``sessions``: remembered now (at most ``capacity``); ``forgotten``: pushed out by
    newer ones (a client of a forgotten session that resends a message the
    application already had gets it delivered twice); ``duplicates``: resent
    messages recognised and dropped.
    """

    sessions: int
    capacity: int
    forgotten: int
    duplicates: int


@final
class AckedSessions:
    """The server side of acknowledged delivery: one per server, shared by its handlers.

    A handler calls :meth:`accept` on a new connection (made with the default
    :class:`RawCodec`: the envelopes are binary) and reads and writes through the
    :class:`AckedConnection` it returns. The table remembers, for the ``capacity``
    most recently connected sessions, the last message number handed to the
    application, so a message the client sends again after a reconnect is dropped
    rather than delivered twice. It lives in memory: after a server restart (or once a
    session is pushed out) a resent message can be delivered twice, never lost.

    ``codec`` encodes and decodes the payloads for :meth:`AckedConnection.send_message`
    and :meth:`AckedConnection.receive_message`; ``hello_timeout`` bounds the wait for
    the client's hello.
    """

    def __init__(
        self, *, capacity: int = 10_000, codec: Codec | None = None, hello_timeout: float = 10.0
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        if hello_timeout <= 0:
            raise ValueError(f"hello_timeout must be positive, not {hello_timeout!r}")
        self.capacity = capacity
        self.codec: Codec = codec if codec is not None else RawCodec()
        self.hello_timeout = hello_timeout
        self._sessions: collections.OrderedDict[bytes, _Session] = collections.OrderedDict()
        self._forgotten = 0
        self._duplicates = 0

    def __repr__(self) -> str:
        return f"<AckedSessions {len(self._sessions)}/{self.capacity}>"

    def statistics(self) -> SessionStatistics:
        """A snapshot of the table's counters."""
        return SessionStatistics(
            len(self._sessions), self.capacity, self._forgotten, self._duplicates
        )

    async def accept(self, connection: WebSocketConnection) -> AckedConnection:
        """Read the client's hello, answer it, and return the session's connection.

        A connection whose first message is not a hello (or that sends none within
        ``hello_timeout``) is closed with 1002 and :exc:`AckProtocolError` is raised;
        :exc:`trio.EndOfChannel` if it ends first.
        """
        if not isinstance(connection.codec, RawCodec):
            raise TypeError(
                "acknowledged delivery needs a connection with the default RawCodec; "
                "give the codec to AckedSessions(codec=...) instead"
            )
        frame: str | bytes | None = None
        with trio.move_on_after(self.hello_timeout):
            frame = await connection.receive()
        hello: bytes | AckProtocolError
        if frame is None:
            hello = AckProtocolError(f"no session hello within {self.hello_timeout} s")
        else:
            try:
                hello = parse_hello(frame)
            except AckProtocolError as exc:
                hello = exc
        if isinstance(hello, AckProtocolError):
            await _refuse(connection, hello)
            raise hello
        session_id = hello
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session()
            if len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
                self._forgotten += 1
        else:
            self._sessions.move_to_end(session_id)
        acked = AckedConnection(self, connection, session_id, session)
        await acked._acknowledge()
        return acked

    def _duplicate(self) -> None:
        self._duplicates += 1


async def _refuse(connection: WebSocketConnection, error: AckProtocolError) -> None:  # noqa: ASYNC910 - tell checkpoints unless the actor has stopped
    # Not close(): a handler runs inside the connection and would wait for its own end.
    with contextlib.suppress(actors.ActorStoppedError):
        await connection.ref.tell(Close(CloseCode.PROTOCOL_ERROR, str(error)[:120]))


@final
class AckedConnection(ReceiveIterable):
    """A connection of an acknowledged session, as its server handler sees it.

    :meth:`receive` (and ``async for``) returns each message of the session once, in
    the order the client sent it, whichever connection it came over; a message is
    acknowledged once handed over here, in batches: before waiting for the next one,
    and at least every ``ACK_EVERY`` messages. :meth:`send` goes to the client
    (not numbered: this direction is at most once). It holds no stream: ``connection``
    is the plain :class:`WebSocketConnection` handle.
    """

    __slots__ = ("_owed", "_session", "_sessions", "connection", "session_id")

    def __init__(
        self,
        sessions: AckedSessions,
        connection: WebSocketConnection,
        session_id: bytes,
        session: _Session,
    ) -> None:
        self._sessions = sessions
        #: The underlying connection handle.
        self.connection = connection
        #: The client's random session id (the same on each of its connections).
        self.session_id = session_id
        self._session = session
        self._owed = 0

    def __repr__(self) -> str:
        return f"<AckedConnection {self.connection.ref.path} session={self.session_id.hex()[:8]}>"

    @property
    def info(self) -> ConnectionInfo:
        """Path, subprotocol, headers and peer address of the connection."""
        return self.connection.info

    async def receive(self) -> str | bytes:
        """The session's next message; :exc:`trio.EndOfChannel` once the connection ended.

        A message that breaks the protocol (not numbered, a gap in the numbers)
        closes the connection with 1002 and raises :exc:`AckProtocolError`.
        """
        connection = self.connection
        session = self._session
        while True:
            frame = None
            if self._owed:  # acknowledge before waiting, not between queued messages
                try:
                    frame = connection.receive_nowait()
                except trio.WouldBlock:
                    await self._acknowledge()
            if frame is None:
                frame = await connection.receive()
            else:
                await trio.lowlevel.checkpoint()
            parsed: tuple[int, str | bytes] | AckProtocolError
            try:
                parsed = parse_data(frame)
            except AckProtocolError as exc:
                parsed = exc
            last = session.last
            if (
                not isinstance(parsed, AckProtocolError)
                and last is not None
                and parsed[0] > last + 1
            ):
                parsed = AckProtocolError(f"message {parsed[0]} came after {last}: a gap")
            if isinstance(parsed, AckProtocolError):
                await _refuse(connection, parsed)
                raise parsed
            seq, message = parsed
            if last is not None and seq <= last:
                self._sessions._duplicate()
                self._owed += 1
                continue
            session.last = seq
            self._owed += 1
            if self._owed >= ACK_EVERY:
                await self._acknowledge()
            return message

    async def receive_message(self) -> object:
        """The next message decoded by the sessions' codec.

        Raises :exc:`DecodeError` for a message the codec cannot decode; the message
        counts as delivered and the connection stays open (catch it to skip one).
        """
        return self._sessions.codec.decode(await self.receive())

    async def send(self, message: str | bytes) -> None:
        """Send ``message`` to the client (like :meth:`WebSocketConnection.send`)."""
        await self.connection.send(push(message))

    async def send_message(self, message: object) -> None:
        """Encode ``message`` with the sessions' codec and send it."""
        await self.send(self._sessions.codec.encode(message))

    async def close(self, code: int = 1000, reason: str = "") -> actors.StopReason:
        """Acknowledge what was received, then close (see :meth:`WebSocketConnection.close`)."""
        if self._owed:
            await self._acknowledge()
        return await self.connection.close(code, reason)

    async def _acknowledge(self) -> None:
        self._owed = 0
        # Not sent if the connection is closing: the next hello is answered afresh.
        await self.connection._send_kept(ack(self._session.last or 0))
