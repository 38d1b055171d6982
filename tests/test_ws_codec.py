"""Codecs: the JSON codec on its own (sans-IO, fuzzed), then inside connections and servers."""

from __future__ import annotations

import contextlib
import enum
import functools
import json
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import wsproto.events
from hypothesis import given, settings, strategies as st

import actors
import transport
from tests.ws_support import connection_pair, raw_client, raw_close_code, wait_closed
from transport import DecodePolicy, JsonCodec, _codec
from transport._server._handshake import HandshakeRequest, check_request

#: Bounded and deterministic: the same examples on every run and in CI, no example database.
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


class Mood(enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


@attrs.frozen
class Author:
    name: str
    id: int


@attrs.frozen
class ChatMessage:
    text: str
    author: Author
    mentions: tuple[str, ...] = ()
    mood: Mood | None = None
    score: float = 0.0


@attrs.frozen
class Join:
    room: str
    invited: list[Author] = attrs.Factory(list)


@attrs.frozen
class Leave:
    room: str
    reason: str | None = None


@attrs.frozen
class Unregistered:
    value: int


CODEC = JsonCodec(ChatMessage, Join, Leave, tags={ChatMessage: "chat"})
ALICE = Author("alice", 1)


# -- sans-IO: encode and decode ---------------------------------------------------------


def test_json_codec_round_trips_nested_classes_lists_optionals_and_enums() -> None:
    message = ChatMessage("hi ☃", ALICE, ("bob",), Mood.GRUMPY, 2.5)
    text = CODEC.encode(message)
    assert json.loads(text) == {
        "type": "chat",
        "text": "hi ☃",
        "author": {"name": "alice", "id": 1},
        "mentions": ["bob"],
        "mood": "grumpy",
        "score": 2.5,
    }
    assert text.startswith('{"type":"chat",')
    assert CODEC.decode(text) == message
    assert CODEC.decode('{"type":"chat","text":"x","author":{"name":"a","id":2}}') == (
        ChatMessage("x", Author("a", 2))
    )
    join = Join("lobby", [ALICE, Author("bob", 2)])
    assert CODEC.decode(CODEC.encode(join)) == join
    assert CODEC.decode('{"room":"r","type":"leave","reason":null}') == Leave("r")


def test_tags_default_to_the_class_name_in_snake_case_and_the_tag_field_is_configurable() -> None:
    codec = JsonCodec(ChatMessage, Join, tag_field="kind")
    assert codec.tags == {ChatMessage: "chat_message", Join: "join"}
    assert json.loads(codec.encode(Join("r")))["kind"] == "join"
    assert codec.decode('{"kind":"join","room":"r"}') == Join("r")
    assert transport.JsonCodec(Leave, tags={Leave: "bye"}).encode(Leave("r")) == (
        '{"type":"bye","room":"r","reason":null}'
    )


BAD_INPUT = [
    ("not json", _codec.InvalidJsonError, "not valid json"),
    ('{"type":"leave","room":"r"', _codec.InvalidJsonError, "not valid json"),
    (
        '{"type":"chat","text":"x","author":{"name":"a","id":NaN}}',
        _codec.InvalidJsonError,
        "NaN",
    ),
    ("[" * 50_000, _codec.InvalidJsonError, "not valid json"),
    ("9" * 10_000, _codec.InvalidJsonError, "not valid json"),
    ('["leave","r"]', _codec.MissingTagError, "json array, not an object"),
    ('"leave"', _codec.MissingTagError, "json string"),
    ('{"room":"r"}', _codec.MissingTagError, "no 'type' field"),
    ('{"type":null,"room":"r"}', _codec.MissingTagError, "no 'type' field"),
    ('{"type":"kick","room":"r"}', _codec.UnknownTagError, "unknown message type 'kick'"),
    ('{"type":["leave"],"room":"r"}', _codec.UnknownTagError, "a json array"),
    ('{"type":"leave"}', _codec.InvalidFieldsError, "required field missing @ Leave.room"),
    ('{"type":"leave","room":5}', _codec.InvalidFieldsError, "Leave.room"),
    ('{"type":"leave","room":"r","reason":false}', _codec.InvalidFieldsError, "Leave.reason"),
    (
        '{"type":"leave","room":"r","by":"x"}',
        _codec.InvalidFieldsError,
        "extra fields found (by)",
    ),
    ('{"type":"join","room":"r","invited":"ab"}', _codec.InvalidFieldsError, "Join.invited"),
    ('{"type":"join","room":"r","invited":[1]}', _codec.InvalidFieldsError, "invited"),
    (
        '{"type":"chat","text":"x","author":{"name":"a","id":"1"}}',
        _codec.InvalidFieldsError,
        "ChatMessage.author.id",
    ),
    (
        '{"type":"chat","text":"x","author":{"name":"a","id":true}}',
        _codec.InvalidFieldsError,
        "ChatMessage.author.id",
    ),
    (
        '{"type":"chat","text":"x","author":{"name":"a","id":1.5}}',
        _codec.InvalidFieldsError,
        "ChatMessage.author.id",
    ),
    (
        '{"type":"chat","text":"x","author":{"name":"a","id":1},"mood":"sleepy"}',
        _codec.InvalidFieldsError,
        "ChatMessage.mood",
    ),
    (b'{"type":"leave","room":"r"}', _codec.UnsupportedFrameError, "accepts text only"),
]


@pytest.mark.parametrize(("frame", "error_type", "reason"), BAD_INPUT)
def test_bad_input_is_a_typed_decode_error_with_reason_payload_and_close_code(
    frame: str | bytes, error_type: type[transport.DecodeError], reason: str
) -> None:
    with pytest.raises(error_type) as info:
        CODEC.decode(frame)
    error = info.value
    assert isinstance(error, transport.DecodeError)
    assert isinstance(error, transport.TransportError)
    assert reason in error.reason
    assert error.payload == frame[: _codec.PAYLOAD_EXCERPT]
    assert error.payload_size == len(frame)
    expected = 1003 if error_type is _codec.UnsupportedFrameError else 1007
    assert error.close_code == expected


def test_binary_messages_when_accepted_must_be_utf8_json() -> None:
    codec = JsonCodec(Leave, accept_binary=True)
    assert codec.decode('{"type":"leave","room":"é"}'.encode()) == Leave("é")
    with pytest.raises(_codec.InvalidUtf8Error) as info:
        codec.decode(b'{"type":"leave","room":"\xff"}')
    assert info.value.close_code == 1007
    assert info.value.payload == b'{"type":"leave","room":"\xff"}'


def test_extra_fields_are_ignored_when_not_forbidden() -> None:
    lenient = JsonCodec(Leave, forbid_extra_fields=False)
    assert lenient.decode('{"type":"leave","room":"r","by":"x"}') == Leave("r")
    with pytest.raises(_codec.InvalidFieldsError):
        lenient.decode('{"type":"leave","room":1}')


def test_a_huge_bad_message_keeps_only_a_short_excerpt() -> None:
    frame = "x" * 1_000_000
    with pytest.raises(_codec.InvalidJsonError) as info:
        CODEC.decode(frame)
    assert info.value.payload == "x" * _codec.PAYLOAD_EXCERPT
    assert info.value.payload_size == 1_000_000
    assert len(repr(info.value)) < 1000


def test_values_the_codec_cannot_encode_raise_encode_error() -> None:
    with pytest.raises(transport.EncodeError, match="Unregistered is not a message class"):
        CODEC.encode(Unregistered(1))
    with pytest.raises(transport.EncodeError, match="cannot be encoded as JSON") as info:
        CODEC.encode(ChatMessage("x", ALICE, score=float("nan")))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(transport.EncodeError, match="raw codec sends str or bytes"):
        transport.RawCodec().encode(42)


def test_raw_codec_passes_text_and_bytes_through() -> None:
    raw = transport.RawCodec()
    assert raw.encode("ü") == "ü"
    assert raw.encode(bytearray(b"\x00")) == b"\x00"
    assert raw.decode(b"\xff") == b"\xff"
    assert transport.ConnectionOptions().codec == raw


def test_codec_definition_mistakes_are_reported_at_construction() -> None:
    with pytest.raises(TypeError, match=r"not one; decorate it with @attrs\.frozen"):
        JsonCodec(dict)
    with pytest.raises(ValueError, match="share the tag 'join'"):
        JsonCodec(Join, Leave, tags={Leave: "join"})
    with pytest.raises(ValueError, match="field named 'room'"):
        JsonCodec(Join, tag_field="room")
    with pytest.raises(ValueError, match="not message classes of this JsonCodec"):
        JsonCodec(Join, tags={Leave: "leave"})
    with pytest.raises(ValueError, match="at least one message class"):
        JsonCodec()


# -- sans-IO: fuzzing -------------------------------------------------------------------

authors = st.builds(Author, name=st.text(), id=st.integers())
messages = st.one_of(
    st.builds(
        ChatMessage,
        text=st.text(),
        author=authors,
        mentions=st.lists(st.text(max_size=8), max_size=4).map(tuple),
        mood=st.none() | st.sampled_from(Mood),
        score=st.floats(allow_nan=False, allow_infinity=False),
    ),
    st.builds(Join, room=st.text(), invited=st.lists(authors, max_size=3)),
    st.builds(Leave, room=st.text(), reason=st.none() | st.text()),
)


@FUZZ
@given(messages)
def test_every_message_survives_a_round_trip(message: ChatMessage | Join | Leave) -> None:
    assert CODEC.decode(CODEC.encode(message)) == message


@FUZZ
@given(st.text() | st.binary())
def test_arbitrary_frames_decode_or_raise_only_decode_error(frame: str | bytes) -> None:
    for codec in (CODEC, JsonCodec(ChatMessage, Join, Leave, accept_binary=True)):
        try:
            decoded = codec.decode(frame)
        except transport.DecodeError as exc:
            error = exc
        else:
            assert isinstance(decoded, ChatMessage | Join | Leave)
            continue
        assert error.payload == frame[: _codec.PAYLOAD_EXCERPT]
        assert error.payload_size == len(frame)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["happy", "grumpy"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["text", "author", "name", "id", "mentions", "mood", "score", "room", "invited", "reason"]
) | st.text(max_size=6)
json_objects = st.builds(
    lambda fields, tag: {**fields, "type": tag},
    st.dictionaries(field_names, json_values, max_size=6),
    st.sampled_from(["chat", "join", "leave", "kick"]) | json_values,
)


@FUZZ
@given(json_objects)
def test_json_shaped_nonsense_decodes_to_a_valid_message_or_raises_decode_error(
    value: dict[str, object],
) -> None:
    try:
        decoded = CODEC.decode(json.dumps(value))
    except transport.DecodeError:
        return
    assert isinstance(decoded, ChatMessage | Join | Leave)
    assert CODEC.decode(CODEC.encode(decoded)) == decoded


header_names = st.sampled_from(["Origin", "origin", "ORIGIN", "Sec-WebSocket-Protocol"]) | st.text()


@FUZZ
@given(
    path=st.text(),
    headers=st.lists(st.tuples(header_names, st.text()), max_size=6),
    subprotocols=st.lists(st.sampled_from(["v1", "v2", "v3"]) | st.text(), max_size=4),
)
def test_handshake_policy_on_arbitrary_requests_only_accepts_or_rejects(
    path: str, headers: list[tuple[str, str]], subprotocols: list[str]
) -> None:
    policy = transport.HandshakePolicy(
        subprotocols=("v2", "v1"), allowed_origins={"https://ok.example"}
    )
    request = HandshakeRequest(path, tuple(headers), tuple(subprotocols), "")
    origins = [value for name, value in headers if name.lower() == "origin"]
    assert request.origin == (origins[0] if origins else None)
    decision = check_request(request, policy)
    if origins and origins[0] != "https://ok.example":
        assert decision == transport.Reject(403, b"origin not allowed")
    else:
        assert isinstance(decision, transport.Accept)
        expected = next((p for p in ("v2", "v1") if p in subprotocols), None)
        assert decision.subprotocol == expected


# -- inside connections (memory streams) ------------------------------------------------

JSON = transport.ConnectionOptions(ping_interval=None, codec=CODEC)
JSON_CLOSE = attrs.evolve(JSON, on_decode_error=DecodePolicy.CLOSE)
RAW = transport.ConnectionOptions(ping_interval=None)


async def test_typed_messages_flow_both_ways(system: actors.ActorSystem) -> None:
    client, server = await connection_pair(system, client_options=JSON, server_options=JSON)
    chat = ChatMessage("hello", ALICE, mood=Mood.HAPPY)
    await client.send_message(chat)
    client.send_message_nowait(Join("lobby", [ALICE]))
    await client.ref.tell(transport.SendMessage(Leave("lobby")))
    received = []
    async for message in server.messages():
        received.append(message)
        if len(received) == 3:
            break
    assert received == [chat, Join("lobby", [ALICE]), Leave("lobby")]
    await server.send_message(Leave("lobby", "bye"))
    assert await client.receive_message() == Leave("lobby", "bye")
    await client.close()


async def test_unencodable_value_is_an_immediate_error_and_the_connection_stays_open(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system, client_options=JSON, server_options=JSON)
    with pytest.raises(transport.EncodeError):
        await client.send_message(Unregistered(1))
    with pytest.raises(transport.EncodeError):
        client.send_message_nowait(ChatMessage("x", ALICE, score=float("inf")))
    with system.dead_letters.subscribe() as letters:
        # Told to the ref, nobody is there to raise to: reported as a dead letter.
        await client.ref.tell(transport.SendMessage(Unregistered(2)))
        await client.send_message(Leave("still open"))
        assert await server.receive_message() == Leave("still open")
        letter = letters.receive_nowait()
    assert letter.message == transport.SendMessage(Unregistered(2))
    assert letter.reason is actors.DeadLetterReason.FAILED
    assert isinstance(letter.error, transport.EncodeError)
    assert client.closed is None
    assert client.statistics().messages_sent == 1
    await client.close()


async def test_skip_policy_reports_bad_input_and_keeps_the_connection(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system, client_options=RAW, server_options=JSON)
    with system.dead_letters.subscribe() as letters:
        await client.send("{not json")
        await client.send('{"type":"kick"}')
        await client.send('{"type":"leave","room":"r"}')
        first = await server.receive_message()
        second = await server.receive_message()
        assert await server.receive_message() == Leave("r")
        dead = [letters.receive_nowait(), letters.receive_nowait()]
    assert isinstance(first, transport.Undecodable)
    assert isinstance(first.error, _codec.InvalidJsonError)
    assert first.error.payload == "{not json"
    assert isinstance(second, transport.Undecodable)
    assert isinstance(second.error, _codec.UnknownTagError)
    assert [letter.message for letter in dead] == [first, second]
    assert all(letter.reason is actors.DeadLetterReason.UNDELIVERABLE for letter in dead)
    assert dead[0].error is first.error
    assert dead[0].recipient == server.ref.path
    stats = server.statistics()
    assert (stats.undecodable, stats.messages_received, stats.inbound_dropped) == (2, 3, 0)
    assert server.closed is None
    await client.close()


@pytest.mark.parametrize(
    ("frame", "code"), [("{not json", 1007), ('{"type":"leave"}', 1007), (b"\x01", 1003)]
)
async def test_close_policy_closes_with_1007_for_bad_data_and_1003_for_binary(
    system: actors.ActorSystem, frame: str | bytes, code: int
) -> None:
    client, server = await connection_pair(system, client_options=RAW, server_options=JSON_CLOSE)
    await client.send(frame)
    with trio.fail_after(5):
        peer = await wait_closed(client)
        local = await wait_closed(server)
    assert (peer.code, peer.by_peer) == (code, True)
    assert (local.code, local.by_peer) == (code, False)
    notice = await server.receive_message()
    assert isinstance(notice, transport.Undecodable)
    assert notice.error.close_code == code
    with pytest.raises(trio.EndOfChannel):
        await server.receive_message()


@attrs.define(eq=False)
class Collector(actors.Actor[transport.SubscriberMessage]):
    got: list[object] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)

    @actors.handler
    def received(self, message: transport.Received) -> None:
        self.got.append(message.data)

    @actors.handler
    def closed(self, message: transport.ConnectionClosed) -> None:
        self.got.append(message)
        self.done.set()


