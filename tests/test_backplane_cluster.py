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
    COREDIS_MARKS,
    Echo,
    Echoed,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    persistent_redis_server as persistent_redis_server,
    redis_server as redis_server,
    start_child,
)

pytestmark = COREDIS_MARKS

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
        async with transport.backplane.open_redis_backplane(
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
                        remote.append(transport.backplane.Backplane.Member(node, path))
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
                assert change == transport.backplane.Backplane.GroupChange(
                    "room", remote[0], False, "lost"
                )
                assert await backplane.group_members("room") == (remote[1],)

                # A member that stops is reported as stopped, by its own process.
                await backplane.broadcast("room", "stop")
                with trio.fail_after(STEP):
                    change = await changes.receive()
                assert change == transport.backplane.Backplane.GroupChange(
                    "room", remote[1], False, "stopped"
                )
                assert await backplane.group_members("room") == ()
                with pytest.raises(transport.backplane.RemoteActorUnavailableError, match="room"):
                    await backplane.route("room", "anyone?")
        nursery.cancel_scope.cancel()


async def test_watching_a_remote_actor_across_processes(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.backplane.open_redis_backplane(
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
            assert isinstance(reason.error, transport.backplane.RemoteActorUnavailableError)
            assert "went away" in str(reason.error)

            # Watching a name whose holder is already gone: at once.
            watcher.notice = trio.Event()
            with trio.fail_after(STEP):
                await killed.watch(watcher_ref)
                await watcher.notice.wait()
            assert len(watcher.notices) == 3
        nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class Peer(actors.Actor[str | Echo | transport.backplane.StreamMessage[Echo]]):
    """Answers echoes, records what it is told and the stream entries it handles."""

    told: list[str] = attrs.field(factory=list)
    got: trio.Event = attrs.field(factory=trio.Event)
    entries: set[str] = attrs.field(factory=set)

    @actors.handler
    async def on_text(self, message: str) -> None:
        self.told.append(message)
        self.got.set()

    @actors.handler
    async def on_echo(self, message: Echo) -> Echoed:
        return Echoed(message.text.upper())

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[Echo]) -> None:
        self.entries.add(entry.message.text)


async def test_redis_going_away_under_traffic(persistent_redis_server: RedisServer) -> None:
    server = persistent_redis_server
    ttl, heartbeat = float(TTL), float(HEARTBEAT)
    async with (
        actors.open_system("a") as system_a,
        actors.open_system("b") as system_b,
        transport.backplane.open_redis_backplane(
            system_a, server.url, codec=CODEC, name_ttl=ttl, heartbeat=heartbeat
        ) as a,
        transport.backplane.open_redis_backplane(
            system_b, server.url, codec=CODEC, name_ttl=ttl, heartbeat=heartbeat
        ) as b,
        trio.open_nursery() as nursery,
    ):
        alice, bob, consumer = Peer(), Peer(), Peer()
        alice_ref = await system_a.spawn(alice, name="alice")
        bob_ref = await system_a.spawn(bob, name="bob")
        consumer_ref = await system_b.spawn(consumer, name="consumer")
        watcher_ref = await system_b.spawn(Watcher())
        for ref in (alice_ref, bob_ref):
            await a.join_group("room", ref)
        await a.register("echo", alice_ref)
        room: actors.Topic[str] = system_a.topic("local-room")
        news: transport.backplane.DistributedTopic[Echo] = await b.topic("news")
        jobs: transport.backplane.DurableStream[Echo] = a.stream("jobs")
        await nursery.start(
            lambda task_status: b.stream("jobs").serve_consumer(
                consumer_ref, group="g", min_idle=0.5, task_status=task_status
            )
        )
        accepted: set[str] = set()
        refused: list[str] = []

        async def produce() -> None:
            for n in range(10_000):
                try:
                    await jobs.add(Echo(f"job {n}"))
                except transport.backplane.BackplaneUnavailableError:
                    refused.append(f"job {n}")
                else:
                    accepted.add(f"job {n}")
                await trio.sleep(0.005)

        alice_m = transport.backplane.Backplane.Member(a.node, alice_ref.path)
        bob_m = transport.backplane.Backplane.Member(a.node, bob_ref.path)
        async with b.group_changes("room") as (members, changes):
            assert set(members) == {alice_m, bob_m}
            with news.subscribe() as headlines, room.subscribe() as local_room:
                producer = trio.CancelScope()

                async def run_producer() -> None:
                    with producer:
                        await produce()

                nursery.start_soon(run_producer)
                with trio.fail_after(STEP):
                    while len(accepted) < 20:  # noqa: ASYNC110 - traffic before the outage
                        await trio.sleep(0.01)

                server.stop()
                with trio.fail_after(STEP):
                    # Local rooms and actors keep working.
                    await room.publish("still here")
                    assert await local_room.receive() == "still here"
                    await alice_ref.tell("direct")
                    await alice.got.wait()
                    # Remote asks fail with the backplane's error, long before their timeout.
                    with pytest.raises(
                        transport.backplane.BackplaneUnavailableError, match=server.url
                    ):
                        await b.remote("echo").ask(Echo("hi"), timeout=60)
                    with pytest.raises(transport.backplane.BackplaneUnavailableError):
                        await b.broadcast("room", Echo("lost"))
                    with pytest.raises(transport.backplane.BackplaneUnavailableError):
                        await b.group_members("room")
                    with pytest.raises(transport.backplane.BackplaneUnavailableError):
                        await news.publish(Echo("lost"))
                    with pytest.raises(transport.backplane.BackplaneUnavailableError):
                        await b.remote("echo").watch(watcher_ref)
                    with pytest.raises(transport.backplane.BackplaneUnavailableError):
                        await a.join_group("room", alice_ref)
                    # Bob stops while Redis is away: nobody can be told now.
                    await bob_ref.stop()
                    while not refused:  # noqa: ASYNC110 - adds fail while the server is down
                        await trio.sleep(0.01)
                server.start()

                with trio.fail_after(STEP):
                    # Topics report their gap.
                    gap = await headlines.receive()
                    assert isinstance(gap, transport.backplane.BackplaneGap)
                    # Groups resynchronise: bob's leave is reported once Redis is back, by
                    # bob's process ("stopped") if its retry lands first, else by the
                    # heartbeat's reconciliation ("lost").
                    change = await changes.receive()
                    assert (change.member, change.joined) == (bob_m, False)
                    assert change.reason in {"stopped", "lost"}
                    assert await b.group_members("room") == (alice_m,)
                    # Remote asks work again once the owner has subscribed anew.
                    answer: Echoed | None = None
                    while answer is None:
                        try:
                            answer = await b.remote("echo").ask(Echo("back"), timeout=1)
                        except transport.backplane.RemoteActorUnavailableError:
                            await trio.sleep(heartbeat)
                    assert answer == Echoed("BACK")
                    producer.cancel()
                    # Durable streams: every accepted entry is handled; refused ones raised.
                    while not accepted <= consumer.entries:  # noqa: ASYNC110 - redeliveries
                        await trio.sleep(0.05)
        assert refused
        # Nothing but what was added arrives. A refused add may have been appended all
        # the same (its command reached the server, which died before it answered: the
        # append-only file keeps the entry), so refused entries may arrive too.
        assert consumer.entries <= accepted | set(refused)
        nursery.cancel_scope.cancel()
