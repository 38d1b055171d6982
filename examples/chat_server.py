"""A chat server with rooms: every connection an actor, every room a topic.

::

    python -m examples.chat_server --port 8765 --http-port 8080

prints ``listening on ws://127.0.0.1:8765/`` and the address of the web page. The actors::

    /chat                  Chat: opens rooms and sessions, as its children
    /chat/room-lobby       Room: the member list; publishes on topic "room:lobby"
    /chat/session-3        Session: one per connection; subscribed to its rooms' topics
    /chat-server/connection-3   the connection actor (transport) that owns the socket

A client's message goes connection -> Session -> Room -> topic -> every member's Session ->
its connection. The Room is the only publisher of its topic, so everyone sees one order.

Slow members. The topic gives each member its own queue of ``room_buffer`` events, with the
policy ``DISCONNECT``: the Room publishes without ever waiting, so a member that stops reading
only fills its own queue; when that overflows the topic drops the member (counted, and a dead
letter) and, once the member has caught up with what was queued, tells it ``Lagged``. The
Session then announces the gap and closes its connection with 1013 (try again later). A member
that never reads again is ended by its connection: a frame that cannot be written within
``write_timeout`` aborts the connection, and the Room announces that the member left.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import signal
from collections.abc import Awaitable, Callable, Collection, Sequence

import attrs
import trio

import actors
import transport
from examples.chat_protocol import (
    AskWho,
    Joined,
    JoinRoom,
    LeaveRoom,
    Left,
    Members,
    Posted,
    Problem,
    ProtocolError,
    RoomEvent,
    SayInRoom,
    ServerMessage,
    decode_client,
    encode_server,
)
from examples.static_page import chat_page_files, serve_static

#: Events queued per member before the room's topic drops that member.
ROOM_BUFFER = 64
#: A session's mailbox: room events and client messages wait here.
SESSION_MAILBOX = 16
MAX_ROOMS = 100
#: Connection options of the chat server (the transport's defaults: keepalive every 20 s).
OPTIONS = transport.ConnectionOptions()

#: Called with every event a room publishes (the demo prints them).
OnEvent = Callable[[RoomEvent], None]


def describe_exit(reason: actors.StopReason) -> str:
    """Why a member left, in words, from its session's stop reason."""
    if isinstance(reason, transport.ConnectionClosed):
        if reason.code in (transport.CloseCode.NORMAL_CLOSURE, transport.CloseCode.GOING_AWAY):
            return "disconnected"
        return f"connection lost ({reason.code}{': ' + reason.reason if reason.reason else ''})"
    if isinstance(reason, actors.Failed):
        return f"session failed: {reason.error!r}"
    return "gone"


# -- the room ---------------------------------------------------------------------------------


@attrs.frozen
class Enter(actors.Request[Members | Problem]):
    name: str
    session: actors.ActorRef[SessionMessage]


@attrs.frozen
class Speak:
    session: actors.ActorRef[SessionMessage]
    text: str


@attrs.frozen
class Exit:
    session: actors.ActorRef[SessionMessage]
    reason: str


@attrs.frozen
class Who(actors.Request[Members]):
    pass


RoomMessage = Enter | Speak | Exit | Who | actors.Terminated


@attrs.define
class Member:
    name: str
    subscription: actors.Subscription


@attrs.define(eq=False)
class Room(actors.Actor[RoomMessage]):
    """One room: who is in it, and the topic its events go out on."""

    name: str
    topic: actors.Topic[RoomEvent]
    on_event: OnEvent | None = None
    members: dict[actors.ActorRef[SessionMessage], Member] = attrs.Factory(dict)

    @actors.handler
    def enter(self, message: Enter) -> Members | Problem:
        if any(member.name == message.name for member in self.members.values()):
            return Problem(f"the name {message.name!r} is taken in {self.name!r}")
        if message.session in self.members:
            return Problem(f"you are already in {self.name!r}")
        # Subscribe first, publish second: the newcomer sees its own arrival.
        subscription = self.topic.subscribe_actor(message.session)
        self.ctx.watch(message.session)
        self.members[message.session] = Member(message.name, subscription)
        self._publish(Joined(self.name, message.name))
        return self._members()

    @actors.handler
    def speak(self, message: Speak) -> None:
        member = self.members.get(message.session)
        if member is not None:
            self._publish(Posted(self.name, member.name, message.text))

    @actors.handler
    def exit(self, message: Exit) -> None:
        self._remove(message.session, message.reason)

    @actors.handler
    def who(self, message: Who) -> Members:
        return self._members()

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        for session in list(self.members):
            if session == message.ref:
                self._remove(session, describe_exit(message.reason))

    def _remove(self, session: actors.ActorRef[SessionMessage], reason: str) -> None:
        member = self.members.pop(session, None)
        if member is None:
            return
        member.subscription.unsubscribe()
        self.ctx.unwatch(session)
        self._publish(Left(self.name, member.name, reason))

    def _members(self) -> Members:
        return Members(self.name, tuple(member.name for member in self.members.values()))

    def _publish(self, event: RoomEvent) -> None:
        # DISCONNECT never makes a publisher wait: a full member queue is that member's problem.
        self.topic.publish_nowait(event)
        if self.on_event is not None:
            self.on_event(event)


