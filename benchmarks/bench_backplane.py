"""Backplane throughput through a real redis-server on loopback, against raw coredis.

Starts its own redis-server (no persistence, a free port) and stops it at the end.
Prints one JSON line:

* ``topic_msgs_per_s``: messages published by a child process to a distributed topic
  and received by a channel subscriber here; ``raw_msgs_per_s`` the same traffic with
  a bare coredis publish / subscribe loop; ``topic_ratio`` their ratio (target >= 0.8).
  Both sides send the same 65-byte frames from ``PUBLISHERS`` tasks and hand each
  message to a consuming task; the raw loop sends one ``PUBLISH`` per message, while
  the backplane batches concurrent publishes, so the ratio may exceed 1.
  The two phases alternate ``REPS`` times in one run and their medians are compared;
* ``topic_latency_ms_p50`` / ``p99``: one message at a time, publish to receive, in
  this process;
* ``stream_msgs_per_s``: entries of a durable stream delivered to a consumer actor and
  acknowledged (each after its handler returned), ``batch=128``;
  ``raw_stream_msgs_per_s`` the same entries read by a bare coredis loop
  (``XREADGROUP COUNT 128``, one ``XACK`` per batch, no handler); ``stream_ratio``
  their ratio (target >= 0.5). Both phases alternate ``REPS`` times; medians compared.

Usage: ``python benchmarks/bench_backplane.py [--messages N]``; bounded well under a minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import attrs
import coredis
import trio

import actors
import transport

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90.0
#: Raw and topic phases alternate this many times; the medians are compared.
REPS = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed: sudo apt-get install redis-server")
    process = subprocess.Popen(
        [
            *(executable, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if b"Ready to accept connections" in line:
            return process
    sys.exit("redis-server did not start")


# -- the publishing child process --------------------------------------------------------


#: Concurrent publishing tasks in the child (coredis pipelines their commands).
PUBLISHERS = 16


async def _publish_raw(url: str, channel: str, count: int) -> None:
    async with coredis.Redis.from_url(url) as client:
        payload = b"t" + b"x" * 64

        async def publisher() -> None:
            for _ in range(count // PUBLISHERS):
                await client.publish(channel, payload)

        async with trio.open_nursery() as nursery:
            for _ in range(PUBLISHERS):
                nursery.start_soon(publisher)


async def _publish_topic(url: str, name: str, count: int) -> None:
    async with actors.open_system("bench-child") as system:
        async with transport.backplane.open_redis_backplane(system, url) as backplane:
            topic: transport.backplane.DistributedTopic[str] = await backplane.topic(name)
            message = "x" * 64

            async def publisher() -> None:
                for _ in range(count // PUBLISHERS):
                    await topic.publish(message)

            async with trio.open_nursery() as nursery:
                for _ in range(PUBLISHERS):
                    nursery.start_soon(publisher)


def child() -> None:
    kind, url, name, count = sys.argv[2:]
    trio.run(_publish_raw if kind == "raw" else _publish_topic, url, name, int(count))


async def _run_publisher(kind: str, url: str, name: str, count: int) -> None:
    await trio.run_process(
        [sys.executable, str(Path(__file__)), "--child", kind, url, name, str(count)],
        cwd=ROOT,
    )


# -- measurements --------------------------------------------------------------------------


async def raw_rate(url: str, count: int) -> float:
    count -= count % PUBLISHERS
    async with coredis.Redis.from_url(url) as client:
        async with client.pubsub(channels=["bench:raw"], ignore_subscribe_messages=True) as sub:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_run_publisher, "raw", url, "bench:raw", count)
                received = 0
                start = 0.0
                while received < count:
                    message = await sub.get_message(ignore_subscribe_messages=True)
                    if message is None:
                        continue
                    if received == 0:
                        start = time.perf_counter()
                    received += 1
                elapsed = time.perf_counter() - start
    return (count - 1) / elapsed


async def topic_rate(system: actors.ActorSystem, url: str, count: int) -> float:
    count -= count % PUBLISHERS
    async with transport.backplane.open_redis_backplane(system, url) as backplane:
        topic: transport.backplane.DistributedTopic[str] = await backplane.topic(
            "bench", policy=actors.OverflowPolicy.BLOCK, buffer=1024
        )
        with topic.subscribe() as messages:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_run_publisher, "topic", url, "bench", count)
                await messages.receive()
                start = time.perf_counter()
                for _ in range(count - 1):
                    await messages.receive()
                elapsed = time.perf_counter() - start
    return (count - 1) / elapsed


async def topic_latency(system: actors.ActorSystem, url: str, rounds: int) -> list[float]:
    async with transport.backplane.open_redis_backplane(system, url) as backplane:
        topic: transport.backplane.DistributedTopic[str] = await backplane.topic("latency")
        samples = []
        with topic.subscribe() as messages:
            for n in range(rounds):
                start = time.perf_counter()
                await topic.publish(str(n))
                await messages.receive()
                samples.append((time.perf_counter() - start) * 1000)
    return samples


@attrs.define(eq=False)
class Sink(actors.Actor[transport.backplane.StreamMessage[str]]):
    expected: int
    count: int = 0
    done: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_entry(self, entry: transport.backplane.StreamMessage[str]) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


#: Entries read by one ``XREADGROUP`` in both stream loops.
STREAM_BATCH = 128


async def _fill_stream(url: str, key: str, count: int) -> None:
    """Add ``count`` backplane-framed entries to ``key`` (one pipeline)."""
    async with coredis.Redis.from_url(url) as client:
        await client.delete([key])
        async with client.pipeline(transaction=False) as pipe:
            added = [pipe.xadd(key, {"m": b"t" + str(n).encode()}) for n in range(count)]
        assert len(added) == count


async def raw_stream_rate(url: str, count: int) -> float:
    """A bare coredis consumer: ``XREADGROUP COUNT 128``, one ``XACK`` per batch."""
    key = "bench:raw-stream"
    await _fill_stream(url, key, count)
    async with coredis.Redis.from_url(url) as client:
        await client.xgroup_create(key, "bench", "0")
        start = time.perf_counter()
        seen = 0
        while seen < count:
            found = await client.xreadgroup(
                "bench", "raw", {key: ">"}, count=STREAM_BATCH, block=1000
            )
            entries = next(iter(found.values())) if found else ()
            for entry in entries:
                entry.field_values.get(b"m")
            if entries:
                await client.xack(key, "bench", [entry.identifier for entry in entries])
            seen += len(entries)
        elapsed = time.perf_counter() - start
    return count / elapsed


async def stream_rate(system: actors.ActorSystem, url: str, count: int) -> float:
    async with transport.backplane.open_redis_backplane(system, url) as backplane:
        stream: transport.backplane.DurableStream[str] = backplane.stream("bench", maxlen=count * 2)
        await _fill_stream(url, "trio-actors:stream:bench", count)
        sink = Sink(expected=count)
        ref = await system.spawn(sink)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: stream.serve_consumer(
                    ref, group="bench", batch=STREAM_BATCH, task_status=task_status
                )
            )
            await sink.done.wait()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    return count / elapsed


async def main(messages: int) -> dict[str, float | int]:
    port = _free_port()
    server = _start_redis(port)
    url = f"redis://127.0.0.1:{port}"
    try:
        with trio.fail_after(TIMEOUT):
            raws: list[float] = []
            topics: list[float] = []
            async with actors.open_system("bench") as system:
                for _ in range(REPS):  # interleaved: raw, topic, raw, topic, ...
                    raws.append(await raw_rate(url, messages))
                    topics.append(await topic_rate(system, url, messages))
                raw, topic = statistics.median(raws), statistics.median(topics)
                latency = await topic_latency(system, url, 500)
                raw_streams: list[float] = []
                streams: list[float] = []
                for _ in range(REPS):
                    raw_streams.append(await raw_stream_rate(url, messages))
                    streams.append(await stream_rate(system, url, messages))
                raw_stream = statistics.median(raw_streams)
                stream = statistics.median(streams)
    finally:
        server.kill()
        server.wait()
    quantiles = statistics.quantiles(latency, n=100)
    return {
        "messages": messages,
        "reps": REPS,
        "raw_msgs_per_s": round(raw),
        "topic_msgs_per_s": round(topic),
        "topic_ratio": round(topic / raw, 3),
        "topic_latency_ms_p50": round(statistics.median(latency), 3),
        "topic_latency_ms_p99": round(quantiles[98], 3),
        "stream_msgs_per_s": round(stream),
        "raw_stream_msgs_per_s": round(raw_stream),
        "stream_ratio": round(stream / raw_stream, 3),
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child()
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--messages", type=int, default=8_000)
        arguments = parser.parse_args()
        print(json.dumps(trio.run(main, arguments.messages)))
