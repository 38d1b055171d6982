"""A chat server with rooms: every connection an actor, every room a topic.

::

    trio-actors chat --port 8765 --http-port 8080

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

Several servers. With ``--redis URL`` the rooms span every chat server started with the same
URL: each server keeps its own Room actor per room, but the Room publishes on a
``transport.backplane.DistributedTopic`` named after the room, so whatever it publishes (messages, joins,
departures) reaches the members on every server, in one order (Redis's). Each Room also
subscribes to its room's topic to know who is in the room on the other servers (it asks them
with ``RollCall`` when it opens, and again when a server dies: every ``Chat`` actor joins the
cluster-wide group ``chat-servers`` and follows it). The link is at most once: after a reconnection to Redis,
the members are told that messages may have been missed. Without ``--redis``, each room's topic
is an ``system.topic <actors.ActorSystem.topic>`` in this process, and nothing leaves it::

    trio-actors chat --port 8765 --redis redis://127.0.0.1:6379/0
    trio-actors chat --port 8766 --http-port 8081 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

import attrs
import trio

import actors
import transport
import transport.workers
from transport.apps.arguments import port, require_extra
from transport.apps.chat_protocol import (
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
from transport.apps.static_page import chat_page_files, serve_static

logger = logging.getLogger("transport.apps.chat_server")

#: Events queued per member before the room's topic drops that member.
ROOM_BUFFER = 64
#: A session's mailbox: room events and client messages wait here.
SESSION_MAILBOX = 16
MAX_ROOMS = 100
#: Connection options of the chat server (the transport's defaults: keepalive every 20 s).
OPTIONS = transport.ConnectionOptions()

#: Seconds a room may wait for its backplane topic to be subscribed before a join is refused.
ROOM_OPEN_TIMEOUT = 3.0

#: Called with every event a room publishes (the demo prints them).
OnEvent = Callable[[RoomEvent], None]


def room_topic(room: str) -> str:
    """The name of the topic a room publishes on (in this process, or on the backplane)."""
    return f"room:{room}"


# -- what the rooms of several servers say to each other, on the room's backplane topic ------


@attrs.frozen
class RollCall:
    """Published by a room when it opens on a server: who is in this room elsewhere?"""

    node: str


@attrs.frozen
class Present:
    """A room's answer to a ``RollCall``: its members on the server ``node``."""

    node: str
    names: tuple[str, ...]


@attrs.frozen
class ServerLost:
    """Told to every room by its chat service when a chat server on the backplane has died
    (the cluster-wide group ``chat-servers`` reports it ``"lost"``): call the roll again."""

    node: str


#: The cluster-wide group every chat server's ``Chat`` actor joins, to notice the dead.
CHAT_SERVERS = "chat-servers"

#: What a room publishes on its topic.
RoomTopicMessage = Joined | Left | Posted | RollCall | Present
#: What the topic's subscribers receive: that, and gap notices from the backplane.
RoomTopicEvent = RoomTopicMessage | transport.backplane.BackplaneGap
#: How a room's topic messages travel through Redis.
ROOM_CODEC = transport.JsonCodec(Joined, Left, Posted, RollCall, Present)


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


RoomMessage = (
    Enter
    | Speak
    | Exit
    | Who
    | actors.Terminated
    # Only with a backplane: the room's own subscription to its topic.
    | RoomTopicEvent
    | actors.Lagged
    | ServerLost
)


@attrs.define
class Member:
    name: str
    subscription: actors.Subscription


