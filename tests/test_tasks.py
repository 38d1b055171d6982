"""Helper tasks in an actor's nursery: pipe_to_self and start_soon."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from tests.messages import Add, Counter, Total


@attrs.frozen
class Fetch:
    key: str


@attrs.frozen
class Fetched:
    value: str


@attrs.frozen
class FetchFailed:
    error: Exception


@attrs.frozen
class Results(actors.Request[list[str]]):
    pass


@attrs.frozen
class StartCrashingTask:
    pass


FetcherMessage = Fetch | Fetched | FetchFailed | Results | StartCrashingTask


@attrs.define(eq=False)
class Fetcher(actors.Actor[FetcherMessage]):
    """Asks a slow counter without blocking its own mailbox."""

    backend: actors.ActorRef[Total]
    results: list[str] = attrs.Factory(list)

    @actors.handler
    def fetch(self, message: Fetch) -> None:
        if message.key == "bad":
            self.ctx.pipe_to_self(self._explode, on_result=Fetched, on_error=FetchFailed)
        else:
            self.ctx.pipe_to_self(
                self._lookup, message.key, on_result=Fetched, on_error=FetchFailed
            )

    async def _lookup(self, key: str) -> str:
        await trio.sleep(10)
        total = await self.backend.ask(Total())
        return f"{key}={total}"

    async def _explode(self) -> str:
        raise LookupError("no such key")

    @actors.handler
    def fetched(self, message: Fetched) -> None:
        self.results.append(message.value)

    @actors.handler
    def failed(self, message: FetchFailed) -> None:
        self.results.append(f"error: {message.error}")

    @actors.handler
    def get_results(self, message: Results) -> list[str]:
        return list(self.results)

    @actors.handler
    def crash_task(self, message: StartCrashingTask) -> None:
        self.ctx.start_soon(self._crash)

    async def _crash(self) -> None:
        await trio.sleep(1)
        raise OSError("task blew up")


async def test_pipe_to_self_keeps_the_mailbox_flowing(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    backend = await system.spawn(Counter(total=3))
    fetcher = await system.spawn(Fetcher(backend))
    await fetcher.tell(Fetch("a"))
    await fetcher.tell(Fetch("bad"))
    await trio.testing.wait_all_tasks_blocked()
    # While the lookup sleeps, the actor still answers at once.
    start = trio.current_time()
    assert await fetcher.ask(Results()) == ["error: no such key"]
    assert trio.current_time() == start
    await trio.sleep(11)
    assert await fetcher.ask(Results()) == ["error: no such key", "a=3"]
    await backend.tell(Add())


async def test_pipe_to_self_is_cancelled_with_the_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    backend = await system.spawn(Counter())
    fetcher = await system.spawn(Fetcher(backend))
    await fetcher.tell(Fetch("a"))
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    await fetcher.stop()
    assert trio.current_time() == start  # the pending lookup did not hold the stop up


async def test_a_failing_task_fails_its_actor(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    backend = await system.spawn(Counter())
    fetcher = await system.spawn(Fetcher(backend))
    await fetcher.tell(StartCrashingTask())
    reason = await fetcher.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, OSError)
    assert backend.is_alive  # a sibling is not affected


async def test_tasks_cannot_start_after_the_actor_stopped(system: actors.ActorSystem) -> None:
    backend = await system.spawn(Counter())
    fetcher_actor = Fetcher(backend)
    await system.spawn(fetcher_actor)
    context = fetcher_actor.ctx
    await context.ref.stop()
    with pytest.raises(actors.ActorStoppedError, match="cannot start tasks"):
        context.start_soon(trio.sleep, 1)


@attrs.frozen
class StartWork:
    pass


@attrs.frozen
class Busy:
    pass


@attrs.frozen
class WorkDone:
    value: str


@attrs.define(eq=False)
class Piper(actors.Actor[StartWork | Busy | WorkDone | FetchFailed]):
    log: list[str] = attrs.Factory(list)

    @actors.handler
    def start(self, message: StartWork) -> None:
        self.ctx.pipe_to_self(self._work, on_result=WorkDone, on_error=FetchFailed)

    async def _work(self) -> str:
        await trio.sleep(7)
        return "result"

    @actors.handler
    async def busy(self, message: Busy) -> None:
        await trio.sleep(5)
        self.log.append("busy done")

    @actors.handler
    def done(self, message: WorkDone) -> None:
        self.log.append(message.value)

    @actors.handler
    def failed(self, message: FetchFailed) -> None:
        self.log.append(f"failed: {message.error}")


async def test_a_piped_result_refused_by_a_draining_stop_is_a_dead_letter(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    piper = Piper()
    ref = await system.spawn(piper)
    await ref.tell(StartWork())
    await ref.tell(Busy())
    await ref.tell(Busy())
    with system.dead_letters.subscribe() as letters:
        # The draining stop takes effect after the first Busy (t=5 s) and drains the
        # second (until t=10 s); the piped result comes at t=7 s and is refused.
        await ref.stop(drain=True)
        letter = letters.receive_nowait()
    assert piper.log == ["busy done", "busy done"]
    assert letter.message == WorkDone("result")
    assert letter.reason is actors.DeadLetterReason.STOPPED
