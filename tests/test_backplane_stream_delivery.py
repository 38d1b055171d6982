"""How a Redis durable stream hands its entries to a consumer actor and acknowledges them.

A batch goes into the actor's mailbox at once, each entry a request whose reply tells
whether its handler returned. Against a real redis-server: every wait is bounded in real
time, and short.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import coredis
import pytest
import trio
from coredis.response.types import StreamPendingExt

import actors
import transport
from tests.redis_support import (
    COREDIS_MARKS,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    redis_server as redis_server,
)

pytestmark = COREDIS_MARKS

STEP = 10.0
Entry = transport.backplane.StreamMessage[str]


@attrs.define(eq=False)
class Worker(actors.Actor[Entry]):
    """Records each attempt; rejects, fails on or holds the entries it is told to."""

    reject_once: set[str] = attrs.field(factory=set)
    fail_on: str | None = None
    fail_once: set[str] = attrs.field(factory=set)
    hold_on: str | None = None
    #: Unrelated dead letters are published while first handling these (to overflow a buffer).
    flood_once: set[str] = attrs.field(factory=set)
    dead_letters: actors.DeadLetters | None = None
    attempts: list[str] = attrs.field(factory=list)
    handled: list[str] = attrs.field(factory=list)
    holding: trio.Event = attrs.field(factory=trio.Event)
    expected: int = -1
    all_handled: trio.Event = attrs.field(factory=trio.Event)

    @actors.handler
    async def on_entry(self, entry: Entry) -> None:
        text = entry.message
        self.attempts.append(text)
        if text in self.flood_once and self.dead_letters is not None:
            self.flood_once.discard(text)
            for _ in range(5):
                self.dead_letters.publish(
                    actors.DeadLetter("noise", "/elsewhere", None, actors.DeadLetterReason.DROPPED)
                )
        if text in self.reject_once:
            self.reject_once.discard(text)
            raise actors.ErrorReply(ValueError(f"not now: {text}"))
        if text == self.fail_on or text in self.fail_once:
            self.fail_once.discard(text)
            raise RuntimeError(f"cannot handle {text}")
        if text == self.hold_on:
            self.holding.set()
            await trio.sleep_forever()
        self.handled.append(text)
        if len(set(self.handled)) == self.expected:
            self.all_handled.set()


@asynccontextmanager
async def stream_of_jobs(
    url: str, count: int
) -> AsyncIterator[tuple[actors.ActorSystem, transport.backplane.DurableStream[str], list[str]]]:
    """A system, a stream ``jobs`` holding ``count`` entries, and their ids."""
    async with actors.open_system("test") as system:
        async with transport.backplane.open_redis_backplane(system, url) as backplane:
            jobs: transport.backplane.DurableStream[str] = backplane.stream("jobs", maxlen=1000)
            yield system, jobs, [await jobs.add(f"job {n}") for n in range(count)]


async def pending_ids(url: str, stream: str, group: str) -> list[str]:
    async with coredis.Redis.from_url(url, decode_responses=True) as raw:
        entries = await raw.xpending(f"trio-actors:stream:{stream}", group, "-", "+", 1000)
    return [str(entry.identifier) for entry in entries if isinstance(entry, StreamPendingExt)]


async def wait_pending(stream: transport.backplane.DurableStream[str], count: int) -> None:
    # Redis does not notify acknowledgements: poll.
    while await stream.pending("g") != count:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def consume_all(
    jobs: transport.backplane.DurableStream[str],
    worker: Worker,
    ref: actors.ActorRef[Entry],
    batch: int,
) -> None:
    """Consume until the worker handled every entry and none is pending."""
    with trio.fail_after(STEP):
        async with trio.open_nursery() as consumers:
            await consumers.start(
                lambda task_status: jobs.serve_consumer(
                    ref, group="g", batch=batch, min_idle=0.3, task_status=task_status
                )
            )
            await worker.all_handled.wait()
            await wait_pending(jobs, 0)
            consumers.cancel_scope.cancel()


async def test_rejected_entries_stay_pending_and_only_they_are_delivered_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # "job 3" is mid-batch, "job 9" the last one of the batch.
    caplog.set_level(logging.INFO, logger="transport.backplane")
    async with stream_of_jobs(redis_server.url, 10) as (system, jobs, ids):
        worker = Worker(reject_once={"job 3", "job 9"}, expected=10)
        ref = await system.spawn(worker)
        await consume_all(jobs, worker, ref, batch=16)
    first_pass = [f"job {n}" for n in range(10) if n not in (3, 9)]
    assert worker.handled[:8] == first_pass
    assert sorted(worker.handled[8:]) == ["job 3", "job 9"]  # delivered again, handled once
    assert sorted(worker.attempts) == sorted([*(f"job {n}" for n in range(10)), "job 3", "job 9"])
    # The rejection comes back to the consumer as the entry's reply, which says so.
    assert f"{ids[3]} of stream 'jobs' failed" in caplog.text
    assert "not now: job 3" in caplog.text


@attrs.define(eq=False)
class Restartable(actors.Actor[Entry]):
    """Fails once on ``job 4``; keeps what it saw in ``worker`` (it outlives restarts)."""

    worker: Worker

    @actors.handler
    async def on_entry(self, entry: Entry) -> None:
        await self.worker.on_entry(entry)


async def test_a_restarted_actor_handles_the_rest_of_its_batch_and_only_the_failed_entry_comes_again(
    redis_server: RedisServer,
) -> None:
    async with stream_of_jobs(redis_server.url, 10) as (system, jobs, _):
        worker = Worker(fail_once={"job 4"}, expected=10)
        supervisor = await system.spawn(actors.Supervisor())
        ref = await actors.start_child(
            supervisor, actors.ChildSpec("worker", lambda: Restartable(worker))
        )
        await consume_all(jobs, worker, ref, batch=16)
    # The mailbox outlives the restart: the batch goes on after the failed entry.
    assert worker.handled == [*(f"job {n}" for n in range(10) if n != 4), "job 4"]
    assert worker.attempts.count("job 4") == 2
    assert len(worker.attempts) == 11


async def test_a_failing_handler_mid_batch_leaves_exactly_the_rest_pending(
    redis_server: RedisServer,
) -> None:
    async with stream_of_jobs(redis_server.url, 10) as (system, jobs, ids):
        worker = Worker(fail_on="job 4")
        ref = await system.spawn(worker)
        with trio.fail_after(STEP):
            # The actor fails (it is not supervised): the consumer returns once it
            # acknowledged what the actor handled before.
            await jobs.serve_consumer(ref, group="g", batch=16)
        assert ref.stop_reason is not None
        assert worker.handled == [f"job {n}" for n in range(4)]
        assert await pending_ids(redis_server.url, "jobs", "g") == ids[4:]


async def test_a_stop_mid_batch_acknowledges_exactly_what_was_handled(
    redis_server: RedisServer,
) -> None:
    async with stream_of_jobs(redis_server.url, 10) as (system, jobs, ids):
        worker = Worker(hold_on="job 6")
        ref = await system.spawn(worker)
        with trio.fail_after(STEP):
            async with trio.open_nursery() as consumers:
                consumers.start_soon(
                    lambda: jobs.serve_consumer(ref, group="g", batch=16, handler_timeout=60)
                )
                await worker.holding.wait()
                # While the batch's answer is slow, what the actor is past is
                # acknowledged: the held entry and those after it stay pending.
                await wait_pending(jobs, 4)
                await ref.stop()
            # The consumer returned by itself once the actor stopped.
        assert worker.handled == [f"job {n}" for n in range(6)]
        assert await pending_ids(redis_server.url, "jobs", "g") == ids[6:]


@pytest.mark.parametrize(
    ("held", "mailbox_size", "logged"),
    [
        # The batch is in the mailbox: none is handled for a whole handler timeout.
        (3, 256, "were left pending"),
        # job 1 is held, jobs 2 and 3 fill the mailbox: the other six wait for room for
        # a whole handler timeout, then are left to be claimed again.
        (1, 2, "6 entries of stream 'jobs' were left pending in first while waiting"),
    ],
    ids=["room in the mailbox", "no room"],
)
async def test_past_handler_timeout_only_the_entries_handled_are_acknowledged(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    held: int,
    mailbox_size: int,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="transport.backplane")
    async with stream_of_jobs(redis_server.url, 10) as (system, jobs, ids):
        worker = Worker(hold_on=f"job {held}")
        ref = await system.spawn(worker, mailbox_size=mailbox_size)
        with trio.fail_after(STEP):
            async with trio.open_nursery() as consumers:
                await consumers.start(
                    lambda task_status: jobs.serve_consumer(
                        ref,
                        group="g",
                        consumer="first",
                        batch=16,
                        handler_timeout=0.3,
                        task_status=task_status,
                    )
                )
                await worker.holding.wait()
                await wait_pending(jobs, 10 - held)
                # The wait is given up on: what was not handled stays pending.
                while logged not in caplog.text:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                assert await pending_ids(redis_server.url, "jobs", "g") == ids[held:]
                consumers.cancel_scope.cancel()
        assert worker.handled == [f"job {n}" for n in range(held)]


async def test_batches_larger_than_the_mailbox_go_in_parts_in_order(
    redis_server: RedisServer,
) -> None:
    count = 25
    async with stream_of_jobs(redis_server.url, count) as (system, jobs, _):
        worker = Worker(reject_once={"job 7"}, expected=count)
        ref = await system.spawn(worker, mailbox_size=3)
        await consume_all(jobs, worker, ref, batch=10)
    assert worker.handled == [*(f"job {n}" for n in range(count) if n != 7), "job 7"]
    assert worker.attempts.count("job 7") == 2
    assert len(worker.attempts) == count + 1


async def test_dead_letters_of_the_system_have_no_say_in_what_is_acknowledged(
    redis_server: RedisServer,
) -> None:
    # Unrelated dead letters flood the system while the batch is handled: only the
    # rejected entry is delivered again.
    async with stream_of_jobs(redis_server.url, 6) as (system, jobs, _):
        worker = Worker(
            reject_once={"job 2"},
            flood_once={"job 1"},
            dead_letters=system.dead_letters,
            expected=6,
        )
        ref = await system.spawn(worker)
        await consume_all(jobs, worker, ref, batch=16)
    assert worker.attempts == [*(f"job {n}" for n in range(6)), "job 2"]


@attrs.frozen
class Ready:
    """Tells a :class:`Stasher` to unstash what it set aside."""


@attrs.define(eq=False)
class Stasher(actors.Actor[Entry | Ready]):
    """Stashes the entries named in ``stash_once`` (once each) until told :class:`Ready`."""

    stash_once: set[str] = attrs.field(factory=set)
    handled: list[str] = attrs.field(factory=list)

    @actors.handler
    def on_entry(self, entry: Entry) -> None:
        if entry.message in self.stash_once:
            self.stash_once.discard(entry.message)
            self.ctx.stash.stash()
            return
        self.handled.append(entry.message)

    @actors.handler
    def on_ready(self, message: Ready) -> None:
        self.ctx.stash.unstash_all()


async def wait_handled(stasher: Stasher, count: int) -> None:
    while len(stasher.handled) < count:  # noqa: ASYNC110 - the actor keeps no event
        await trio.sleep(0.01)


async def stash_job_2(
    system: actors.ActorSystem,
    jobs: transport.backplane.DurableStream[str],
    consumers: trio.Nursery,
    handler_timeout: float | None = None,
) -> tuple[Stasher, actors.ActorRef[Entry | Ready]]:
    """A consumer of six jobs, once it handled all but ``job 2``, which it stashed."""
    stasher = Stasher(stash_once={"job 2"})
    ref = await system.spawn(stasher)
    consumers.start_soon(
        lambda: jobs.serve_consumer(
            ref, group="g", consumer="first", batch=16, handler_timeout=handler_timeout
        )
    )
    await wait_handled(stasher, 5)
    # Every entry after the stashed one is acknowledged.
    await wait_pending(jobs, 1)
    return stasher, ref


async def test_a_stashed_entry_is_acknowledged_only_once_it_is_handled(
    redis_server: RedisServer,
) -> None:
    async with stream_of_jobs(redis_server.url, 6) as (system, jobs, ids):
        with trio.fail_after(STEP):
            async with trio.open_nursery() as consumers:
                stasher, ref = await stash_job_2(system, jobs, consumers, handler_timeout=0.2)
                # The stashed one is not, however long it waits (past the handler timeout).
                await trio.sleep(0.5)
                assert await pending_ids(redis_server.url, "jobs", "g") == [ids[2]]
                await ref.tell(Ready())
                await wait_pending(jobs, 0)
                consumers.cancel_scope.cancel()
        assert stasher.handled == [*(f"job {n}" for n in range(6) if n != 2), "job 2"]


@pytest.mark.parametrize("end", ["actor stops", "consumer dies"])
async def test_a_stashed_entry_never_handled_is_delivered_again(
    redis_server: RedisServer, end: str
) -> None:
    async with stream_of_jobs(redis_server.url, 6) as (system, jobs, ids):
        with trio.fail_after(STEP):
            async with trio.open_nursery() as consumers:
                stasher, ref = await stash_job_2(system, jobs, consumers)
                if end == "actor stops":
                    # The stashed entry's reply is an error: the consumer returns by
                    # itself, and leaves it pending.
                    await ref.stop()
                else:
                    # Cancelled as a killed process would be, without a word to Redis.
                    consumers.cancel_scope.cancel()
        assert await pending_ids(redis_server.url, "jobs", "g") == [ids[2]]
        # Another consumer of the group claims it once it has been idle for min_idle.
        second = Stasher()
        second_ref = await system.spawn(second)
        with trio.fail_after(STEP):
            async with trio.open_nursery() as consumers:
                consumers.start_soon(
                    lambda: jobs.serve_consumer(
                        second_ref, group="g", consumer="second", batch=16, min_idle=0.3
                    )
                )
                await wait_handled(second, 1)
                await wait_pending(jobs, 0)
                consumers.cancel_scope.cancel()
        assert second.handled == ["job 2"]
    assert stasher.handled == [f"job {n}" for n in range(6) if n != 2]