async def test_subscriber_receives_decoded_objects_and_undecodable_notices(
    system: actors.ActorSystem,
) -> None:
    collector = Collector()
    subscriber = await system.spawn(collector)
    _client, server = await connection_pair(
        system, client_options=JSON, server_options=RAW, subscriber=subscriber
    )
    await server.send('{"type":"join","room":"a"}')
    await server.send("garbage")
    await server.send('{"type":"leave","room":"a"}')
    await server.close()
    with trio.fail_after(5):
        await collector.done.wait()
    joined, notice, left, closed = collector.got
    assert (joined, left) == (Join("a"), Leave("a"))
    assert isinstance(notice, transport.Undecodable)
    assert isinstance(notice.error, _codec.InvalidJsonError)
    assert closed == transport.ConnectionClosed(1000, "", by_peer=True)


async def test_receive_of_raw_frames_on_a_decoding_connection_is_a_type_error(
    system: actors.ActorSystem,
) -> None:
    client, server = await connection_pair(system, client_options=RAW, server_options=JSON)
    with pytest.raises(TypeError, match="receive_message"):
        await server.receive()
    with pytest.raises(TypeError, match="receive_message"):
        async for _ in server:
            pass
    await client.send('{"type":"leave","room":"r"}')
    assert await server.receive_message() == Leave("r")
    await client.close()


