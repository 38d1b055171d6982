"""``serve_websocket``: our own accept loop; each connection an actor under one host actor.

The host actor owns the listeners and runs the accept loop. For every accepted
stream a task of the host reads the opening request (TLS first), checks the capacity
and makes the handshake decision (Origin, subprotocol, the auth hook): a refused
client is answered with its HTTP status and never costs a connection actor. An
accepted request goes to :meth:`ConnectionHost._spawn_connection`, the single spawn
point (where a dynamic supervisor will plug in); from there on the stream belongs to
the connection actor, which sends the 101 in its own nursery. A failure of one
connection (handler exception, protocol error, reset mid-frame, trio-websocket #184)
ends that connection actor only.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import ssl
from collections.abc import Sequence
from typing import final

import attrs
import trio

import actors

from .._adapter._limits import DEFAULT_INBOUND_LIMITS, BackendLimits, InboundLimits
from .._adapter._request import PlainRequest, ServerRequest, read_request, reject_stream
from .._census import SourceKind, report_ended, report_started
from .._close_codes import CloseCode
from .._connection._actor import Application, ConnectionActor, Spawner, spawn_actor
from .._connection._inbound import ByteBudget
from .._connection._messages import DEFAULT_OPTIONS, Close, ConnectionMessage, ConnectionOptions
from .._exceptions import HandshakeError
from ._handshake import (
    DEFAULT_POLICY,
    Accept,
    HandshakePolicy,
    Reject,
    accepted_opener,
    answer_plain,
    answer_request,
    backend_limits,
)
from ._reuse_port import open_reuse_port_listeners

#: The inbound bytes a server's connections may hold together by default.
DEFAULT_SERVER_INBOUND_BYTES = 128 * 1024 * 1024

logger = logging.getLogger("transport")

_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

Listener = trio.SocketListener | trio.SSLListener[trio.SocketStream]

# Past the connection cap, at most this many clients at a time get a proper 503 (their
# request is read first, within _REFUSAL_TIMEOUT); beyond that they are disconnected at
# once, so a connection flood costs neither tasks nor descriptors for long.
_MAX_REFUSALS = 64
_REFUSAL_TIMEOUT = 2.0


@final
@attrs.frozen
class ServerStatistics:
    """Counters of a server: connections accepted (handshake done), refused at the cap,
    rejected or failed during the handshake, open now, and in their handshake now
    (``handshaking`` counts against the cap too)."""

    accepted: int
    refused: int
    handshake_failures: int
    active: int
    handshaking: int = 0


@final
@attrs.frozen
class Shutdown(actors.Request[int]):
    """Ask the host to stop accepting and close every connection with ``code``.

    Replies with the number of connections still open after ``timeout``.
    """

    code: int = CloseCode.GOING_AWAY
    reason: str = "server shutting down"
    timeout: float = 10.0


@final
@attrs.frozen
class GetServerStatistics(actors.Request[ServerStatistics]):
    """Ask the host for its :class:`ServerStatistics`."""


HostMessage = Shutdown | GetServerStatistics


@final
@attrs.define(eq=False)
class ConnectionHost(actors.Actor[HostMessage]):
    """The parent of a server's connection actors; owns the listeners and the accept loop."""

    _listeners: list[Listener]
    _application: Application
    _policy: HandshakePolicy
    _options: ConnectionOptions
    _max_connections: int
    _inbound: InboundLimits = DEFAULT_INBOUND_LIMITS
    # The inbound bytes all its connections may hold together.
    _budget: ByteBudget | None = None
    _accept_scope: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope)
    # What the library applies to each connection: the same for all of them.
    _limits: BackendLimits = attrs.field(init=False)
    _connections: dict[str, actors.ActorRef[ConnectionMessage]] = attrs.field(
        init=False, factory=dict
    )
    _accepted: int = attrs.field(init=False, default=0)
    _refused: int = attrs.field(init=False, default=0)
    _failures: int = attrs.field(init=False, default=0)
    _serial: int = attrs.field(init=False, default=0)
    _handshaking: int = attrs.field(init=False, default=0)
    _refusing: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._limits = backend_limits(self._options, self._inbound)

    async def on_start(self) -> None:
        """Start the accept loop."""
        report_started(self.ctx.system, self, SourceKind.SERVER, self.ctx.path, self._statistics)
        self.ctx.start_soon(self._accept_loop, name="accept-loop")
        await trio.lowlevel.checkpoint()

    async def on_stop(self, reason: actors.StopReason) -> None:  # noqa: ASYNC910
        """Close the listeners (connections were closed as children)."""
        report_ended(self.ctx.system, self, self._statistics())
        for listener in self._listeners:
            await trio.aclose_forcefully(listener)

    async def _accept_loop(self) -> None:
        # Our own loop rather than trio.serve_listeners: that one closes each stream when
        # its handler returns, and here the handler hands the stream to a child actor.
        with self._accept_scope:
            async with trio.open_nursery() as nursery:
                for listener in self._listeners:
                    nursery.start_soon(self._accept_from, listener, nursery)

    async def _accept_from(self, listener: Listener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    logger.error("accept failed (%s); retrying in 0.1s", exc)
                    await trio.sleep(0.1)
                else:
                    nursery.start_soon(self._on_stream, stream)

    async def _on_stream(self, stream: trio.abc.Stream) -> None:
        if self.ctx.child_count + self._handshaking >= self._max_connections:
            await self._refuse(stream)
            return
        timeout = self._options.handshake_timeout
        self._handshaking += 1
        try:
            try:
                request = await read_request(
                    stream, within=timeout, plain=self._policy.http is not None
                )
                if isinstance(request, PlainRequest):
                    await answer_plain(request, self._policy, within=timeout)
                    return
                decision = await answer_request(request, stream, self._policy, within=timeout)
            except HandshakeError as exc:
                await trio.aclose_forcefully(stream)
                self._failures += 1
                logger.debug("websocket handshake failed: %s", exc)
                return
            if isinstance(decision, Reject):
                self._failures += 1
                return
            await self._spawn_connection(request, stream, decision)
        except Exception as exc:
            # The child closes the stream when its handshake fails; this covers a spawn
            # that failed before the child ever ran.
            await trio.aclose_forcefully(stream)
            self._failures += 1
            if isinstance(exc, HandshakeError):
                logger.debug("websocket handshake failed: %s", exc)
            else:
                logger.error("a websocket connection could not be started", exc_info=exc)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        finally:
            self._handshaking -= 1

    async def _refuse(self, stream: trio.abc.Stream) -> None:
        self._refused += 1
        if self._refusing >= _MAX_REFUSALS:
            await trio.aclose_forcefully(stream)
            return
        self._refusing += 1
        try:
            within = min(self._options.handshake_timeout, _REFUSAL_TIMEOUT)
            await reject_stream(stream, 503, b"too many connections, try again later", within)
        finally:
            self._refusing -= 1

    async def _spawn_connection(
        self, request: ServerRequest, stream: trio.abc.Stream, accept: Accept
    ) -> None:
        """The one place connection actors are spawned (the future supervisor's job)."""
        self._serial += 1
        name = f"connection-{self._serial}"
        opener = accepted_opener(request, stream, accept, self._options, self._limits)
        actor = ConnectionActor(opener, self._options, None, self._application, self._budget)
        ref = await spawn_actor(self.ctx, actor, self._options, name)
        self._accepted += 1
        self._connections[name] = ref
        if len(self._connections) > 2 * self.ctx.child_count + 16:
            alive = {ref.name for ref in self.ctx.children}
            self._connections = {k: v for k, v in self._connections.items() if k in alive}

    @actors.handler
    async def shutdown(self, message: Shutdown) -> int:  # noqa: ASYNC910
        self._accept_scope.cancel()
        for listener in self._listeners:
            await trio.aclose_forcefully(listener)
        open_refs = [ref for ref in self._connections.values() if ref.is_alive]
        for ref in open_refs:
            try:
                ref.tell_nowait(Close(message.code, message.reason))
            except trio.WouldBlock:
                ref.request_stop()
            except actors.ActorStoppedError:
                pass
        with trio.move_on_after(message.timeout):  # noqa: ASYNC912 - waits checkpoint
            for ref in open_refs:
                await ref.wait_stopped()
        return sum(ref.is_alive for ref in open_refs)  # noqa: ASYNC910

    @actors.handler
    def statistics(self, message: GetServerStatistics) -> ServerStatistics:
        return self._statistics()

    def _statistics(self) -> ServerStatistics:
        return ServerStatistics(
            accepted=self._accepted,
            refused=self._refused,
            handshake_failures=self._failures,
            active=self.ctx.child_count,
            handshaking=self._handshaking,
        )


@final
class WebSocketServer:
    """A running server: its listening ports, its host actor's ref, shutdown."""

    __slots__ = ("_shutdown_timeout", "ports", "ref")

    def __init__(
        self, ref: actors.ActorRef[HostMessage], ports: Sequence[int], shutdown_timeout: float
    ) -> None:
        #: The host actor (parent of every connection actor).
        self.ref = ref
        #: The bound TCP ports, one per listener.
        self.ports = tuple(ports)
        self._shutdown_timeout = shutdown_timeout

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.ref.path} ports={list(self.ports)}>"

    @property
    def port(self) -> int:
        """The first bound port (convenient when listening on port 0)."""
        return self.ports[0]

    async def statistics(self) -> ServerStatistics:
        """The host's counters."""
        return await self.ref.ask(GetServerStatistics())

    async def aclose(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Stop accepting, close every connection with ``code``, wait for them (bounded)."""
        if self.ref.is_alive:
            shutdown = Shutdown(code=code, timeout=self._shutdown_timeout)
            with contextlib.suppress(actors.ActorStoppedError, actors.AskTimeoutError):
                await self.ref.ask(shutdown, timeout=self._shutdown_timeout + 1)
        await self.ref.stop()


async def serve_websocket(
    parent: Spawner,
    handler: Application,
    host: str | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    policy: HandshakePolicy = DEFAULT_POLICY,
    options: ConnectionOptions = DEFAULT_OPTIONS,
    max_connections: int = 1000,
    limits: InboundLimits = DEFAULT_INBOUND_LIMITS,
    max_inbound_bytes: int = DEFAULT_SERVER_INBOUND_BYTES,
    shutdown_timeout: float = 10.0,
    name: str | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections until cancelled; use with ``nursery.start``.

    Each connection is an actor (a child of one host actor spawned under
    ``parent``) that runs ``await handler(connection)``; when the handler
    returns the connection closes with 1000, when it raises with 1011, and
    the server keeps serving either way. ``task_status.started`` reports a
    :class:`WebSocketServer` with the bound ports once listening.

    The request is read and decided on (``policy``) before any connection actor
    exists; a refused client gets its HTTP status (401, 403, ...) and costs no
    actor. Past ``max_connections`` (open connections plus handshakes in
    progress) new clients get HTTP 503. ``limits`` bounds what each client may
    send besides ``options.max_message_size``: frames per message and an
    optional message rate (:class:`InboundLimits`). ``max_inbound_bytes`` is
    the byte budget all connections' inbound queues share (besides each one's
    ``options.inbound_max_bytes``): a message that would take the server past
    it meets its connection's overflow policy. On cancellation (or
    ``server.aclose()``) the server stops accepting, closes its connections
    with 1001 and waits for them up to ``shutdown_timeout``.

    ``reuse_port=True`` sets ``SO_REUSEPORT`` on the listening sockets, so that several
    processes of the same user listen on one port and the kernel spreads the connections
    over them (:mod:`transport.workers` runs such processes). A port already held by a
    socket without ``SO_REUSEPORT``, or by another user, is still refused (``EADDRINUSE``).
    """
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, not {max_connections!r}")
    listeners: list[Listener]
    if reuse_port:
        plain = await open_reuse_port_listeners(host, port)
        listeners = list(plain)
        if ssl_context is not None:
            listeners = [
                trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in plain
            ]
    elif ssl_context is None:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    else:
        listeners = list(
            await trio.open_ssl_over_tcp_listeners(
                port, ssl_context, host=host, https_compatible=True
            )
        )
    budget = ByteBudget(max_inbound_bytes)
    actor = ConnectionHost(listeners, handler, policy, options, max_connections, limits, budget)
    try:
        ref: actors.ActorRef[HostMessage] = await parent.spawn(actor, name=name)
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    server = WebSocketServer(ref, [_port_of(listener) for listener in listeners], shutdown_timeout)
    task_status.started(server)
    try:
        await ref.wait_stopped()
    finally:
        with trio.move_on_after(shutdown_timeout + 2, shield=True):
            await server.aclose()


def _port_of(listener: Listener) -> int:
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    assert isinstance(inner, trio.SocketListener)
    port: int = inner.socket.getsockname()[1]
    return port
