"""The Redis backplane against a real redis-server, with real child processes."""

from __future__ import annotations

from typing import Any

import attrs
import coredis
import pytest
import trio

import actors
import transport
from tests.redis_support import (
    CODEC,
    COREDIS_MARKS,
    Echo,
    Echoed,
    Hang,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    free_port,
    redis_server as redis_server,
    start_child,
)
from transport import _codec
from transport._backplane import _redis, _wire

pytestmark = COREDIS_MARKS

# Real processes and a real server: every wait is bounded in real time, and short.
STEP = 10.0


async def start_fails_naming(url: str, connect_timeout: float) -> None:
    async with actors.open_system("test") as system:
        with trio.fail_after(STEP):
            with pytest.raises(transport.backplane.BackplaneUnavailableError, match=url):
                async with transport.backplane.open_redis_backplane(
                    system, url, connect_timeout=connect_timeout
                ):
                    pass  # pragma: no cover


async def test_unreachable_redis_fails_promptly_naming_the_url() -> None:
    await start_fails_naming(f"redis://127.0.0.1:{free_port()}", 2)


async def test_a_server_that_never_answers_fails_start_up_naming_the_url() -> None:
    # Something listens (the kernel completes the TCP handshake) but never speaks Redis.
    with trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        await start_fails_naming(f"redis://127.0.0.1:{listener.getsockname()[1]}", 0.5)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:6379", "must start with redis://"),
        ("127.0.0.1:6379", "must start with redis://"),
        ("redis://:6379", "names no host"),
        ("redis://127.0.0.1:port", "malformed"),
        ("redis://user:secret@127.0.0.1:0", "port 0"),
    ],
)
async def test_a_url_that_cannot_name_redis_is_refused_before_connecting(
    url: str, complaint: str
) -> None:
    async with actors.open_system("test") as system:
        with pytest.raises(ValueError, match=complaint) as info:
            async with transport.backplane.open_redis_backplane(system, url):
                pass  # pragma: no cover
    assert "secret" not in str(info.value)


async def test_statistics_mask_the_password(redis_server: RedisServer) -> None:
    url = f"redis://user:secret@127.0.0.1:{free_port()}"
    async with actors.open_system("test") as system:
        with (
            trio.fail_after(STEP),
            pytest.raises(transport.backplane.BackplaneUnavailableError) as info,
        ):
            async with transport.backplane.open_redis_backplane(system, url, connect_timeout=2):
                pass  # pragma: no cover
    assert "secret" not in str(info.value)
    assert "user:***@" in str(info.value)


