"""A supervision tree: a crashing worker restarted with backoff, until the supervisor gives up.

Run it from the repository root: ``python -m examples.runtime.supervision``.

The worker is restarted in place: its ref, its name and the messages queued behind the crash
survive, while its state starts afresh. Restarts wait out an exponential backoff. Past the
supervisor's restart intensity (more than 3 restarts within 10 seconds) the supervisor fails,
stops its children and escalates; at the top of the tree the error leaves ``open_system``.
Time is virtual (``MockClock``): the program finishes at once.
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

import actors

from .transcript import log_runtime_to_stdout, stamp


@attrs.frozen
class Job:
    number: int


@attrs.frozen
class Crash:
    why: str


@attrs.frozen
class Status(actors.Request[str]):
    pass


@attrs.define(eq=False)
class Worker(actors.Actor[Job | Crash | Status]):
    incarnation: int
    done: list[int] = attrs.Factory(list)  # state of this incarnation only

    async def on_start(self) -> None:
        print(f"{stamp()} {self.ctx.path}: incarnation {self.incarnation} started")

    @actors.handler
    def job(self, message: Job) -> None:
        self.done.append(message.number)
        print(f"{stamp()} {self.ctx.path}: incarnation {self.incarnation} did job {message.number}")

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError(message.why)

    @actors.handler
    def status(self, message: Status) -> str:
        return f"incarnation {self.incarnation}, jobs done since its start: {self.done}"


class WorkerFactory:
    """Makes a fresh Worker for every (re)start, numbering the incarnations."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> Worker:
        self.made += 1
        return Worker(self.made)


def describe(event: actors.SystemEvent) -> str:
    if isinstance(event, actors.ActorRestarted):
        return f"{event.path} restarted (restart #{event.restarts}) after {event.error!r}"
    if isinstance(event, actors.ActorFailed):
        return f"{event.path} failed for good: {event.error!r}"
    if isinstance(event, actors.DeadLetterPublished):
        letter = event.letter
        return f"dead letter to {letter.recipient} ({letter.reason.value}): {letter.message!r}"
    return repr(event)


def show_events(events: actors.TopicReceiveChannel[actors.SystemEvent]) -> None:
    """Print the system events published so far (without waiting for more)."""
    while True:
        try:
            event = events.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        print(f"         event: {describe(event)}")


async def run_shop(system: actors.ActorSystem) -> None:
    spec = actors.ChildSpec(
        "worker",
        WorkerFactory(),
        restart=actors.RestartType.PERMANENT,
        backoff=actors.Backoff(minimum=0.5, maximum=4.0, factor=2, jitter=0),
    )
    shop = await system.spawn(
        actors.Supervisor(strategy=actors.Strategy.ONE_FOR_ONE, max_restarts=3, within=10),
        name="shop",
    )
    worker = await actors.start_child(shop, spec)

    with system.events.subscribe() as events:
        try:
            print(f"{stamp()} main: Crash, then Job(1) queued behind it")
            await worker.tell(Crash("bad input"))
            await worker.tell(Job(1))
            await trio.sleep(0.3)
            state = system.snapshot().find(worker.path).state
            print(f"{stamp()} main: {worker.path} is {state}; Job(2) is accepted meanwhile")
            await worker.tell(Job(2))
            print(actors.format_tree(system.snapshot()))
            status = await worker.ask(Status())
            show_events(events)
            print(f"{stamp()} main: {status}")
            same = (await shop.ask(actors.WhichChildren()))["worker"] is worker
            print(f"{stamp()} main: the supervisor's child is still the same ref: {same}")

            for attempt in (2, 3):
                print(f"{stamp()} main: Crash #{attempt}")
                await worker.tell(Crash(f"crash #{attempt}"))
                status = await worker.ask(Status())
                show_events(events)
                print(f"{stamp()} main: {status}")

            print(f"{stamp()} main: Crash #4, the 4th restart within 10s")
            await worker.tell(Crash("crash #4"))
            await trio.sleep_forever()  # the escalation cancels this block
        finally:
            show_events(events)


async def main() -> None:
    log_runtime_to_stdout()
    try:
        async with actors.open_system("supervision") as system:
            await run_shop(system)
    except actors.RestartIntensityError as exc:
        print(f"{stamp()} open_system raised {type(exc).__name__}: {exc}")
        print(f"{stamp()} its __cause__: {exc.__cause__!r}")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
