"""The in-process backplane: the same interface as Redis, no server, no gaps."""

from __future__ import annotations

import attrs
import pytest
import trio

import actors
import transport
from tests.redis_support import Echo, Echoed


@attrs.define(eq=False)
class Flaky(actors.Actor[transport.backplane.StreamMessage[str] | Echo]):
    """Fails the first delivery of every entry; records the ids it handled."""

    handled: list[str] = attrs.field(factory=list)
    failed: set[str] = attrs.field(factory=set)
    three_handled: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[str]) -> None:
        if entry.id not in self.failed:
            self.failed.add(entry.id)
            raise actors.ErrorReply(ValueError(f"first try of {entry.id}"))
        self.handled.append(entry.id)
        if len(self.handled) == 3:
            self.three_handled.set()

    @actors.handler
    async def on_echo(self, message: Echo) -> Echoed:
        if message.text == "boom":
            raise actors.ErrorReply(ValueError("boom"))
        return Echoed(message.text.upper())


async def test_topics_deliver_in_process(system: actors.ActorSystem) -> None:
    async with transport.backplane.open_local_backplane(system) as backplane:
        chat: transport.backplane.DistributedTopic[str] = await backplane.topic(
            "chat", policy=actors.OverflowPolicy.DROP_OLDEST, buffer=2
        )
        assert chat.local is system.topic("backplane:chat")
        with chat.subscribe() as messages:
            for text in ("a", "b", "c"):
                await chat.publish(text)
            assert [messages.receive_nowait() for _ in range(2)] == ["b", "c"]
        stats = backplane.statistics()
        assert (stats.kind, stats.state, stats.published) == (
            "local",
            transport.backplane.BackplaneState.CONNECTED,
            3,
        )
    assert backplane.statistics().state is transport.backplane.BackplaneState.CLOSED


async def test_stream_redelivers_failed_entries_after_min_idle(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    async with transport.backplane.open_local_backplane(system) as backplane:
        jobs: transport.backplane.DurableStream[str] = backplane.stream("jobs", maxlen=10)
        ids = [await jobs.add(f"job {n}") for n in range(3)]
        flaky = Flaky()
        ref = await system.spawn(flaky)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: jobs.serve_consumer(
                    ref, group="g", min_idle=5.0, task_status=task_status
                )
            )
            start = trio.current_time()
            with trio.fail_after(60):
                await flaky.three_handled.wait()
            assert trio.current_time() - start >= 5.0
            nursery.cancel_scope.cancel()
        assert sorted(flaky.handled) == ids
        assert await jobs.pending("g") == 0
        # The same checks as the Redis stream's: a zero min_idle would redeliver at once.
        with pytest.raises(ValueError, match="min_idle must be positive"):
            await jobs.serve_consumer(ref, group="g", min_idle=0)


async def test_stream_is_capped_exactly(system: actors.ActorSystem) -> None:
    async with transport.backplane.open_local_backplane(system) as backplane:
        log: transport.backplane.DurableStream[int] = backplane.stream("log", maxlen=3)
        for n in range(10):
            await log.add(n)
        with pytest.raises(ValueError, match="maxlen"):
            backplane.stream("bad", maxlen=0)


async def test_remote_refs_by_name(system: actors.ActorSystem) -> None:
    async with transport.backplane.open_local_backplane(system) as backplane:
        ref = await system.spawn(Flaky())
        await backplane.register("echo", ref)
        echo = backplane.remote("echo")
        assert await echo.ask(Echo("hi")) == Echoed("HI")
        with pytest.raises(transport.backplane.RemoteError, match="boom") as info:
            await echo.ask(Echo("boom"))
        assert info.value.remote_type == "ValueError"
        with pytest.raises(actors.NameTakenError):
            await backplane.register("echo", await system.spawn(Flaky()))
        await backplane.unregister("echo")
        with pytest.raises(transport.backplane.RemoteActorUnavailableError, match="echo"):
            await echo.tell(Echo("gone"))