@attrs.define(eq=False)
class Room(actors.Actor[RoomMessage]):
    """One room: who is in it, and the topic its events go out on.

    ``topic`` is what members subscribe to. With a backplane, ``shared`` is the room's
    distributed topic (``topic`` is its local end): the room publishes there, and keeps in
    ``elsewhere`` the names of the members connected to other servers.
    """

    name: str
    topic: actors.Topic[RoomTopicEvent]
    on_event: OnEvent | None = None
    shared: transport.backplane.DistributedTopic[RoomTopicMessage] | None = None
    node: str = ""
    members: dict[actors.ActorRef[SessionMessage], Member] = attrs.Factory(dict)
    elsewhere: set[str] = attrs.Factory(set)

    async def on_start(self) -> None:
        if self.shared is not None:
            self.topic.subscribe_actor(self.ctx.ref)
            await self._publish(RollCall(self.node))
        await trio.lowlevel.checkpoint()

    @actors.handler
    async def enter(self, message: Enter) -> Members | Problem:
        if message.name in self.elsewhere or any(
            member.name == message.name for member in self.members.values()
        ):
            return Problem(f"the name {message.name!r} is taken in {self.name!r}")
        if message.session in self.members:
            return Problem(f"you are already in {self.name!r}")
        # Subscribe first, publish second: the newcomer sees its own arrival.
        subscription = self.topic.subscribe_actor(message.session)
        self.ctx.watch(message.session)
        self.members[message.session] = Member(message.name, subscription)
        if not await self._publish(Joined(self.name, message.name)):
            del self.members[message.session]
            subscription.unsubscribe()
            self.ctx.unwatch(message.session)
            return Problem(f"cannot join {self.name!r} now: the chat servers are cut off")
        return self._members()

    @actors.handler
    async def speak(self, message: Speak) -> None:
        member = self.members.get(message.session)
        if member is None:
            return await trio.lowlevel.checkpoint()
        if not await self._publish(Posted(self.name, member.name, message.text)):
            # Never wait on a member: if its mailbox is full, it misses the notice.
            notice = Problem(f"not sent to {self.name!r}: the chat servers are cut off")
            with contextlib.suppress(trio.WouldBlock, actors.ActorStoppedError):
                message.session.tell_nowait(notice)

    @actors.handler
    async def exit(self, message: Exit) -> None:
        await self._remove(message.session, message.reason)

    @actors.handler
    def who(self, message: Who) -> Members:
        return self._members()

    @actors.handler
    async def terminated(self, message: actors.Terminated) -> None:
        for session in list(self.members):
            if session == message.ref:
                await self._remove(session, describe_exit(message.reason))
        await trio.lowlevel.checkpoint()

    async def _remove(self, session: actors.ActorRef[SessionMessage], reason: str) -> None:
        member = self.members.pop(session, None)
        if member is None:
            return await trio.lowlevel.checkpoint()
        member.subscription.unsubscribe()
        self.ctx.unwatch(session)
        await self._publish(Left(self.name, member.name, reason))

    def _members(self) -> Members:
        here = [member.name for member in self.members.values()]
        return Members(self.name, (*here, *sorted(self.elsewhere)))

    async def _publish(self, message: RoomTopicMessage) -> bool:  # noqa: ASYNC910 - see below
        """Publish to every member (on every server); False if the backplane is unreachable."""
        if self.shared is None:
            # DISCONNECT never makes a publisher wait: a full member queue is that member's
            # problem. No checkpoint either: the room's handlers stay as fast as they were.
            self.topic.publish_nowait(message)
        else:
            try:
                await self.shared.publish(message)
            except transport.backplane.BackplaneUnavailableError as exc:
                logger.warning("room %r: %s", self.name, exc)
                return False
        if self.on_event is not None and isinstance(message, Joined | Left | Posted):
            self.on_event(message)
        return True

    # -- with a backplane: what the rooms of the other servers publish -------------------------

    @actors.handler
    def room_event(self, message: Joined | Left | Posted) -> None:
        here = {member.name for member in self.members.values()}
        if isinstance(message, Joined) and message.name not in here:
            self.elsewhere.add(message.name)
        elif isinstance(message, Left) and message.name not in here:
            self.elsewhere.discard(message.name)

    @actors.handler
    async def roll_call(self, message: RollCall) -> None:
        if message.node != self.node and self.members:
            names = tuple(member.name for member in self.members.values())
            await self._publish(Present(self.node, names))
        await trio.lowlevel.checkpoint()

    @actors.handler
    def present(self, message: Present) -> None:
        if message.node != self.node:
            self.elsewhere.update(message.names)

    @actors.handler
    async def gap(
        self, message: transport.backplane.BackplaneGap | actors.Lagged | ServerLost
    ) -> None:
        # We may have missed joins and departures, or a server died with its members: forget
        # the other servers' members and ask them again (the dead leave no ghosts after this).
        if isinstance(message, actors.Lagged):
            self.topic.subscribe_actor(self.ctx.ref)
        self.elsewhere.clear()
        await self._publish(RollCall(self.node))