# -- the session ------------------------------------------------------------------------------


@attrs.frozen
class FromClient:
    """One message the client sent, as text (or bytes, which is refused)."""

    data: str | bytes


SessionMessage = FromClient | Joined | Left | Posted | actors.Lagged | actors.Terminated


@attrs.define(eq=False)
class Session(actors.Actor[SessionMessage]):
    """One client: parses what it sends, talks to rooms, writes room events to it."""

    connection: transport.WebSocketConnection
    chat: actors.ActorRef[ChatMessage]
    rooms: dict[str, actors.ActorRef[RoomMessage]] = attrs.Factory(dict)

    async def on_start(self) -> None:
        # The session lives exactly as long as its connection, and stops with its reason.
        self.ctx.watch(self.connection.ref)
        await trio.lowlevel.checkpoint()

    @actors.handler
    async def from_client(self, message: FromClient) -> None:
        try:
            request = decode_client(message.data)
        except ProtocolError as exc:
            await self._send(Problem(str(exc)))
            return
        if isinstance(request, JoinRoom):
            await self._join(request)
            return
        room = self.rooms.get(request.room)
        if room is None:
            await self._send(Problem(f"join {request.room!r} first"))
        elif isinstance(request, SayInRoom):
            await room.tell(Speak(self.ctx.ref, request.text))
        elif isinstance(request, AskWho):
            await self._send(await room.ask(Who()))
        elif isinstance(request, LeaveRoom):
            del self.rooms[request.room]
            await room.tell(Exit(self.ctx.ref, "left the room"))

    async def _join(self, request: JoinRoom) -> None:
        if request.room in self.rooms:
            await self._send(Problem(f"you are already in {request.room!r}"))
            return
        room = await self.chat.ask(OpenRoom(request.room))
        if room is None:
            await self._send(Problem(f"no more rooms: this server holds {MAX_ROOMS}"))
            return
        reply = await room.ask(Enter(request.name, self.ctx.ref))
        if isinstance(reply, Members):
            self.rooms[request.room] = room
        await self._send(reply)

    @actors.handler
    async def room_event(self, message: Joined | Left | Posted) -> None:
        await self._send(message)

    @actors.handler
    async def lagged(self, message: actors.Lagged) -> None:
        # The room's topic dropped us: everything queued before the gap has been written.
        name = message.topic.removeprefix("room:")
        room = self.rooms.pop(name, None)
        if room is not None:
            await room.tell(Exit(self.ctx.ref, f"too slow: missed {message.dropped} messages"))
        await self._send(Problem(f"you fell behind in {name!r} and missed {message.dropped}"))
        # Behind whatever is still queued for the client; if it stalls again, the connection's
        # write deadline ends it.
        close = transport.Close(transport.CloseCode.TRY_AGAIN_LATER, "too slow")
        with contextlib.suppress(actors.ActorStoppedError):
            await self.connection.ref.tell(close)

    @actors.handler
    def terminated(self, message: actors.Terminated) -> None:
        # Our connection has ended: end the session with the connection's own reason.
        self.ctx.stop(message.reason)

    async def _send(self, message: ServerMessage) -> None:
        # Waits while the connection's queues are full: that is the backpressure that makes
        # a slow member's room queue fill up, and the room's policy deal with it.
        with contextlib.suppress(actors.ActorStoppedError):
            await self.connection.send(encode_server(message))


# -- the chat service -------------------------------------------------------------------------


@attrs.frozen
class OpenRoom(actors.Request[actors.ActorRef[RoomMessage] | None]):
    """The room called ``name``, created on first use (``None``: too many rooms)."""

    name: str


@attrs.frozen
class OpenSession(actors.Request[actors.ActorRef[SessionMessage]]):
    connection: transport.WebSocketConnection


ChatMessage = OpenRoom | OpenSession


