"""Groups, presence and remote watches across real processes, through a real redis-server.

Child processes are killed with SIGKILL: nothing of theirs says goodbye, and the
others notice through the heartbeat ttl alone.
"""

from __future__ import annotations

import attrs
import pytest
import trio

import actors
import transport
from tests.redis_support import (
    CODEC,
    Echo,
    Echoed,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    redis_server as redis_server,
    start_child,
)

pytestmark = [
    pytest.mark.usefixtures("collect_coredis_garbage"),
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

# Real processes and a real server: every wait is bounded in real time.
STEP = 10.0
#: The presence ttl and heartbeat of every process here (short, so death shows quickly).
TTL, HEARTBEAT = "0.8", "0.2"


@attrs.define(eq=False)
class Watcher(actors.Actor[actors.Terminated]):
    notices: list[actors.Terminated] = attrs.field(factory=list)
    notice: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_terminated(self, message: actors.Terminated) -> None:
        self.notices.append(message)
        self.notice.set()


async def test_a_group_spans_processes_and_a_killed_member_is_reported_lost(
    redis_server: RedisServer,
) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.open_redis_backplane(
            system, redis_server.url, name_ttl=float(TTL), heartbeat=float(HEARTBEAT)
        ) as backplane:
            async with backplane.group_changes("room") as (members, changes):
                assert members == ()
                children = [
                    await start_child(nursery, "member", redis_server.url, "room", TTL, HEARTBEAT)
                    for _ in range(2)
                ]
                remote = []
                with trio.fail_after(STEP):
                    for child in children:
                        node, path = (await child.expect("ready")).split()
                        remote.append(transport.ClusterMember(node, path))
                    joined = {(await changes.receive()).member for _ in children}
                assert joined == set(remote)
                assert set(await backplane.group_members("room")) == set(remote)

                # Broadcast reaches the members of every process; route reaches one.
                with trio.fail_after(STEP):
                    await backplane.broadcast("room", "hello")
                    for child in children:
                        assert await child.expect("got") == "hello"
                    chosen = await backplane.route("room", "just you")
                    assert await children[remote.index(chosen)].expect("got") == "just you"

                # SIGKILL: its member vanishes everywhere within the presence ttl.
                children[0].kill()
                with trio.fail_after(STEP):
                    change = await changes.receive()
                assert change == transport.ClusterGroupChange("room", remote[0], False, "lost")
                assert await backplane.group_members("room") == (remote[1],)

                # A member that stops is reported as stopped, by its own process.
                await backplane.broadcast("room", "stop")
                with trio.fail_after(STEP):
                    change = await changes.receive()
                assert change == transport.ClusterGroupChange("room", remote[1], False, "stopped")
                assert await backplane.group_members("room") == ()
                with pytest.raises(transport.RemoteActorUnavailableError, match="room"):
                    await backplane.route("room", "anyone?")
        nursery.cancel_scope.cancel()


async def test_watching_a_remote_actor_across_processes(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.open_redis_backplane(
            system, redis_server.url, codec=CODEC, name_ttl=float(TTL), heartbeat=float(HEARTBEAT)
        ) as backplane:
            watcher = Watcher()
            watcher_ref = await system.spawn(watcher)
            stopping = await start_child(nursery, "owner", redis_server.url, "calm", TTL, HEARTBEAT)
            doomed = await start_child(nursery, "owner", redis_server.url, "doomed", TTL, HEARTBEAT)
            with trio.fail_after(STEP):
                await stopping.expect("ready")
                await doomed.expect("ready")
                calm, killed = backplane.remote("calm"), backplane.remote("doomed")
                await calm.watch(watcher_ref)
                await killed.watch(watcher_ref)

                # The remote actor stops: its own reason, sent by its process.
                assert await calm.ask(Echo("stop"), timeout=5) == Echoed("STOP")
                await watcher.notice.wait()
                watched_calm: object = calm
                assert watcher.notices[0].ref is watched_calm
                assert isinstance(watcher.notices[0].reason, actors.Normal)

                # Its process dies: the name's key expires, the watcher is told.
                watcher.notice = trio.Event()
                doomed.kill()
                await watcher.notice.wait()
            watched_killed: object = killed
            assert watcher.notices[1].ref is watched_killed
            reason = watcher.notices[1].reason
            assert isinstance(reason, actors.Failed)
            assert isinstance(reason.error, transport.RemoteActorUnavailableError)
            assert "went away" in str(reason.error)

            # Watching a name whose holder is already gone: at once.
            watcher.notice = trio.Event()
            with trio.fail_after(STEP):
                await killed.watch(watcher_ref)
                await watcher.notice.wait()
            assert len(watcher.notices) == 3
        nursery.cancel_scope.cancel()