# -- the session ------------------------------------------------------------------------------


@attrs.frozen
class FromClient:
    """One message the client sent, as text (or bytes, which is refused)."""

    data: str | bytes


SessionMessage = RoomTopicEvent | FromClient | Problem | actors.Lagged | actors.Terminated


@attrs.define(eq=False)
class Session(actors.Actor[SessionMessage]):
    """One client: parses what it sends, talks to rooms, writes room events to it."""

    connection: transport.WebSocketConnection
    chat: actors.ActorRef[ChatMessage]
    rooms: dict[str, actors.ActorRef[RoomMessage]] = attrs.Factory(dict)
    #: The name of each joined room's topic (as ``Lagged`` names it) -> the room's name.
    topics: dict[str, str] = attrs.Factory(dict)

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
            self.topics = {t: r for t, r in self.topics.items() if r != request.room}
            await room.tell(Exit(self.ctx.ref, "left the room"))

    async def _join(self, request: JoinRoom) -> None:
        if request.room in self.rooms:
            await self._send(Problem(f"you are already in {request.room!r}"))
            return
        opened = await self.chat.ask(OpenRoom(request.room))
        if isinstance(opened, Problem):
            await self._send(opened)
            return
        reply = await opened.room.ask(Enter(request.name, self.ctx.ref))
        if isinstance(reply, Members):
            self.rooms[request.room] = opened.room
            self.topics[opened.topic] = request.room
        await self._send(reply)

    @actors.handler
    async def room_event(self, message: Joined | Left | Posted) -> None:
        await self._send(message)

    @actors.handler
    def roll_call(self, message: RollCall | Present) -> None:
        """Rooms talking among themselves, on their topic: nothing for the client."""

    @actors.handler
    async def problem(self, message: Problem) -> None:
        await self._send(message)

    @actors.handler
    async def backplane_gap(self, message: transport.backplane.BackplaneGap) -> None:
        # The backplane lost Redis for a while: say so, the chat goes on.
        room = message.topic.removeprefix(room_topic(""))
        down = message.until - message.since
        notice = (
            f"the chat servers were cut off for {down:.1f}s: messages in {room!r} "
            "may have been missed"
        )
        await self._send(Problem(notice))

    @actors.handler
    async def lagged(self, message: actors.Lagged) -> None:
        # The room's topic dropped us: everything queued before the gap has been written.
        name = self.topics.pop(message.topic, message.topic)
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
class OpenedRoom:
    """A room, and the name of the topic its members are subscribed to."""

    room: actors.ActorRef[RoomMessage]
    topic: str


