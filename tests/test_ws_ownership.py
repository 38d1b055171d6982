"""Guarantee 1: nothing public of a connection is, or holds, a stream or a library object."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto

import actors
import transport
from tests.ws_support import NO_KEEPALIVE, connection_pair
from transport._client._connect import client_opener
from transport._connection._actor import ConnectionActor
from transport._server._handshake import server_opener

FORBIDDEN = (
    trio.abc.Stream,
    trio.abc.Listener,
    socket.socket,
    ssl.SSLObject,
    ssl.SSLSocket,
    trio_websocket.WebSocketConnection,
    trio_websocket.WebSocketRequest,
    wsproto.WSConnection,
)


def public_values(root: object, max_depth: int = 8) -> Iterator[tuple[str, object]]:
    """Every value reachable from ``root`` through public attributes, items and causes."""
    seen: set[int] = set()
    stack: list[tuple[str, object, int]] = [("root", root, 0)]
    while stack:
        where, value, depth = stack.pop()
        if id(value) in seen or depth > max_depth:
            continue
        seen.add(id(value))
        yield where, value
        children: list[tuple[str, object]] = []
        if isinstance(value, dict):
            children = [(f"{where}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, list | tuple | set | frozenset):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, BaseException):
            children = [(f"{where}.__cause__", value.__cause__)]
            children += [(f"{where}.{name}", getattr(value, name)) for name in vars(value)]
        elif type(value).__module__.split(".")[0] in ("transport", "actors"):
            for name in dir(value):
                if name.startswith("_"):
                    continue
                try:
                    attribute = getattr(value, name)
                except Exception:  # noqa: BLE001 - a property may refuse (ctx after stop)
                    continue
                if callable(attribute) and not isinstance(attribute, actors.ActorRef):
                    continue
                children.append((f"{where}.{name}", attribute))
        stack.extend((w, v, depth + 1) for w, v in children)


def assert_holds_no_stream(root: object) -> int:
    count = 0
    for where, value in public_values(root):
        count += 1
        assert not isinstance(value, FORBIDDEN), f"{where} exposes {type(value).__name__}"
    return count


async def test_handles_refs_statistics_and_reasons_hold_no_stream(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system)
    await client.send("x")
    assert await server.receive() == "x"
    roots: list[object] = [client, server, client.ref, client.info, client.statistics()]
    for root in roots:
        assert assert_holds_no_stream(root) > 1
    await client.close(4000, "bye")
    await server.ref.wait_stopped()
    roots = [client.closed, server.closed, server.ref.stop_reason, server.statistics()]
    for root in roots:
        assert assert_holds_no_stream(root) >= 1


async def test_the_actor_itself_exposes_no_stream(system: actors.ActorSystem) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def connect() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return client_stream

    client_actor = ConnectionActor(
        client_opener(connect, host="h", resource="/", options=NO_KEEPALIVE), NO_KEEPALIVE
    )
    server_actor = ConnectionActor(
        server_opener(server_stream, transport.HandshakePolicy(), NO_KEEPALIVE), NO_KEEPALIVE
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(system.spawn, server_actor)
        await system.spawn(client_actor)
    assert assert_holds_no_stream(client_actor) > 1
    assert assert_holds_no_stream(server_actor) > 1
    # The check itself does find a stream when one is exposed.
    assert any(isinstance(v, trio.abc.Stream) for _, v in public_values({"s": client_stream}))


async def test_errors_hold_no_stream(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client_stream, _silent = trio.testing.memory_stream_pair()

    async def connect() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return client_stream

    options = transport.ConnectionOptions(ping_interval=None, handshake_timeout=0.5)
    opener = client_opener(connect, host="h", resource="/", options=options)
    with pytest.raises(transport.HandshakeTimeoutError) as info:
        await system.spawn(ConnectionActor(opener, options))
    assert assert_holds_no_stream(info.value) >= 1
    rejected = transport.HandshakeRejected(403, [("a", "b")], b"no")
    assert_holds_no_stream(rejected)
