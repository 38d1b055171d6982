"""Guarantee 1: nothing public of a connection is, or holds, a stream or a library object.

Two checks. The walk over public values (:func:`public_values`) looks at what user code
sees. The structural check (:func:`stream_holders`) also follows private attributes,
closures and bound methods of everything reachable from a handle or an actor, stopping
only at the runtime's doors (refs, contexts, the system: messages only), and fails on
anything that could read from or write to the stream: a stream, a socket, a trio-websocket
or wsproto object, or an object of the adapter (``transport._adapter``). With it, the public
attributes of the handle and of the actor must be exactly the allowed sets below.
"""

from __future__ import annotations

import collections
import functools
import socket
import ssl
import types
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


# What a connection's handle and its actor show; a new public attribute must be added here,
# after checking that it gives no way to the stream other than a message to the actor.
HANDLE_ATTRIBUTES = frozenset(
    {
        "close",
        "closed",
        "codec",
        "info",
        "messages",
        "receive",
        "receive_message",
        "receive_message_nowait",
        "receive_nowait",
        "ref",
        "send",
        "send_message",
        "send_message_nowait",
        "send_nowait",
        "statistics",
    }
)
ACTOR_ATTRIBUTES = frozenset(
    {
        "application_ended",
        "begin_close",
        "close",
        "ctx",
        "get_statistics",
        "handle",
        "keepalive_ping",
        "on_spell_end",
        "on_spell_start",
        "on_start",
        "on_stop",
        "send_bytes",
        "send_message",
        "send_text",
    }
)
# Objects of the runtime (refs, contexts, timers, the system) are its doors: through them
# only messages reach an actor, so the walk takes their public values, not their internals
# (a ref's cell holds the actor itself). The runtime's own tests keep those doors shut.
RUNTIME = "actors"
TOUCHES_STREAM_MODULES = ("trio_websocket", "wsproto", "transport._adapter")


def touches_stream(value: object) -> bool:
    """Could ``value`` read from or write to a connection's stream?"""
    if isinstance(value, FORBIDDEN):
        return True
    return type(value).__module__.startswith(TOUCHES_STREAM_MODULES)


def public_attributes(value: object) -> set[str]:
    return {name for name in dir(value) if not name.startswith("_")}


def stored_attributes(value: object) -> list[tuple[str, object]]:
    """Every attribute ``value`` stores, private ones included (``__dict__`` and slots)."""
    found = dict(getattr(value, "__dict__", {}))
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in found and hasattr(value, name):
                found[name] = getattr(value, name)
    return list(found.items())