@attrs.frozen
class BrokenCodec:
    """A custom codec with a bug: it raises something other than DecodeError."""

    def encode(self, message: object, /) -> str | bytes:
        return str(message)

    def decode(self, frame: str | bytes, /) -> object:
        if frame == "boom":
            raise ZeroDivisionError("codec bug")
        return frame


async def test_a_custom_codec_that_raises_is_contained_as_bad_input(
    system: actors.ActorSystem,
) -> None:
    options = transport.ConnectionOptions(ping_interval=None, codec=BrokenCodec())
    client, server = await connection_pair(system, client_options=RAW, server_options=options)
    await client.send("boom")
    await client.send("fine")
    notice = await server.receive_message()
    assert isinstance(notice, transport.Undecodable)
    assert isinstance(notice.error.__cause__, ZeroDivisionError)
    assert await server.receive_message() == "fine"
    await client.close()


# -- a real server on loopback ----------------------------------------------------------


@attrs.frozen
class Problem:
    error: str


REPLIES = JsonCodec(ChatMessage, Join, Leave, Problem, tags={ChatMessage: "chat"})


async def chat_handler(connection: transport.WebSocketConnection) -> None:
    async for message in connection.messages():
        match message:
            case ChatMessage(text=text, author=author):
                await connection.send_message(ChatMessage(text.upper(), author))
            case Join(room=room) | Leave(room=room):
                await connection.send_message(Leave(room, "echo"))
            case transport.Undecodable(error=error):
                with contextlib.suppress(actors.ActorStoppedError):
                    await connection.send_message(Problem(type(error).__name__))