@attrs.frozen
class OpenRoom(actors.Request[OpenedRoom | Problem]):
    """The room called ``name``, created on first use."""

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
    backplane: transport.backplane.Backplane | None = None
    rooms: dict[str, OpenedRoom] = attrs.Factory(dict)
    sessions: int = 0

    async def on_start(self) -> None:
        if self.backplane is not None:
            self.ctx.start_soon(self._follow_servers, self.backplane, name="follow-servers")
        await trio.lowlevel.checkpoint()

    async def _follow_servers(self, backplane: transport.backplane.Backplane) -> None:
        """Tell every room when another chat server dies, so that its members stop being
        listed (and their names taken) within the backplane's presence ttl."""
        try:
            await backplane.join_group(CHAT_SERVERS, self.ctx.ref)
            async with backplane.group_changes(CHAT_SERVERS) as (_, changes):
                async for change in changes:
                    if change.joined or change.reason != "lost":
                        continue
                    for opened in self.rooms.values():
                        with contextlib.suppress(trio.WouldBlock, actors.ActorStoppedError):
                            opened.room.tell_nowait(ServerLost(change.member.node))
        except transport.backplane.BackplaneUnavailableError as exc:
            logger.warning("chat: cannot follow the other chat servers: %s", exc)

    @actors.handler
    async def open_room(self, message: OpenRoom) -> OpenedRoom | Problem:
        opened = self.rooms.get(message.name)
        if opened is not None and opened.room.is_alive:
            await trio.lowlevel.checkpoint()
            return opened
        if len(self.rooms) >= MAX_ROOMS:
            await trio.lowlevel.checkpoint()
            return Problem(f"no more rooms: this server holds {MAX_ROOMS}")
        policy = actors.OverflowPolicy.DISCONNECT
        shared: transport.backplane.DistributedTopic[RoomTopicMessage] | None = None
        if self.backplane is None:
            topic: actors.Topic[RoomTopicEvent] = self.ctx.system.topic(
                room_topic(message.name), policy=policy, buffer=self.room_buffer
            )
        else:
            # Subscribed on the backplane when this returns (Redis may be away: bounded).
            with trio.move_on_after(ROOM_OPEN_TIMEOUT):
                shared = await self.backplane.topic(
                    room_topic(message.name), policy=policy, buffer=self.room_buffer
                )
            if shared is None:
                return Problem(f"cannot open {message.name!r} now: the chat servers are cut off")
            topic = shared.local
        node = "" if self.backplane is None else self.backplane.node
        room = await self.ctx.spawn(
            Room(message.name, topic, self.on_event, shared, node),
            name=f"room-{len(self.rooms) + 1}",
        )
        opened = self.rooms[message.name] = OpenedRoom(room, topic.name)
        return opened

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
    backplane: transport.backplane.Backplane | None = None


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
    backplane: transport.backplane.Backplane | None = None,
    worker: transport.workers.WorkerInfo | None = None,
    task_status: trio.TaskStatus[ChatServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the chat (and its page, if ``http_port`` is given) until cancelled.

    With a ``backplane`` (opened with ``codec=ROOM_CODEC``), the rooms are shared with every
    chat server on the same backplane; without, they live in this process. As a ``worker``
    it shares its port with the other workers (``reuse_port``) and names itself to every
    client in the response header ``Chat-Worker`` (its number).
    """
    chat = await system.spawn(Chat(room_buffer, on_event, backplane), name="chat")
    try:
        async with trio.open_nursery() as nursery:
            origins = set(allowed_origins)
            page_url = None
            if http_port is not None:
                http_port = await nursery.start(serve_static, chat_page_files(), host, http_port)
                origins |= page_origins(host, http_port)
            # Browsers always send Origin; a page from anywhere else is refused with 403.
            # Clients that send no Origin (bots, scripts) are not browsers and pass.
            policy = transport.HandshakePolicy(
                allowed_origins=origins,
                on_handshake=None if worker is None else worker_header(worker.index),
            )
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
                    reuse_port=worker is not None,
                )
            )
            url = f"ws://{host}:{server.port}/"
            if http_port is not None:
                page_url = f"http://{host}:{http_port}/?ws={url}"
            task_status.started(ChatServer(url, page_url, server, chat, backplane))
    finally:
        # The server has closed its connections (1001); now the rooms and sessions go.
        with trio.move_on_after(actors.DEFAULT_STOP_TIMEOUT, shield=True):
            await chat.stop()


#: The response header that names the worker a client landed on.
WORKER_HEADER = "Chat-Worker"


def worker_header(
    index: int,
) -> Callable[[transport.HandshakeRequest], Awaitable[transport.Accept]]:
    """A handshake hook that accepts and adds ``Chat-Worker: index`` to the response."""
    accept = transport.Accept(headers=((WORKER_HEADER, str(index)),))

    async def name_the_worker(request: transport.HandshakeRequest) -> transport.Accept:
        await trio.lowlevel.checkpoint()
        return accept

    return name_the_worker


async def wait_for_signal(seconds: float | None = None) -> None:
    """Return at Ctrl-C or SIGTERM (or after ``seconds``)."""
    with trio.move_on_after(math.inf if seconds is None else seconds):
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                return


@contextlib.asynccontextmanager
async def open_rooms_backplane(
    system: actors.ActorSystem, redis_url: str | None
) -> AsyncIterator[transport.backplane.Backplane | None]:
    """The Redis backplane at ``redis_url`` for the rooms, or ``None``: rooms in this process."""
    if redis_url is None:
        await trio.lowlevel.checkpoint()
        yield None
        return
    async with transport.backplane.open_redis_backplane(
        system, redis_url, codec=ROOM_CODEC
    ) as backplane:
        yield backplane


def describe_backplane(backplane: transport.backplane.Backplane) -> str:
    """Where the rooms live, in words (the password of a Redis URL masked)."""
    stats = backplane.statistics()
    return f"rooms are shared through {stats.url} (this server is node {stats.node})"


async def main(arguments: argparse.Namespace) -> None:
    """``trio-actors chat``: serve until Ctrl-C or SIGTERM, then close every connection (1001).

    Started by the parent of ``--workers N`` (:mod:`transport.apps.chat_workers`), it is
    one of the workers: it listens on their shared port and says so to the parent only.
    """
    worker = transport.workers.current_worker()
    async with (
        actors.open_system("chat") as system,
        open_rooms_backplane(system, arguments.redis) as backplane,
        trio.open_nursery() as nursery,
    ):
        started: ChatServer = await nursery.start(
            functools.partial(
                serve_chat,
                system,
                arguments.host,
                arguments.port if worker is None else worker.port,
                http_port=None if arguments.no_page else arguments.http_port,
                allowed_origins=arguments.allow_origin,
                backplane=backplane,
                worker=worker,
            )
        )
        if worker is None:
            print(f"listening on {started.url}", flush=True)
            if started.page_url is not None:
                print(f"open {started.page_url} in a browser", flush=True)
            if backplane is not None:
                print(describe_backplane(backplane), flush=True)
            await wait_for_signal()
        else:
            # The parent says where the workers listen, once; it stops them with SIGTERM.
            # This line reaches its output as "worker N: listening on ... (pid P)".
            print(f"listening on {started.url} (pid {os.getpid()})", flush=True)
            await worker.report_listening()
            async with trio.open_nursery() as waiting:
                for wait in (wait_for_signal, worker.wait_parent_exit):
                    waiting.start_soon(_first_to_return, wait, waiting.cancel_scope)
        nursery.cancel_scope.cancel()


async def _first_to_return(wait: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``trio-actors chat``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=port, default=8765, help="WebSocket port (0: any free one)")
    parser.add_argument("--http-port", type=port, default=8080, help="port of the web page")
    parser.add_argument("--no-page", action="store_true", help="don't serve the web page")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also admit browsers from this origin (e.g. https://chat.example.com)",
    )
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share the rooms with every chat server using this Redis "
        "(e.g. redis://127.0.0.1:6379/0); default: rooms in this process only",
    )


def check_arguments(arguments: argparse.Namespace) -> None:
    """``--redis`` needs the ``redis`` extra."""
    if arguments.redis is not None:
        require_extra("coredis", "redis", "--redis")