def stream_holders(root: object, max_depth: int = 12) -> Iterator[tuple[str, object]]:
    """Everything reachable from ``root`` that could touch a stream (see the module doc).

    A connection actor reached (the root, or one found through the runtime's public
    values) is an owner: its private state holds its stream by design and is not
    followed, only what its public attributes give.
    """
    seen: set[int] = set()
    stack: list[tuple[str, object, int]] = [("root", root, 0)]
    while stack:
        where, value, depth = stack.pop()
        if id(value) in seen or depth > max_depth:
            continue
        seen.add(id(value))
        if touches_stream(value):
            yield where, value
            continue
        children: list[tuple[str, object]] = []
        if isinstance(value, dict):
            children = [(f"{where}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, list | tuple | set | frozenset | collections.deque):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, BaseException):
            children = [(f"{where}.__cause__", value.__cause__)]
            children += [(f"{where}.__context__", value.__context__)]
            children += [(f"{where}.{name}", v) for name, v in vars(value).items()]
        elif isinstance(value, types.MethodType):
            children = [(f"{where}.__self__", value.__self__)]
        elif isinstance(value, functools.partial):
            children = [(f"{where}.func", value.func), (f"{where}.args", value.args)]
            children += [(f"{where}.keywords", value.keywords)]
        elif isinstance(value, types.FunctionType):
            cells = value.__closure__ or ()
            children = [(f"{where}.<closure {i}>", c.cell_contents) for i, c in enumerate(cells)]
            children += [(f"{where}.__defaults__", value.__defaults__)]
        elif type(value).__module__.split(".")[0] in ("transport", RUNTIME, "tests"):
            doors = type(value).__module__.split(".")[0] == RUNTIME
            if not doors and not isinstance(value, ConnectionActor):
                children = [(f"{where}.{name}", v) for name, v in stored_attributes(value)]
            for name in sorted(public_attributes(value)):
                try:
                    attribute = getattr(value, name)
                except Exception:  # noqa: BLE001 - a property may refuse (ctx after stop)
                    continue
                if doors and callable(attribute) and not isinstance(attribute, actors.ActorRef):
                    continue
                children.append((f"{where}.{name}", attribute))
        stack.extend((w, v, depth + 1) for w, v in children)


def assert_owns_its_stream(root: object, allowed: frozenset[str]) -> None:
    """The structural check: the allowed public attributes, and no way to the stream."""
    extra = public_attributes(root) - allowed
    assert not extra, f"{type(root).__name__} has unexpected public attributes {sorted(extra)}"
    holders = [f"{where} is {type(value).__qualname__}" for where, value in stream_holders(root)]
    assert not holders, f"{type(root).__name__} reaches its stream: {holders}"


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


async def spawn_actor_pair(
    system: actors.ActorSystem,
) -> tuple[ConnectionActor, ConnectionActor, trio.abc.Stream]:
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
    return client_actor, server_actor, client_stream


async def test_handle_and_actor_show_only_allowed_attributes_and_no_way_to_the_stream(
    system: actors.ActorSystem,
) -> None:
    client_actor, server_actor, _ = await spawn_actor_pair(system)
    client, server = client_actor.handle(), server_actor.handle()
    await client.send("x")
    assert await server.receive() == "x"
    await client.send("queued")
    for handle in (client, server):
        assert_owns_its_stream(handle, HANDLE_ATTRIBUTES)
    for actor in (client_actor, server_actor):
        assert_owns_its_stream(actor, ACTOR_ATTRIBUTES)
    await client.close(4000, "bye")
    await server.ref.wait_stopped()
    for handle in (client, server):
        assert_owns_its_stream(handle, HANDLE_ATTRIBUTES)


async def test_the_structural_check_fails_on_a_public_backend_property(
    system: actors.ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_actor, _server_actor, client_stream = await spawn_actor_pair(system)
    handle = client_actor.handle()
    backend = client_actor._backend
    assert backend is not None
    # The walk itself sees the stream behind the adapter's private attributes.
    assert [w for w, _ in stream_holders({"b": backend})] == ["root['b']"]
    assert [w for w, _ in stream_holders({"s": client_stream})] == ["root['s']"]
    # A property that hands out the adapter, under an allowed name or a new one, fails.
    monkeypatch.setattr(
        transport.WebSocketConnection, "backend", property(lambda _self: backend), raising=False
    )
    with pytest.raises(AssertionError, match=r"unexpected public attributes \['backend'\]"):
        assert_owns_its_stream(handle, HANDLE_ATTRIBUTES)
    with pytest.raises(AssertionError, match=r"root\.backend is Backend"):
        assert_owns_its_stream(handle, HANDLE_ATTRIBUTES | {"backend"})
    # So does a public method that closes over the stream.
    monkeypatch.delattr(transport.WebSocketConnection, "backend")

    async def send_raw(data: bytes) -> None:
        await client_stream.send_all(data)

    monkeypatch.setattr(
        transport.WebSocketConnection,
        "send_raw",
        property(lambda _self: send_raw),
        raising=False,
    )
    with pytest.raises(AssertionError, match=r"root\.send_raw\.<closure 0> is "):
        assert_owns_its_stream(handle, HANDLE_ATTRIBUTES | {"send_raw"})
    await handle.close()
