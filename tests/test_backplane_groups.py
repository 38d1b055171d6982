"""Cluster-wide groups and remote watches: the same behaviour on both backplanes, in one process.

Across processes (and with SIGKILL) they are tested in ``test_backplane_cluster``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
import pytest
import trio

import actors
import transport
from tests.redis_support import (
    COREDIS_MARKS,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    redis_server as redis_server,
)

pytestmark = COREDIS_MARKS

# Redis is a real server: every wait is bounded in real time.
STEP = 10.0


@attrs.define(eq=False)
class Member(actors.Actor[str | actors.Terminated]):
    """Records what it is told, and the Terminated notices it gets."""

    told: list[str] = attrs.field(factory=list)
    got: trio.Event = attrs.field(factory=trio.Event)
    terminated: list[actors.Terminated] = attrs.field(factory=list)
    notice: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_text(self, message: str) -> None:
        self.told.append(message)
        self.got.set()

    @actors.handler
    async def on_terminated(self, message: actors.Terminated) -> None:
        self.terminated.append(message)
        self.notice.set()


@pytest.fixture(params=["local", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@contextlib.asynccontextmanager
async def open_backplane(
    system: actors.ActorSystem, kind: str, server: RedisServer | None
) -> AsyncIterator[transport.backplane.Backplane]:
    if kind == "local":
        async with transport.backplane.open_local_backplane(system) as backplane:
            yield backplane
    else:
        assert server is not None
        async with transport.backplane.open_redis_backplane(
            system, server.url, name_ttl=0.6, heartbeat=0.2
        ) as backplane:
            yield backplane


@pytest.fixture
def server(kind: str, request: pytest.FixtureRequest) -> RedisServer | None:
    if kind == "local":
        return None
    found: RedisServer = request.getfixturevalue("redis_server")
    return found


async def test_join_members_changes_and_leave(kind: str, server: RedisServer | None) -> None:
    async with actors.open_system("test") as system, open_backplane(system, kind, server) as bp:
        alice = await system.spawn(Member(), name="alice")
        bob = await system.spawn(Member(), name="bob")
        a = transport.backplane.Backplane.Member(bp.node, alice.path)
        b = transport.backplane.Backplane.Member(bp.node, bob.path)
        assert await bp.group_members("room") == ()
        await bp.join_group("room", alice)
        with trio.fail_after(STEP):
            async with bp.group_changes("room") as (members, changes):
                assert members == (a,)
                await bp.join_group("room", bob)
                await bp.join_group("room", bob)  # twice is one membership
                assert await changes.receive() == transport.backplane.Backplane.GroupChange(
                    "room", b, True
                )
                assert set(await bp.group_members("room")) == {a, b}
                await bp.leave_group("room", alice)
                assert await changes.receive() == transport.backplane.Backplane.GroupChange(
                    "room", a, False, "left"
                )
                await bob.stop()
                assert await changes.receive() == transport.backplane.Backplane.GroupChange(
                    "room", b, False, "stopped"
                )
                assert await bp.group_members("room") == ()


async def test_broadcast_reaches_every_member_and_route_one(
    kind: str, server: RedisServer | None
) -> None:
    async with actors.open_system("test") as system, open_backplane(system, kind, server) as bp:
        members = [Member() for _ in range(3)]
        refs = [await system.spawn(member) for member in members]
        for ref in refs:
            await bp.join_group("workers", ref)
        with trio.fail_after(STEP):
            await bp.broadcast("workers", "hello")
            for member in members:
                await member.got.wait()
            assert [member.told for member in members] == [["hello"]] * 3
            chosen = await bp.route("workers", "job")
            assert chosen.path in {ref.path for ref in refs}
            target = members[[ref.path for ref in refs].index(chosen.path)]
            while target.told != ["hello", "job"]:
                target.got = trio.Event()
                await target.got.wait()
        assert sum(member.told.count("job") for member in members) == 1
        with pytest.raises(transport.backplane.RemoteActorUnavailableError, match="nobody-here"):
            await bp.route("nobody-here", "job")


async def test_broadcast_to_a_full_member_goes_to_dead_letters(
    kind: str, server: RedisServer | None
) -> None:
    async with actors.open_system("test") as system, open_backplane(system, kind, server) as bp:
        stuck = Stuck()
        await bp.join_group("busy", await system.spawn(stuck, mailbox_size=1))
        with system.dead_letters.subscribe() as letters, trio.fail_after(STEP):
            await bp.broadcast("busy", "m0")
            await stuck.handling.wait()
            await bp.broadcast("busy", "m1")  # waits in the mailbox of one
            await bp.broadcast("busy", "m2")  # no room: dropped, not waited for
            letter = await letters.receive()
        assert letter.reason is actors.DeadLetterReason.DROPPED
        assert letter.message == "m2"


@attrs.define(eq=False)
class Stuck(actors.Actor[str]):
    """Never finishes handling its first message."""

    handling: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_text(self, message: str) -> None:
        self.handling.set()
        await trio.sleep_forever()


async def test_watching_a_remote_ref(kind: str, server: RedisServer | None) -> None:
    async with actors.open_system("test") as system, open_backplane(system, kind, server) as bp:
        watcher = Member()
        watcher_ref = await system.spawn(watcher)
        held = await system.spawn(Member())
        await bp.register("held", held)
        remote = bp.remote("held")
        with trio.fail_after(STEP):
            await remote.watch(watcher_ref)
            await held.stop()
            await watcher.notice.wait()
            (notice,) = watcher.terminated
            # Terminated.ref is typed as a local ActorRef; a remote watch puts the RemoteRef there.
            watched: object = remote
            assert notice.ref is watched
            assert isinstance(notice.reason, actors.Normal)
            # Watching a name nobody holds: at once.
            watcher.notice = trio.Event()
            gone = bp.remote("never-held")
            await gone.watch(watcher_ref)
            await watcher.notice.wait()
        watched_gone: object = gone
        assert watcher.terminated[1].ref is watched_gone
        reason = watcher.terminated[1].reason
        assert isinstance(reason, actors.Failed)
        assert isinstance(reason.error, transport.backplane.RemoteActorUnavailableError)


async def test_a_slow_follower_loses_the_oldest_changes_counted(
    kind: str, server: RedisServer | None
) -> None:
    async with actors.open_system("test") as system, open_backplane(system, kind, server) as bp:
        refs = [await system.spawn(Member()) for _ in range(3)]
        with trio.fail_after(STEP):
            async with bp.group_changes("crowd", buffer=1) as (members, changes):
                assert members == ()
                for ref in refs:
                    await bp.join_group("crowd", ref)
                # Each join arrives (the feed is fed as they do); only the newest stays.
                while changes.statistics().accepted < len(refs):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                change = await changes.receive()
        assert change.member.path == refs[-1].path
        assert changes.statistics().dropped == len(refs) - 1
        # What was dropped is read again from the members.
        assert {m.path for m in await bp.group_members("crowd")} == {r.path for r in refs}