@contextlib.asynccontextmanager
async def json_server(
    system: actors.ActorSystem, policy: DecodePolicy
) -> AsyncIterator[transport.WebSocketServer]:
    options = transport.ConnectionOptions(ping_interval=None, codec=REPLIES, on_decode_error=policy)
    async with trio.open_nursery() as nursery:
        server: transport.WebSocketServer = await nursery.start(
            functools.partial(
                transport.serve_websocket, system, chat_handler, "127.0.0.1", 0, options=options
            )
        )
        yield server
        nursery.cancel_scope.cancel()


async def test_server_with_json_codec_receives_typed_objects_and_skips_garbage(
    system: actors.ActorSystem,
) -> None:
    client_options = transport.ConnectionOptions(ping_interval=None, codec=REPLIES)
    with trio.fail_after(10):
        async with json_server(system, DecodePolicy.SKIP) as server:
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with transport.open_websocket_client(system, url, options=client_options) as ws:
                await ws.send_message(ChatMessage("hi", ALICE))
                assert await ws.receive_message() == ChatMessage("HI", ALICE)
                await ws.send('{"type":"chat","text":')  # garbage, sent raw
                assert await ws.receive_message() == Problem("InvalidJsonError")
                await ws.send('{"type":"join","room":"r","invited":"x"}')
                assert await ws.receive_message() == Problem("InvalidFieldsError")
                await ws.send_message(Join("r"))
                assert await ws.receive_message() == Leave("r", "echo")
                assert ws.closed is None
            assert (await server.statistics()).accepted == 1


async def test_close_policy_closes_only_the_bad_client_with_1007(
    system: actors.ActorSystem,
) -> None:
    client_options = transport.ConnectionOptions(ping_interval=None, codec=REPLIES)
    with trio.fail_after(10):
        async with json_server(system, DecodePolicy.CLOSE) as server:
            url = f"ws://127.0.0.1:{server.port}/chat"
            async with transport.open_websocket_client(system, url, options=client_options) as good:
                await good.send_message(ChatMessage("before", ALICE))
                assert await good.receive_message() == ChatMessage("BEFORE", ALICE)
                bad = await transport.connect_websocket(system, url, options=RAW)
                await bad.send("{garbage")
                closed = await wait_closed(bad)
                assert (closed.code, closed.by_peer) == (1007, True)
                # A bare client sending a binary frame gets 1003.
                stream, raw = await raw_client(server.port)
                await stream.send_all(raw.send(wsproto.events.BytesMessage(data=b"\x00")))
                assert await raw_close_code(stream, raw) == 1003
                await stream.aclose()
                await good.send_message(ChatMessage("after", ALICE))
                assert await good.receive_message() == ChatMessage("AFTER", ALICE)
            assert server.ref.is_alive
