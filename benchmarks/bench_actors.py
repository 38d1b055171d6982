"""Actor runtime benchmark: same-run ratios against raw trio memory channels.

Prints one JSON line. Each variant is measured interleaved with its raw
counterpart in the same ``trio.run`` (A, B, A, B, ...) and the medians are
compared, so the ratios hold on a noisy shared machine; absolute rates only
describe the machine they ran on.

- ``tell_ratio``: ``await ref.tell(msg)`` into an actor whose handler counts,
  over a raw ``await send`` + ``async for`` consumer, both with a bound of 100.
- ``ask_ratio``: ``await ref.ask(msg)`` round trips over a raw request/reply
  pair of memory channels (bound 100).
- ``router_ratio``: ``await router.tell(msg)`` through a round-robin pool router
  of 8 counting actors (mailbox bound 100 each), over ``actor_tell``'s direct
  ``await ref.tell(msg)`` to one such actor; both include draining the
  mailboxes (``stop(drain=True)``).
- ``thread_tell_ratio``: 8 OS threads telling a counting actor (mailbox bound
  100) with ``ref.tell_from_thread(msg)`` (the batched thread inbox), over 8
  threads each calling ``trio.from_thread.run(ref.tell, msg)`` per message
  (the round trip it replaced); both until the actor has handled every
  message.
- ``fanout_ratio``: deliveries per second from ``await topic.publish(msg)`` to
  ``BENCH_FANOUT`` (1,000) channel subscribers (policy BLOCK, buffer 100 each),
  over the same fan-out by hand to as many raw memory channels (bound 100):
  ``send_nowait`` to each in a loop, ``await send`` on the full ones, one
  checkpoint per message. One consumer task per subscriber in both.
- ``restart_latency_us``: median time from telling a supervised actor a message
  whose handler raises to the restarted incarnation's answer to an ``ask``
  (failure, dead letter, stop hook, supervisor decision, fresh actor, start
  hook, one ask round trip). The ``actors`` logger gets a ``NullHandler`` so
  the restart warnings are created but not printed.
- ``idle_actor_bytes``: traced Python memory per idle spawned actor.
- ``spawn_ratio``: actors spawned (``on_start`` done, ref handed out) per second,
  over the thin spawn the target was set against: minimal actors (a task that
  owns a 16-slot memory channel), made beforehand, all started with
  ``start_soon``, then ``wait_all_tasks_blocked`` and every channel closed,
  all inside the timing.
- ``spawn_ready_ratio``: the same over minimal actors started one at a time
  with ``nursery.start``, each handing out its send side once running: the
  same promise as ``spawn`` (returns once the actor is ready). Both are
  stopped outside the timing.
- ``spawn_per_s``: our spawns per second.

Run: ``python benchmarks/bench_actors.py`` (env ``BENCH_REPS``, ``BENCH_TARGET_S``).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from importlib.metadata import version

import attrs
import trio
import trio.testing

import actors

REPS = int(os.environ.get("BENCH_REPS", "5"))
TARGET_S = float(os.environ.get("BENCH_TARGET_S", "0.25"))
IDLE_ACTORS = int(os.environ.get("BENCH_IDLE_ACTORS", "5000"))
FANOUT = int(os.environ.get("BENCH_FANOUT", "1000"))
ROUTEES = 8
THREADS = 8
BOUND = 100


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Echo(actors.Request[int]):
    n: int


@attrs.define(eq=False)
class Sink(actors.Actor[Ping | Echo]):
    count: int = 0

    @actors.handler
    async def ping(self, message: Ping) -> None:
        self.count += 1

    @actors.handler
    async def echo(self, message: Echo) -> int:
        return message.n


@attrs.define(eq=False)
class Idle(actors.Actor[Ping]):
    @actors.handler
    async def ping(self, message: Ping) -> None:
        pass


async def raw_tell(system: actors.ActorSystem, n: int) -> float:
    send, receive = trio.open_memory_channel[Ping](BOUND)
    count = 0

    async def consumer() -> None:
        nonlocal count
        async with receive:
            async for _message in receive:
                count += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        async with send:
            for i in range(n):
                await send.send(Ping(i))
    elapsed = time.perf_counter() - start
    assert count == n
    return elapsed


async def actor_tell(system: actors.ActorSystem, n: int) -> float:
    sink = Sink()
    ref = await system.spawn(sink, mailbox_size=BOUND)
    start = time.perf_counter()
    for i in range(n):
        await ref.tell(Ping(i))
    await ref.stop(drain=True)
    elapsed = time.perf_counter() - start
    assert sink.count == n
    return elapsed


async def router_tell(system: actors.ActorSystem, n: int) -> float:
    sinks = [Sink() for _ in range(ROUTEES)]
    made = iter(sinks)
    router = await system.spawn_pool(lambda: next(made), size=ROUTEES, mailbox_size=BOUND)
    start = time.perf_counter()
    for i in range(n):
        await router.tell(Ping(i))
    for ref in router.routees:
        await ref.stop(drain=True)
    elapsed = time.perf_counter() - start
    await router.stop()
    assert sum(sink.count for sink in sinks) == n
    return elapsed


async def from_threads(system: actors.ActorSystem, n: int, batched: bool) -> float:
    sink = Sink()
    ref = await system.spawn(sink, mailbox_size=BOUND)
    per_thread = n // THREADS

    def produce() -> None:
        if batched:
            for i in range(per_thread):
                ref.tell_from_thread(Ping(i))
        else:
            for i in range(per_thread):
                trio.from_thread.run(ref.tell, Ping(i))

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(THREADS):
            nursery.start_soon(trio.to_thread.run_sync, produce)
    await ref.stop(drain=True)
    elapsed = time.perf_counter() - start
    assert sink.count == per_thread * THREADS
    return elapsed * n / (per_thread * THREADS)


async def thread_tell(system: actors.ActorSystem, n: int) -> float:
    return await from_threads(system, n, batched=True)


async def thread_round_trip(system: actors.ActorSystem, n: int) -> float:
    return await from_threads(system, n, batched=False)


async def raw_ask(system: actors.ActorSystem, n: int) -> float:
    request_send, request_receive = trio.open_memory_channel[Echo](BOUND)
    reply_send, reply_receive = trio.open_memory_channel[int](BOUND)

    async def server() -> None:
        async with request_receive, reply_send:
            async for message in request_receive:
                await reply_send.send(message.n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            await request_send.send(Echo(i))
            assert await reply_receive.receive() == i
        elapsed = time.perf_counter() - start
        await request_send.aclose()
    return elapsed


async def actor_ask(system: actors.ActorSystem, n: int) -> float:
    ref = await system.spawn(Sink(), mailbox_size=BOUND)
    start = time.perf_counter()
    for i in range(n):
        assert await ref.ask(Echo(i)) == i
    elapsed = time.perf_counter() - start
    await ref.stop()
    return elapsed


async def spawn(system: actors.ActorSystem, n: int) -> float:
    start = time.perf_counter()
    refs = [await system.spawn(Idle(), mailbox_size=16) for _ in range(n)]
    elapsed = time.perf_counter() - start
    for ref in refs:
        ref.request_stop()
    for ref in refs:
        await ref.wait_stopped()
    return elapsed


@attrs.define(eq=False)
class Minimal:
    """The thinnest actor: a task that owns a 16-slot memory channel."""

    send: trio.MemorySendChannel[object]
    receive: trio.MemoryReceiveChannel[object]

    @classmethod
    def make(cls) -> Minimal:
        return cls(*trio.open_memory_channel[object](16))

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[trio.MemorySendChannel[object]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started(self.send)
        async with self.receive:
            async for _ in self.receive:
                pass


async def thin_spawn(system: actors.ActorSystem, n: int) -> float:
    minimal = [Minimal.make() for _ in range(n)]
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for actor in minimal:
            nursery.start_soon(actor.run)
        await trio.testing.wait_all_tasks_blocked()
        for actor in minimal:
            actor.send.close()
    return time.perf_counter() - start


async def ready_spawn(system: actors.ActorSystem, n: int) -> float:
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        sends = [await nursery.start(Minimal.make().run) for _ in range(n)]
        elapsed = time.perf_counter() - start
        for send in sends:
            send.close()
    return elapsed


async def raw_fanout(system: actors.ActorSystem, n: int) -> float:
    """Deliver about ``n`` messages in all, each message going to FANOUT raw channels."""
    messages = max(1, round(n / FANOUT))
    counts = [0] * FANOUT
    channels = [trio.open_memory_channel[Ping](BOUND) for _ in range(FANOUT)]

    async def consumer(index: int, receive: trio.MemoryReceiveChannel[Ping]) -> None:
        async with receive:
            async for _message in receive:
                counts[index] += 1

    async with trio.open_nursery() as nursery:
        for index, (_send, receive) in enumerate(channels):
            nursery.start_soon(consumer, index, receive)
        sends = [send for send, _receive in channels]
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(messages):
            message = Ping(i)
            for send in sends:
                try:
                    send.send_nowait(message)
                except trio.WouldBlock:
                    await send.send(message)
            await trio.lowlevel.checkpoint()
        for send in sends:
            await send.aclose()
    elapsed = time.perf_counter() - start
    assert counts == [messages] * FANOUT
    return elapsed * n / (messages * FANOUT)


async def topic_fanout(system: actors.ActorSystem, n: int) -> float:
    """The same fan-out through a topic with FANOUT channel subscribers."""
    messages = max(1, round(n / FANOUT))
    counts = [0] * FANOUT
    pings: actors.Topic[Ping] = system.topic("fanout", buffer=BOUND)

    async def consumer(index: int, *, task_status: trio.TaskStatus[None]) -> None:
        with pings.subscribe() as receive:
            task_status.started()
            async for _message in receive:
                counts[index] += 1

    async with trio.open_nursery() as nursery:
        for index in range(FANOUT):
            await nursery.start(consumer, index)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(messages):
            await pings.publish(Ping(i))
        pings.close()
    elapsed = time.perf_counter() - start
    assert counts == [messages] * FANOUT
    return elapsed * n / (messages * FANOUT)


@attrs.frozen
class Crash:
    pass


@attrs.define(eq=False)
class Crashy(actors.Actor[Crash | Echo]):
    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError("crash on purpose")

    @actors.handler
    def echo(self, message: Echo) -> int:
        return message.n


async def restart(system: actors.ActorSystem, n: int) -> float:
    supervisor = await system.spawn(
        actors.Supervisor([actors.ChildSpec("crashy", Crashy)], max_restarts=n + 1, within=3600)
    )
    crashy = (await supervisor.ask(actors.WhichChildren()))["crashy"]
    start = time.perf_counter()
    for i in range(n):
        await crashy.tell(Crash())  # type: ignore[arg-type]
        assert await crashy.ask(Echo(i)) == i
    elapsed = time.perf_counter() - start
    await supervisor.stop()
    return elapsed


Variant = Callable[[actors.ActorSystem, int], Awaitable[float]]
VARIANTS: dict[str, Variant] = {
    "raw_tell": raw_tell,
    "actor_tell": actor_tell,
    "router_tell": router_tell,
    "thread_round_trip": thread_round_trip,
    "thread_tell": thread_tell,
    "raw_ask": raw_ask,
    "actor_ask": actor_ask,
    "thin_spawn": thin_spawn,
    "ready_spawn": ready_spawn,
    "spawn": spawn,
    "raw_fanout": raw_fanout,
    "topic_fanout": topic_fanout,
    "restart": restart,
}


async def idle_actor_bytes(system: actors.ActorSystem, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    refs = [await system.spawn(Idle(), mailbox_size=16) for _ in range(n)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for ref in refs:
        ref.request_stop()
    for ref in refs:
        await ref.wait_stopped()
    return (after - before) / n


async def measure() -> dict[str, object]:
    began = time.perf_counter()
    async with actors.open_system("bench") as system:
        idle = await idle_actor_bytes(system, IDLE_ACTORS)
        sizes: dict[str, int] = {}
        for name, variant in VARIANTS.items():
            await variant(system, 1000)
            elapsed = await variant(system, 5000)
            sizes[name] = max(1000, int(5000 * TARGET_S / elapsed))
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(REPS):
            for name, variant in VARIANTS.items():
                gc.collect()
                rates[name].append(sizes[name] / await variant(system, sizes[name]))
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "bench": "actors",
        "tell_ratio": round(median["actor_tell"] / median["raw_tell"], 3),
        "ask_ratio": round(median["actor_ask"] / median["raw_ask"], 3),
        "router_ratio": round(median["router_tell"] / median["actor_tell"], 3),
        "thread_tell_ratio": round(median["thread_tell"] / median["thread_round_trip"], 3),
        "fanout_ratio": round(median["topic_fanout"] / median["raw_fanout"], 3),
        "spawn_ratio": round(median["spawn"] / median["thin_spawn"], 3),
        "spawn_ready_ratio": round(median["spawn"] / median["ready_spawn"], 3),
        "restart_latency_us": round(1e6 / median["restart"], 1),
        "idle_actor_bytes": round(idle),
        "spawn_per_s": round(median["spawn"]),
        "rates_per_s": {name: round(value) for name, value in median.items()},
        "reps": REPS,
        "python": platform.python_version(),
        "trio": version("trio"),
        "elapsed_s": round(time.perf_counter() - began, 1),
    }


if __name__ == "__main__":
    logging.getLogger("actors").addHandler(logging.NullHandler())
    print(json.dumps(trio.run(measure)))