@attrs.define(eq=False)
class Chat(actors.Actor[ChatMessage]):
    """The parent of every room and session: the one place they are spawned."""

    room_buffer: int = ROOM_BUFFER
    on_event: OnEvent | None = None
    rooms: dict[str, actors.ActorRef[RoomMessage]] = attrs.Factory(dict)
    sessions: int = 0

    @actors.handler
    async def open_room(self, message: OpenRoom) -> actors.ActorRef[RoomMessage] | None:
        room = self.rooms.get(message.name)
        if room is not None and room.is_alive:
            return room
        if len(self.rooms) >= MAX_ROOMS:
            return None
        topic: actors.Topic[RoomEvent] = actors.topic(
            self.ctx.system,
            f"room:{message.name}",
            policy=actors.OverflowPolicy.DISCONNECT,
            buffer=self.room_buffer,
        )
        room = await self.ctx.spawn(
            Room(message.name, topic, self.on_event), name=f"room-{len(self.rooms) + 1}"
        )
        self.rooms[message.name] = room
        return room

    @actors.handler
    async def open_session(self, message: OpenSession) -> actors.ActorRef[SessionMessage]:
        self.sessions += 1
        return await self.ctx.spawn(
            Session(message.connection, self.ctx.ref),
            name=f"session-{self.sessions}",
            mailbox_size=SESSION_MAILBOX,
        )


def chat_handler(
    chat: actors.ActorRef[ChatMessage],
) -> Callable[[transport.WebSocketConnection], Awaitable[None]]:
    """The per-connection code ``serve_websocket`` runs: hand every message to a Session."""

    async def serve_client(connection: transport.WebSocketConnection) -> None:
        session = await chat.ask(OpenSession(connection))
        async for data in connection:  # only this task reads the connection's inbound queue
            await session.tell(FromClient(data))

    return serve_client


# -- running it -------------------------------------------------------------------------------


@attrs.frozen
class ChatServer:
    """Where a running chat server listens."""

    url: str
    page_url: str | None
    server: transport.WebSocketServer
    chat: actors.ActorRef[ChatMessage]


def page_origins(host: str, http_port: int) -> set[str]:
    """The ``Origin`` a browser sends from the page served on ``http_port``."""
    return {f"http://{name}:{http_port}" for name in (host, "127.0.0.1", "localhost")}


async def serve_chat(
    system: actors.ActorSystem,
    host: str,
    port: int,
    *,
    http_port: int | None = None,
    allowed_origins: Collection[str] = (),
    room_buffer: int = ROOM_BUFFER,
    options: transport.ConnectionOptions = OPTIONS,
    on_event: OnEvent | None = None,
    task_status: trio.TaskStatus[ChatServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the chat (and its page, if ``http_port`` is given) until cancelled."""
    chat = await system.spawn(Chat(room_buffer, on_event), name="chat")
    try:
        async with trio.open_nursery() as nursery:
            origins = set(allowed_origins)
            page_url = None
            if http_port is not None:
                http_port = await nursery.start(serve_static, chat_page_files(), host, http_port)
                origins |= page_origins(host, http_port)
            # Browsers always send Origin; a page from anywhere else is refused with 403.
            # Clients that send no Origin (bots, scripts) are not browsers and pass.
            policy = transport.HandshakePolicy(allowed_origins=origins)
            server: transport.WebSocketServer = await nursery.start(
                functools.partial(
                    transport.serve_websocket,
                    system,
                    chat_handler(chat),
                    host,
                    port,
                    policy=policy,
                    options=options,
                    name="chat-server",
                )
            )
            url = f"ws://{host}:{server.port}/"
            if http_port is not None:
                page_url = f"http://{host}:{http_port}/?ws={url}"
            task_status.started(ChatServer(url, page_url, server, chat))
    finally:
        # The server has closed its connections (1001); now the rooms and sessions go.
        with trio.move_on_after(actors.DEFAULT_STOP_TIMEOUT, shield=True):
            await chat.stop()


async def wait_for_signal(seconds: float | None = None) -> None:
    """Return at Ctrl-C or SIGTERM (or after ``seconds``)."""
    with trio.move_on_after(math.inf if seconds is None else seconds):
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


async def main(arguments: argparse.Namespace) -> None:
    async with actors.open_system("chat") as system:
        async with trio.open_nursery() as nursery:
            started: ChatServer = await nursery.start(
                functools.partial(
                    serve_chat,
                    system,
                    arguments.host,
                    arguments.port,
                    http_port=None if arguments.no_page else arguments.http_port,
                    allowed_origins=arguments.allow_origin,
                )
            )
            print(f"listening on {started.url}", flush=True)
            if started.page_url is not None:
                print(f"open {started.page_url} in a browser", flush=True)
            await wait_for_signal()
            nursery.cancel_scope.cancel()


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat_server", description="A WebSocket chat with rooms."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="WebSocket port (0: any free one)")
    parser.add_argument("--http-port", type=int, default=8080, help="port of the web page")
    parser.add_argument("--no-page", action="store_true", help="don't serve the web page")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also admit browsers from this origin (e.g. https://chat.example.com)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_arguments())
