"""Client connections: ``connect_websocket`` and ``open_websocket_client`` for ws:// and wss://."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Never, Protocol

import attrs
import trio

import actors

from .._adapter._library import Backend, client_handshake
from .._adapter._limits import BackendLimits
from .._adapter._request import describe_remote
from .._connection._actor import Opener, Spawner, spawn_connection
from .._connection._handle import WebSocketConnection
from .._connection._messages import (
    DEFAULT_OPTIONS,
    ConnectionInfo,
    ConnectionOptions,
    SubscriberMessage,
    compression_settings,
)
from .._exceptions import HandshakeError, HandshakeTimeoutError


@attrs.frozen
class _Target:
    secure: bool
    host: str
    port: int
    resource: str


def parse_url(url: str) -> _Target:
    """Split a ``ws://`` or ``wss://`` URL into what the connection needs."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"websocket urls start with ws:// or wss://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"websocket url {url!r} has no host")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(secure, parts.hostname, parts.port or (443 if secure else 80), resource)


def insecure_ssl_context() -> ssl.SSLContext:
    """An SSL context that skips certificate and hostname checks: for tests, never production."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_opener(
    connect: Callable[[], Awaitable[trio.abc.Stream]],
    *,
    host: str,
    resource: str,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: ConnectionOptions = DEFAULT_OPTIONS,
) -> Opener:
    """An opener that connects with ``connect()`` and runs the client handshake.

    TCP connect, TLS and the HTTP upgrade share one ``handshake_timeout``.
    """
    limits = BackendLimits(
        options.max_message_size,
        options.receive_buffer_size,
        compression=compression_settings(options),
    )

    async def open_connection(nursery: trio.Nursery) -> tuple[Backend, ConnectionInfo]:
        deadline = trio.current_time() + options.handshake_timeout
        with trio.move_on_at(deadline):
            try:
                stream = await connect()
            except OSError as exc:
                raise HandshakeError(f"could not connect to {host}: {exc}") from exc
        if trio.current_time() >= deadline:
            raise HandshakeTimeoutError(
                f"timed out after {options.handshake_timeout}s connecting to {host}"
            )
        try:
            backend = await client_handshake(
                nursery,
                stream,
                host=host,
                resource=resource,
                subprotocols=subprotocols,
                extra_headers=headers,
                limits=limits,
                within=max(deadline - trio.current_time(), 0.001),
                hold_violations=True,
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
        info = ConnectionInfo(
            is_client=True,
            path=resource,
            subprotocol=backend.subprotocol,
            headers=backend.headers,
            remote=describe_remote(stream),
            compression=backend.compression,
        )
        return backend, info

    return open_connection


async def connect_websocket(
    parent: Spawner,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: ConnectionOptions = DEFAULT_OPTIONS,
    subscriber: actors.ActorRef[SubscriberMessage] | None = None,
    name: str | None = None,
) -> WebSocketConnection:
    """Open a client connection as an actor spawned under ``parent``; return its handle.

    ``parent`` is the actor system or an actor's ``ctx``. For ``wss://`` the
    certificate and host name are verified with the system's trust store
    unless ``ssl_context`` says otherwise (pass :func:`insecure_ssl_context`
    to skip verification, explicitly). Inbound messages go to ``subscriber``
    as :class:`Received` (then one :class:`ConnectionClosed`), or, without a
    subscriber, are read with :meth:`WebSocketConnection.receive`.

    Raises :exc:`TLSError` when the certificate does not verify (not
    transient), :exc:`HandshakeRejected` with the HTTP status,
    :exc:`HandshakeTimeoutError`, or :exc:`HandshakeError`. The connection
    lives until it closes or its actor is stopped.
    """
    target = parse_url(url)
    if target.secure:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
    elif ssl_context is not None:
        raise ValueError(f"an ssl_context was given for the plain-text url {url!r}; use wss://")

    async def connect() -> trio.abc.Stream:
        tcp = await trio.open_tcp_stream(target.host, target.port)
        if not target.secure:
            return tcp
        return trio.SSLStream(tcp, context, server_hostname=target.host, https_compatible=True)

    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    opener = client_opener(
        connect,
        host=host_header,
        resource=target.resource,
        subprotocols=subprotocols,
        headers=headers,
        options=options,
    )
    return await spawn_connection(parent, opener, options, subscriber=subscriber, name=name)


@asynccontextmanager
async def open_websocket_client(
    parent: Spawner,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    options: ConnectionOptions = DEFAULT_OPTIONS,
    subscriber: actors.ActorRef[SubscriberMessage] | None = None,
    name: str | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """:func:`connect_websocket` for the duration of an ``async with`` block.

    Leaving the block closes the connection (1000, or 1011 if the block
    raised) and waits for its actor to stop, within ``write_timeout +
    close_timeout``.
    """
    connection = await connect_websocket(
        parent,
        url,
        ssl_context=ssl_context,
        subprotocols=subprotocols,
        headers=headers,
        options=options,
        subscriber=subscriber,
        name=name,
    )
    async with closed_on_exit(connection, options):
        yield connection


class Closable(Protocol):
    """A connection handle: its actor's ref, and a close that waits for the actor."""

    @property
    def ref(self) -> actors.ActorRef[Never]: ...

    async def close(self, code: int = 1000, reason: str = "") -> object: ...


@asynccontextmanager
async def closed_on_exit(handle: Closable, options: ConnectionOptions) -> AsyncIterator[None]:
    """Close ``handle`` when the block ends: 1000, or 1011 if the block raised.

    The close waits for the actor within ``write_timeout + close_timeout`` (plus
    a second), shielded; an actor still running after that is asked to stop.
    """
    code = 1011
    try:
        yield
        code = 1000
    finally:
        bound = options.write_timeout + options.close_timeout + 1
        with trio.move_on_after(bound, shield=True):
            await handle.close(code)
        if handle.ref.is_alive:
            handle.ref.request_stop()