async def test_topic_publish_reaches_local_subscribers(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            chat: transport.backplane.DistributedTopic[str] = await backplane.topic("chat")
            with chat.subscribe() as messages:
                await chat.publish("hello")
                with trio.fail_after(STEP):
                    assert await messages.receive() == "hello"
            stats = backplane.statistics()
            assert stats.state is transport.backplane.BackplaneState.CONNECTED
            assert (stats.published, stats.received, stats.topics) == (1, 1, 1)


async def test_a_publish_in_one_process_reaches_subscribers_in_another(
    redis_server: RedisServer,
) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            room: transport.backplane.DistributedTopic[str] = await backplane.topic("room")
            with room.subscribe() as messages:
                # This process publishes, a child subscribes (and so does this process).
                child = await start_child(nursery, "subscriber", redis_server.url, "room", "3")
                with trio.fail_after(STEP):
                    await child.expect("ready")
                sent = [f"from parent {n}" for n in range(3)]
                for text in sent:
                    await room.publish(text)
                with trio.fail_after(STEP):
                    assert [await child.expect("got") for _ in range(3)] == sent
                    assert [await messages.receive() for _ in range(3)] == sent
                # A child publishes, this process subscribes.
                await start_child(nursery, "publisher", redis_server.url, "room", "5")
                with trio.fail_after(STEP):
                    assert [await messages.receive() for _ in range(5)] == [
                        f"m{n}" for n in range(5)
                    ]
        nursery.cancel_scope.cancel()


async def test_redis_restart_restores_subscriptions_and_reports_a_gap(
    redis_server: RedisServer,
) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            feed: transport.backplane.DistributedTopic[str] = await backplane.topic(
                "feed", policy=actors.OverflowPolicy.DROP_OLDEST
            )
            with feed.subscribe() as messages:
                await feed.publish("before")
                with trio.fail_after(STEP):
                    assert await messages.receive() == "before"
                redis_server.stop()
                with pytest.raises(
                    transport.backplane.BackplaneUnavailableError, match=redis_server.url
                ):
                    await feed.publish("lost")
                redis_server.start()
                with trio.fail_after(STEP):
                    gap = await messages.receive()
                assert isinstance(gap, transport.backplane.BackplaneGap)
                assert gap.topic == "feed"
                assert gap.since <= gap.until
                await feed.publish("after")
                with trio.fail_after(STEP):
                    assert await messages.receive() == "after"
            stats = backplane.statistics()
            assert stats.state is transport.backplane.BackplaneState.CONNECTED
            assert (stats.attempt, stats.disconnects, stats.gaps) == (0, 1, 1)


async def test_concurrent_publishes_are_batched_and_keep_each_tasks_order(
    redis_server: RedisServer,
) -> None:
    tasks, each = 8, 50
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            burst: transport.backplane.DistributedTopic[str] = await backplane.topic(
                "burst", policy=actors.OverflowPolicy.BLOCK, buffer=tasks * each
            )
            with burst.subscribe() as messages:

                async def publisher(task: int) -> None:
                    for n in range(each):
                        await burst.publish(f"{task}:{n}")

                async with coredis.Redis.from_url(redis_server.url) as raw:
                    commands_before = await raw.info("commandstats")
                    async with trio.open_nursery() as nursery:
                        for task in range(tasks):
                            nursery.start_soon(publisher, task)
                    commands_after = await raw.info("commandstats")
                received = []
                with trio.fail_after(STEP):
                    for _ in range(tasks * each):
                        received.append(await messages.receive())
            assert backplane.statistics().published == tasks * each
        # Every message arrived once, each task's in the order it published them...
        assert sorted(received) == sorted(f"{t}:{n}" for t in range(tasks) for n in range(each))
        for task in range(tasks):
            mine = [m for m in received if isinstance(m, str) and m.startswith(f"{task}:")]
            assert mine == [f"{task}:{n}" for n in range(each)]
        # ... and they travelled several to a command (PUBLISH inside a script counts too).

        def calls(stats: dict[str, Any], command: str) -> int:
            entry = stats.get(f"cmdstat_{command}", {})
            return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0

        scripts = calls(commands_after, "eval") - calls(commands_before, "eval")
        published = calls(commands_after, "publish") - calls(commands_before, "publish")
        assert published == tasks * each
        assert 0 < scripts < tasks * each / 2


async def test_publish_after_the_backplane_closed_is_refused(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            news: transport.backplane.DistributedTopic[str] = await backplane.topic("news")
        with pytest.raises(trio.ClosedResourceError):
            await news.publish("too late")


async def test_coredis_unread_queue_is_swept(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # coredis queues a None for get_message() per message a handler took; nobody reads it.
    opened: list[Any] = []
    pubsub = coredis.Redis.pubsub

    def recording_pubsub(client: Any, **kwargs: Any) -> Any:
        opened.append(pubsub(client, **kwargs))
        return opened[-1]

    monkeypatch.setattr(coredis.Redis, "pubsub", recording_pubsub)
    monkeypatch.setattr(_redis, "UNREAD_SWEEP_INTERVAL", 0.05)
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            ticks: transport.backplane.DistributedTopic[str] = await backplane.topic("ticks")
            with ticks.subscribe(buffer=500) as messages:
                for n in range(500):
                    await ticks.publish(str(n))
                with trio.fail_after(STEP):
                    for _ in range(500):
                        await messages.receive()
                await trio.sleep(0.2)  # a few sweeps
            [subscriber] = opened
            assert subscriber._receive_stream.statistics().current_buffer_used < 50


async def test_bad_backplane_messages_go_to_dead_letters(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(
            system, redis_server.url, codec=CODEC, max_message_size=1000
        ) as backplane:
            echoes: transport.backplane.DistributedTopic[Echoed] = await backplane.topic("echoes")
            with pytest.raises(transport.backplane.OversizedMessageError):
                await echoes.publish(Echoed("x" * 2000))
            with pytest.raises(transport.EncodeError):
                await echoes.publish("not an attrs class")  # type: ignore[arg-type]
            channel = "trio-actors:topic:echoes"
            with system.dead_letters.subscribe() as letters, echoes.subscribe() as messages:
                async with coredis.Redis.from_url(redis_server.url) as raw:
                    await raw.publish(channel, b"no framing")
                    await raw.publish(channel, b"t" + b"y" * 5000)
                    await raw.publish(channel, b't{"type":"nope"}')
                await echoes.publish(Echoed("fine"))
                with trio.fail_after(STEP):
                    assert await messages.receive() == Echoed("fine")
                errors = [letters.receive_nowait().error for _ in range(3)]
            assert [type(error) for error in errors] == [
                _wire.MalformedFrameError,
                _wire.OversizedFrameError,
                _codec.UnknownTagError,
            ]
            assert backplane.statistics().undeliverable == 3


@attrs.define(eq=False)
class Collector(actors.Actor[transport.backplane.StreamMessage[str]]):
    seen: list[str] = attrs.field(factory=list)
    done: trio.Event = attrs.field(factory=trio.Event)
    all_seen: trio.Event = attrs.field(factory=trio.Event)
    expected: int = -1

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[str]) -> None:
        if entry.message == "sentinel":
            # It stays pending: its handler is cancelled before it returns.
            self.done.set()
            await trio.sleep_forever()
        self.seen.append(entry.id)
        if len(set(self.seen)) == self.expected:
            self.all_seen.set()


async def test_a_killed_consumers_entries_are_delivered_by_another(
    redis_server: RedisServer,
) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            orders: transport.backplane.DurableStream[str] = backplane.stream("orders", maxlen=1000)
            ids = [await orders.add(f"order {n}") for n in range(20)]
            child = await start_child(nursery, "consumer", redis_server.url, "orders", "g", "3")
            with trio.fail_after(STEP):
                handled_by_child = [await child.expect("handled") for _ in range(3)]
                stuck = await child.expect("stuck")
                # Acknowledgements leave in batches, behind the handlers: the child is killed
                # once the three it handled are acknowledged (every other entry it read is
                # pending), so that each entry below is delivered exactly once. Redis does
                # not notify acknowledgements: poll.
                while await orders.pending("g") != len(ids) - 3:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            child.kill()
            assert handled_by_child == ids[:3]
            assert stuck == ids[3]
            collector = Collector(expected=len(ids) - 3)
            worker = await system.spawn(collector)
            with trio.fail_after(STEP):
                async with trio.open_nursery() as consumers:
                    await consumers.start(
                        lambda task_status: orders.serve_consumer(
                            worker, group="g", min_idle=0.3, task_status=task_status
                        )
                    )
                    await collector.all_seen.wait()
                    # Its delivery means all before it were acknowledged.
                    await orders.add("sentinel")
                    await collector.done.wait()
                    consumers.cancel_scope.cancel()
            assert set(handled_by_child) | set(collector.seen) == set(ids)
            assert sorted(collector.seen) == sorted(ids[3:])  # each exactly once here
            with trio.fail_after(STEP):
                assert await orders.pending("g") == 1  # the sentinel, cancelled in its handler
        nursery.cancel_scope.cancel()


async def test_stream_length_is_capped_approximately(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            log: transport.backplane.DurableStream[str] = backplane.stream("log", maxlen=100)
            for n in range(1000):
                await log.add(f"{n}")
            async with coredis.Redis.from_url(redis_server.url) as raw:
                length = await raw.xlen("trio-actors:stream:log")
    assert 100 <= length < 300


async def test_remote_ask_across_processes(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.backplane.open_redis_backplane(
            system, redis_server.url, codec=CODEC
        ) as backplane:
            child = await start_child(nursery, "owner", redis_server.url, "echo")
            with trio.fail_after(STEP):
                await child.expect("ready")
                echo = backplane.remote("echo")
                assert await echo.ask(Echo("hi"), timeout=5) == Echoed("HI")
            with pytest.raises(actors.NameTakenError, match="echo"):
                await backplane.register("echo", await system.spawn(Collector()))
            with pytest.raises(transport.backplane.RemoteActorUnavailableError, match="nobody"):
                await backplane.remote("nobody").tell(Echo("?"))
        nursery.cancel_scope.cancel()


async def test_remote_ask_fails_promptly_when_the_owner_process_dies(
    redis_server: RedisServer,
) -> None:
    ask_timeout = 30.0
    async with actors.open_system("test") as system, trio.open_nursery() as nursery:
        async with transport.backplane.open_redis_backplane(
            system, redis_server.url, codec=CODEC
        ) as backplane:
            child = await start_child(nursery, "owner", redis_server.url, "echo")
            with trio.fail_after(STEP):
                await child.expect("ready")

            async def kill_when_hanging() -> None:
                await child.expect("hanging")
                child.kill()

            nursery.start_soon(kill_when_hanging)
            started = trio.current_time()
            with pytest.raises(transport.backplane.RemoteActorUnavailableError, match="went away"):
                with trio.fail_after(STEP):
                    await backplane.remote("echo").ask(Hang(), timeout=ask_timeout)
            assert trio.current_time() - started < 5.0 < ask_timeout
        nursery.cancel_scope.cancel()


async def test_names_are_registered_released_and_served(redis_server: RedisServer) -> None:
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(
            system, redis_server.url, codec=CODEC, name_ttl=0.6, heartbeat=0.2
        ) as backplane:
            collector = Collector()
            ref = await system.spawn(collector)
            await backplane.register("here", ref)
            await backplane.register("here", ref)  # idempotent
            assert backplane.statistics().names == 1
            async with coredis.Redis.from_url(redis_server.url) as raw:
                assert await raw.get("trio-actors:name:here") == backplane.node.encode()
                await backplane.unregister("here")
                assert await raw.get("trio-actors:name:here") is None
            with pytest.raises(transport.backplane.RemoteActorUnavailableError):
                await backplane.remote("here").tell(Echo("gone"))


@attrs.define(eq=False)
class Gate(actors.Actor[transport.backplane.StreamMessage[str]]):
    """Handles entries until it meets ``"hold"``, which waits for ``release``."""

    handled: list[str] = attrs.field(factory=list)
    holding: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[str]) -> None:
        if entry.message == "hold":
            self.holding.set()
            await self.release.wait()
        self.handled.append(entry.message)


async def test_stream_acknowledges_in_batches_and_only_after_the_handler_returned(
    redis_server: RedisServer,
) -> None:
    count = 200
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, redis_server.url) as backplane:
            jobs: transport.backplane.DurableStream[str] = backplane.stream("jobs", maxlen=1000)
            for n in range(count):
                await jobs.add(f"job {n}")
            await jobs.add("hold")
            gate = Gate()
            worker = await system.spawn(gate)
            async with coredis.Redis.from_url(redis_server.url) as raw:
                await raw.config_resetstat()
                with trio.fail_after(STEP):
                    async with trio.open_nursery() as consumers:
                        await consumers.start(
                            lambda task_status: jobs.serve_consumer(
                                worker, group="g", batch=64, task_status=task_status
                            )
                        )
                        await gate.holding.wait()
                        # Everything before the held entry is acknowledged (soon, in batches);
                        # the held one stays pending while its handler runs.
                        while await jobs.pending("g") != 1:  # noqa: ASYNC110 - no ack notices
                            await trio.sleep(0.01)
                        gate.release.set()
                        while await jobs.pending("g") != 0:  # noqa: ASYNC110 - no ack notices
                            await trio.sleep(0.01)
                        consumers.cancel_scope.cancel()
                stats = await raw.info("commandstats")
    assert gate.handled == [*(f"job {n}" for n in range(count)), "hold"]
    xack = stats["cmdstat_xack"]
    assert isinstance(xack, dict)
    xack_calls = int(xack["calls"])
    # One XACK per entry would be 201; batches carry many entries each.
    assert 2 <= xack_calls <= count // 4
