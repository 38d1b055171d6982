"""Client connections: ``connect_websocket`` and ``open_websocket_client`` for ws:// and wss://."""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Never, Protocol

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
from .._exceptions import (
    HandshakeError,
    HandshakeRejected,
    HandshakeTimeoutError,
    ProxyError,
)
from .._redact import redact_url
from ._proxy import choose_proxy, open_tunnel
from ._url import RedirectRefused, Target, follow_redirect, parse_url, redirect_location

logger = logging.getLogger("transport")


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
        stream = await _connect_by(connect, host, deadline, options)
        backend = await _handshake(
            nursery, stream, host, resource, subprotocols, headers, limits, deadline
        )
        return backend, _info(backend, stream, resource, "")

    return open_connection


def url_opener(
    target: Target,
    *,
    ssl_context: ssl.SSLContext | None,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    options: ConnectionOptions,
) -> Opener:
    """An opener for a URL: through the proxy if any, following redirects.

    The proxy tunnel, TLS, the HTTP upgrade and every redirect share one
    ``handshake_timeout``. The URL's credentials become an ``Authorization``
    header unless ``headers`` has one.
    """
    limits = BackendLimits(
        options.max_message_size,
        options.receive_buffer_size,
        compression=compression_settings(options),
    )
    own_authorization = any(name.lower() == "authorization" for name, _ in headers)

    async def open_connection(nursery: trio.Nursery) -> tuple[Backend, ConnectionInfo]:
        deadline = trio.current_time() + options.handshake_timeout
        current = target
        last = HandshakeRejected(0)  # the last redirect answer, once there was one
        for _ in range(options.max_redirects + 1):
            stream = await _connect_by(
                functools.partial(_open_stream, current, ssl_context, options),
                current.host_header,
                deadline,
                options,
            )
            sent = list(headers)
            authorization = current.authorization()
            if authorization is not None and not own_authorization:
                sent.append(authorization)
            try:
                backend = await _handshake(
                    nursery,
                    stream,
                    current.host_header,
                    current.resource,
                    subprotocols,
                    sent,
                    limits,
                    deadline,
                )
            except HandshakeRejected as exc:
                location = redirect_location(exc.status, exc.headers)
                if location is None:
                    raise
                try:
                    following = follow_redirect(current, location)
                except RedirectRefused as refused:
                    raise HandshakeRejected(
                        exc.status, exc.headers, exc.body, message=str(refused)
                    ) from None
                logger.debug(
                    "websocket client: %s redirected (HTTP %d) to %s",
                    redact_url(current.url),
                    exc.status,
                    redact_url(following.url),
                )
                current, last = following, exc
                continue
            return backend, _info(backend, stream, current.resource, current.url)
        raise HandshakeRejected(
            last.status,
            last.headers,
            last.body,
            message=f"the websocket handshake with {target.url} was redirected more than "
            f"{options.max_redirects} times (max_redirects); last to {redact_url(current.url)}",
        )

    return open_connection


async def _open_stream(
    target: Target, context: ssl.SSLContext | None, options: ConnectionOptions
) -> trio.abc.Stream:
    """TCP to ``target`` (through its proxy, if any), then TLS for ``wss``.

    TLS runs over the proxy's tunnel with the server's name: the certificate is
    checked against the server, never against the proxy.
    """
    try:
        proxy = choose_proxy(options.proxy, target, os.environ)
    except ValueError as exc:
        raise ProxyError(str(exc), transient=False) from None
    if proxy is None:
        tcp: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port)
    else:
        tcp = await open_tunnel(proxy, target)
    if not target.secure:
        return tcp
    if context is None:
        context = ssl.create_default_context()
    return trio.SSLStream(tcp, context, server_hostname=target.host, https_compatible=True)


async def _connect_by(
    connect: Callable[[], Awaitable[trio.abc.Stream]],
    host: str,
    deadline: float,
    options: ConnectionOptions,
) -> trio.abc.Stream:
    stream: trio.abc.Stream | None = None
    with trio.move_on_at(deadline):
        try:
            stream = await connect()
        except OSError as exc:
            raise HandshakeError(f"could not connect to {host}: {exc}") from exc
    if stream is None:
        raise HandshakeTimeoutError(
            f"timed out after {options.handshake_timeout}s connecting to {host}"
        )
    return stream


async def _handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    limits: BackendLimits,
    deadline: float,
) -> Backend:
    try:
        return await client_handshake(
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


def _info(backend: Backend, stream: trio.abc.Stream, resource: str, url: str) -> ConnectionInfo:
    return ConnectionInfo(
        is_client=True,
        path=resource,
        subprotocol=backend.subprotocol,
        headers=backend.headers,
        remote=describe_remote(stream),
        url=url,
        compression=backend.compression,
    )


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

    Credentials in the URL (``wss://user:password@host/``, percent-encoded)
    are sent as an HTTP Basic ``Authorization`` header and never shown in
    logs, reprs or errors. The connection goes through ``options.proxy`` (or
    the proxy the environment names) and follows up to
    ``options.max_redirects`` redirects (never from ``wss`` to ``ws``);
    :attr:`ConnectionInfo.url` is the URL it ended at.

    Raises :exc:`TLSError` when the certificate does not verify (not
    transient), :exc:`HandshakeRejected` with the HTTP status,
    :exc:`ProxyError` when the proxy refuses or fails,
    :exc:`HandshakeTimeoutError`, or :exc:`HandshakeError`. The connection
    lives until it closes or its actor is stopped.
    """
    target = parse_url(url)
    if ssl_context is not None and not target.secure:
        raise ValueError(
            f"an ssl_context was given for the plain-text url {redact_url(url)!r}; use wss://"
        )
    opener = url_opener(
        target,
        ssl_context=ssl_context,
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
