"""Pins every private hook of trio-websocket and wsproto the adapter uses (``_adapter/_hooks``).

One test per hook, against the installed libraries: an upgrade that renames or changes
one fails here by the hook's name, before the adapter misbehaves somewhere else.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import random
import sys

import h11
import pytest
import trio
import trio.testing
import trio_websocket as tw
import wsproto
import wsproto.connection
import wsproto.events
import wsproto.frame_protocol
import wsproto.utilities

from transport._adapter import _hooks
from transport._adapter._library import Backend, client_handshake, server_handshake

HOOKS = {
    "run_reader",
    "wait_open",
    "library_request",
    "mark_accepted",
    "expect_pong",
    "send_ping_frame",
    "stream_lock",
    "abort_library",
    "install_sink",
    "installed_sink",
    "library_messages",
    "route_receive_side",
    "take_handshake",
    "open_connection",
    "light_event_queue",
    "fast_unmasking",
    "close_frame",
    "payload_announced",
    "request_http_version",
    "request_method",
}


def test_every_hook_is_pinned_here() -> None:
    functions = {
        name
        for name, value in vars(_hooks).items()
        if inspect.isfunction(value) and value.__module__ == _hooks.__name__
    }
    assert functions == HOOKS


def library_connection() -> tw.WebSocketConnection:
    client_stream, _server_stream = trio.testing.memory_stream_pair()
    return tw.WebSocketConnection(
        client_stream, wsproto.WSConnection(wsproto.ConnectionType.CLIENT), host="h", path="/"
    )


async def open_pair(nursery: trio.Nursery) -> tuple[Backend, Backend]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server: list[Backend] = []

    async def serve() -> None:
        handshake = await server_handshake(nursery, server_stream)
        server.append(await handshake.accept(None, (), 10))

    async with trio.open_nursery() as inner:
        inner.start_soon(serve)
        client = await client_handshake(nursery, client_stream, host="h", resource="/")
    return client, server[0]


def test_trio_websocket_attributes_the_hooks_use() -> None:
    ws = library_connection()
    # run_reader, send_ping_frame, abort_library: coroutine methods.
    for name, parameters in [("_reader_task", []), ("_send", ["event"]), ("_abort_web_socket", [])]:
        method = getattr(tw.WebSocketConnection, name)
        assert inspect.iscoroutinefunction(method), name
        assert list(inspect.signature(method).parameters)[1:] == parameters, name
    # library_request: a server's future of the request the reader would find.
    server = tw.WebSocketConnection(
        trio.testing.memory_stream_pair()[0], wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    )
    assert server._connection_proposal is not None
    # stream_lock: the lock the library's own writes hold.
    assert isinstance(_hooks.stream_lock(ws), trio.StrictFIFOLock)
    # wait_open: an event set when the opening handshake ends.
    assert isinstance(ws._open_handshake, trio.Event)
    # expect_pong: payload -> an object whose set() the reader calls on the Pong.
    assert isinstance(ws._pings, dict)
    # install_sink, installed_sink, library_messages, route_receive_side: the message queue.
    assert isinstance(ws._send_channel, trio.MemorySendChannel)
    assert isinstance(ws._recv_channel, trio.MemoryReceiveChannel)


async def test_the_reader_tells_a_pong_listener_and_routes_through_the_sink() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery)
        nursery.start_soon(server.receive)  # the peer's reader answers pings
        listener = trio.Event()
        _hooks.expect_pong(client._ws, b"p", listener)
        await _hooks.send_ping_frame(client._ws, b"p")
        with trio.fail_after(5):
            await listener.wait()
        # The reader sends messages to whatever install_sink put in place, and the
        # library's own queue is what library_messages returns.
        assert type(_hooks.installed_sink(server._ws)).__name__ == "_InboundSink"
        assert _hooks.library_messages(server._ws) is server._ws._recv_channel
        nursery.cancel_scope.cancel()


async def test_frames_written_past_the_library_share_its_lock_and_its_end() -> None:
    async with trio.open_nursery() as nursery:
        client, server = await open_pair(nursery)
        lock = _hooks.stream_lock(client._ws)
        # Encoded frames go out in one write, read back as the messages they were.
        await client.send_encoded(client.encode("a") + client.encode(b"b"))
        assert [await server.receive(), await server.receive()] == ["a", b"b"]
        assert not lock.locked()
        # While the library writes (another task holds the lock), the write waits for it.
        release = trio.Event()

        async def library_write() -> None:
            async with lock:
                await release.wait()

        nursery.start_soon(library_write)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.1) as waited:
            await client.send_encoded(client.encode("later"))
        assert waited.cancelled_caught
        release.set()
        # abort_library marks the connection closed with 1006, as a failed write does.
        await _hooks.abort_library(client._ws)
        assert client.closed_with() == (1006, "")
        nursery.cancel_scope.cancel()


def handshake_pair() -> tuple[wsproto.WSConnection, wsproto.WSConnection]:
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(wsproto.events.Request(host="h", target="/")))
    assert [type(e) for e in server.events()] == [wsproto.events.Request]
    client.receive_data(server.send(wsproto.events.AcceptConnection()))
    return client, server


def test_mark_accepted_records_the_101_as_the_library_accept_does() -> None:
    ws = tw.WebSocketConnection(
        trio.testing.memory_stream_pair()[0], wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    )
    assert not ws._open_handshake.is_set()
    _hooks.mark_accepted(ws, "/room?x=1", "chat")
    assert ws._open_handshake.is_set()
    assert (ws.subprotocol, ws.path) == ("chat", "/room?x=1")
    # The library's own accept sets the same three attributes after its write.
    source = inspect.getsource(tw.WebSocketConnection._accept)
    for line in (
        "self._subprotocol = subprotocol",
        "self._path = request.target",
        "await self._send(",
        "self._open_handshake.set()",
    ):
        assert line in source, line


async def test_a_server_accept_opens_the_library_connection_with_its_subprotocol() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        server: list[Backend] = []
        accepted = trio.Event()

        async def serve() -> None:
            handshake = await server_handshake(nursery, server_stream)
            server.append(await handshake.accept("chat", (("x-extra", "1"),), 10))
            accepted.set()

        nursery.start_soon(serve)
        client = await client_handshake(
            nursery, client_stream, host="h", resource="/r", subprotocols=["chat"]
        )
        with trio.fail_after(5):
            await accepted.wait()
        assert client.subprotocol == server[0].subprotocol == "chat"
        assert ("x-extra", "1") in client.headers
        assert server[0]._ws.path == "/r"
        await client.send("hello")
        assert await server[0].receive() == "hello"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 1000, 65536, 70001])
@pytest.mark.parametrize("parts", [1, 3, 7])
def test_fast_unmasking_decodes_what_wsproto_decodes(size: int, parts: int) -> None:
    # A payload split over several reads, at offsets that are not multiples of four,
    # so the masking key must go on where each part ended.
    payload = bytes(random.Random(size * 31 + parts).randbytes(size))
    decoded: dict[bool, list[bytes]] = {}
    for fast in (False, True):
        client, server = handshake_pair()
        _hooks.take_handshake(server)
        frames = _hooks.open_connection(server)
        if fast:
            assert _hooks.fast_unmasking(frames)
        data = client.send(wsproto.events.BytesMessage(data=payload))
        data += client.send(wsproto.events.BytesMessage(data=b"next"))
        cuts = sorted({0, len(data), *(len(data) * i // parts + i for i in range(1, parts))})
        messages: list[bytes] = []
        for start, end in itertools.pairwise(cuts):
            frames.receive_data(data[start:end])
            for event in frames.events():
                assert isinstance(event, wsproto.events.BytesMessage)
                messages.append(bytes(event.data))
        decoded[fast] = messages
    assert decoded[True] == decoded[False]
    assert b"".join(decoded[True]) == payload + b"next"


def test_fast_unmasking_pins_the_decoder_it_swaps() -> None:
    _client, server = handshake_pair()
    _hooks.take_handshake(server)
    frames = _hooks.open_connection(server)
    decoder = frames._proto._frame_decoder
    assert type(decoder) is wsproto.frame_protocol.FrameDecoder
    assert "masker" in vars(decoder)
    assert inspect.signature(
        wsproto.frame_protocol.FrameDecoder.parse_header
    ).parameters.keys() == {"self"}
    assert wsproto.frame_protocol.XorMaskerSimple(b"abcd")._masking_key == b"abcd"
    assert _hooks.fast_unmasking(frames)
    assert not _hooks.fast_unmasking(frames)  # swapped once


def test_take_handshake_and_open_connection() -> None:
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    assert _hooks.take_handshake(server) is None  # not open yet: nothing to drop
    client, server = handshake_pair()
    assert [type(e) for e in client.events()] == [wsproto.events.AcceptConnection]
    assert _hooks.take_handshake(client) == []
    assert not hasattr(client, "handshake")
    frame_layer = _hooks.open_connection(client)
    assert isinstance(frame_layer, wsproto.connection.Connection)
    server.receive_data(frame_layer.send(wsproto.events.TextMessage("after")))
    assert [e.data for e in server.events() if isinstance(e, wsproto.events.TextMessage)] == [
        "after"
    ]


def test_take_handshake_hands_a_servers_trailing_bytes_to_the_frame_layer() -> None:
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = client.send(wsproto.events.Request(host="h", target="/"))
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    # A client that sends its first frame in the same packet as its request.
    early = wsproto.frame_protocol.FrameProtocol(client=True, extensions=[]).send_data("early")
    server.receive_data(request + early)
    assert [type(e) for e in server.events()] == [wsproto.events.Request]
    server.send(wsproto.events.AcceptConnection())
    assert _hooks.take_handshake(server) == []
    texts = _hooks.open_connection(server).events()
    assert [e.data for e in texts if isinstance(e, wsproto.events.TextMessage)] == ["early"]


def test_light_event_queue_keeps_the_end_of_stream_event() -> None:
    _client, server = handshake_pair()
    assert _hooks.take_handshake(server) == []
    frame_layer = _hooks.open_connection(server)
    assert isinstance(frame_layer._events, collections.deque)  # what the hook replaces
    _hooks.light_event_queue(frame_layer)
    assert sys.getsizeof(frame_layer._events) < sys.getsizeof(collections.deque()) // 4
    # wsproto queues a CloseConnection there when the stream ends, and yields it first.
    frame_layer.receive_data(None)
    (event,) = frame_layer.events()
    assert isinstance(event, wsproto.events.CloseConnection)
    assert event.code == 1006
    assert not frame_layer._events


def test_close_frame_is_the_one_wsproto_writes() -> None:
    client, server = handshake_pair()
    assert _hooks.close_frame(server, 1002, "bad") == b"\x88\x05\x03\xeabad"
    masked = _hooks.close_frame(client, 1000, None)
    assert masked[:2] == b"\x88\x82"  # masked, two bytes of payload
    server.receive_data(masked)
    (event,) = server.events()
    assert isinstance(event, wsproto.events.CloseConnection)
    assert event.code == 1000


def test_payload_announced_reads_the_frame_header_before_the_payload() -> None:
    client, server = handshake_pair()
    assert _hooks.payload_announced(server) is None
    frame = client.send(wsproto.events.BytesMessage(b"x" * 300))
    server.receive_data(frame[:8])  # header (2 + 2 length + 4 mask) only
    assert list(server.events()) == []
    assert _hooks.payload_announced(server) == 300
    server.receive_data(frame[8:108])
    assert [len(e.data) for e in server.events() if isinstance(e, wsproto.events.BytesMessage)] == [
        100
    ]
    assert _hooks.payload_announced(server) == 200
    server.receive_data(frame[108:])
    assert [len(e.data) for e in server.events() if isinstance(e, wsproto.events.BytesMessage)] == [
        200
    ]
    assert _hooks.payload_announced(server) is None
    server.receive_data(client.send(wsproto.events.Ping(b"p"))[:2])
    assert _hooks.payload_announced(server) is None  # control frames are not counted


def parsed_by_a_server(request_head: bytes) -> wsproto.WSConnection:
    """A server connection that has parsed ``request_head``, valid for wsproto or not."""
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    try:
        server.receive_data(request_head)
        list(server.events())
    except wsproto.utilities.RemoteProtocolError:
        pass  # what the server refuses; the parser has still read the request line
    return server


def test_request_http_version_reads_the_handshake_parser() -> None:
    head = b"GET / HTTP/%s\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    head += b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n"
    for version in (b"1.0", b"1.1"):
        server = parsed_by_a_server(head % version)
        # wsproto takes the request in either version (hence the hook), and the version
        # is where the hook reads it.
        assert server.state is wsproto.connection.ConnectionState.CONNECTING
        assert isinstance(server.handshake._h11_connection, h11.Connection)
        assert server.handshake._h11_connection.their_http_version == version
        assert _hooks.request_http_version(server) == version
    assert _hooks.request_http_version(wsproto.WSConnection(wsproto.ConnectionType.SERVER)) is None


def test_request_method_reads_the_handshake_parser_also_on_a_refused_request() -> None:
    head = b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    with pytest.raises(wsproto.utilities.RemoteProtocolError, match="must be GET"):
        wsproto.WSConnection(wsproto.ConnectionType.SERVER).receive_data(head)
    server = parsed_by_a_server(head)
    assert server.handshake._h11_connection._request_method == b"HEAD"
    assert _hooks.request_method(server) == b"HEAD"
    assert _hooks.request_method(parsed_by_a_server(b"\x16\x03\x01 not http\r\n\r\n")) is None
