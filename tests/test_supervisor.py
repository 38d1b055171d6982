"""Supervision: strategies, restart types, intensity and escalation, backoff, dynamic children."""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import ChildSpec, RestartType, Strategy, Supervisor


@attrs.frozen
class Work:
    item: int


@attrs.frozen
class Crash:
    reason: str = "crash"


@attrs.frozen
class Quit:
    pass


@attrs.frozen
class Generation(actors.Request[int]):
    """Which incarnation answers (counts on_start calls across restarts)."""


WorkerMessage = Work | Crash | Quit | Generation


@attrs.define(eq=False)
class Journal:
    """What the workers did, shared with the test (survives restarts)."""

    starts: dict[str, int] = attrs.Factory(dict)
    stops: list[str] = attrs.Factory(list)
    done: list[tuple[str, int]] = attrs.Factory(list)


@attrs.define(eq=False)
class Worker(actors.Actor[WorkerMessage]):
    journal: Journal
    name: str
    generation: int = 0

    async def on_start(self) -> None:
        self.generation = self.journal.starts.get(self.name, 0) + 1
        self.journal.starts[self.name] = self.generation

    async def on_stop(self, reason: actors.StopReason) -> None:
        self.journal.stops.append(self.name)

    @actors.handler
    def work(self, message: Work) -> None:
        self.journal.done.append((self.name, message.item))

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError(message.reason)

    @actors.handler
    def quit(self, message: Quit) -> None:
        self.ctx.stop()

    @actors.handler
    def get_generation(self, message: Generation) -> int:
        return self.generation


def spec(
    journal: Journal,
    name: str,
    restart: RestartType = RestartType.PERMANENT,
    backoff: actors.Backoff | None = None,
) -> ChildSpec[WorkerMessage]:
    return ChildSpec(
        name, lambda: Worker(journal, name), restart=restart, backoff=backoff, shutdown=1
    )


async def children_of(supervisor: actors.ActorRef[actors.WhichChildren]) -> dict[str, object]:
    return dict(await supervisor.ask(actors.WhichChildren()))


async def child(
    supervisor: actors.ActorRef[actors.WhichChildren], name: str
) -> actors.ActorRef[WorkerMessage]:
    refs = await supervisor.ask(actors.WhichChildren())
    return refs[name]  # type: ignore[return-value]


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_one_for_one_restart_keeps_ref_name_and_queued_messages(
    system: actors.ActorSystem,
) -> None:
    journal = Journal()
    supervisor = await system.spawn(
        Supervisor([spec(journal, "a"), spec(journal, "b")]), name="sup"
    )
    a = await child(supervisor, "a")
    await a.tell(Crash())
    for item in range(3):  # queued behind the crash: must survive the restart
        await a.tell(Work(item))
    assert await a.ask(Generation()) == 2
    assert journal.done == [("a", 0), ("a", 1), ("a", 2)]
    assert journal.starts == {"a": 2, "b": 1}  # b untouched
    assert a.path == "/sup/a"
    assert (await child(supervisor, "a")) is a
    failed = [
        letter
        for letter in system.dead_letters.recent()
        if letter.reason is actors.DeadLetterReason.FAILED
    ]
    assert [letter.message for letter in failed] == [Crash()]
    assert isinstance(failed[0].error, RuntimeError)
    assert a._cell.restarts == 1


async def test_senders_keep_working_during_a_backoff_restart(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    backoff = actors.Backoff(minimum=2, maximum=2, jitter=0)
    supervisor = await system.spawn(Supervisor([spec(journal, "a", backoff=backoff)]))
    a = await child(supervisor, "a")
    start = trio.current_time()
    await a.tell(Crash())
    await settle()
    assert a.is_alive  # restarting, not stopped
    await a.tell(Work(1))  # accepted while the child is down
    assert await a.ask(Generation(), timeout=10) == 2
    assert trio.current_time() - start == pytest.approx(2)
    assert journal.done == [("a", 1)]


async def test_one_for_all_restarts_every_child(system: actors.ActorSystem) -> None:
    journal = Journal()
    supervisor = await system.spawn(
        Supervisor(
            [spec(journal, "a"), spec(journal, "b"), spec(journal, "c")],
            strategy=Strategy.ONE_FOR_ALL,
        )
    )
    b = await child(supervisor, "b")
    await b.tell(Crash())
    for name in "abc":
        assert await (await child(supervisor, name)).ask(Generation()) == 2
    assert journal.starts == {"a": 2, "b": 2, "c": 2}


async def test_rest_for_one_restarts_the_failed_child_and_younger_ones(
    system: actors.ActorSystem,
) -> None:
    journal = Journal()
    supervisor = await system.spawn(
        Supervisor(
            [spec(journal, "a"), spec(journal, "b"), spec(journal, "c")],
            strategy=Strategy.REST_FOR_ONE,
        )
    )
    await (await child(supervisor, "b")).tell(Crash())
    generations = {name: await (await child(supervisor, name)).ask(Generation()) for name in "abc"}
    assert generations == {"a": 1, "b": 2, "c": 2}


@pytest.mark.parametrize(
    ("restart", "after_crash", "after_quit"),
    [
        (RestartType.PERMANENT, True, True),
        (RestartType.TRANSIENT, True, False),
        (RestartType.TEMPORARY, False, False),
    ],
)
async def test_restart_types(
    system: actors.ActorSystem, restart: RestartType, after_crash: bool, after_quit: bool
) -> None:
    journal = Journal()
    supervisor = await system.spawn(
        Supervisor([spec(journal, "crasher", restart), spec(journal, "quitter", restart)])
    )
    crasher = await child(supervisor, "crasher")
    quitter = await child(supervisor, "quitter")
    await crasher.tell(Crash())
    await quitter.tell(Quit())
    await settle()
    assert crasher.is_alive is after_crash
    assert quitter.is_alive is after_quit
    assert set(await children_of(supervisor)) == {
        name for name, alive in (("crasher", after_crash), ("quitter", after_quit)) if alive
    }


async def test_stopping_a_child_from_outside_is_not_a_restart(
    system: actors.ActorSystem,
) -> None:
    journal = Journal()
    supervisor = await system.spawn(Supervisor([spec(journal, "a")]))
    a = await child(supervisor, "a")
    assert await a.stop() == actors.Normal()
    assert journal.starts == {"a": 1}
    assert await children_of(supervisor) == {}


async def test_intensity_exceeded_stops_children_youngest_first_and_escalates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = Journal()

    async def run() -> None:
        async with actors.open_system() as system:
            supervisor = await system.spawn(
                Supervisor(
                    [spec(journal, "a"), spec(journal, "b"), spec(journal, "c")],
                    max_restarts=2,
                    within=10,
                ),
                name="top",
            )
            b = await child(supervisor, "b")
            for _ in range(3):
                with trio.move_on_after(1):
                    await b.tell(Crash())
                await settle()
            await trio.sleep_forever()

    with pytest.raises(actors.RestartIntensityError, match="more than 2 restarts") as info:
        await run()
    assert isinstance(info.value.__cause__, RuntimeError)
    # b's last crash is not restarted; its siblings stop youngest first.
    assert journal.stops[-3:] == ["b", "c", "a"]


async def test_restarts_outside_the_window_do_not_count(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    supervisor = await system.spawn(Supervisor([spec(journal, "a")], max_restarts=1, within=5))
    a = await child(supervisor, "a")
    for _ in range(4):
        await a.tell(Crash())
        await settle()
        await trio.sleep(6)
    assert await a.ask(Generation()) == 5
    assert supervisor.is_alive


async def test_nested_supervisor_is_restarted_by_its_parent(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()

    def inner() -> Supervisor:
        return Supervisor([spec(journal, "leaf")], max_restarts=0)

    outer = await system.spawn(
        Supervisor([ChildSpec("inner", inner)], max_restarts=3), name="outer"
    )
    inner_ref = await child(outer, "inner")
    leaf = await child(inner_ref, "leaf")  # type: ignore[arg-type]
    assert leaf.path == "/outer/inner/leaf"
    await leaf.tell(Crash())  # inner may not restart anything: it fails, outer restarts it
    await settle()
    assert inner_ref.is_alive
    assert inner_ref._cell.restarts == 1
    new_leaf = await child(inner_ref, "leaf")  # type: ignore[arg-type]
    assert new_leaf is not leaf  # the inner supervisor started a fresh child
    assert not leaf.is_alive
    assert await new_leaf.ask(Generation()) == 2


@attrs.define(eq=False)
class Host(actors.Actor[actors.WhichChildren]):
    """A plain actor that hosts a supervisor as its child."""

    make: Callable[[], Supervisor]

    async def on_start(self) -> None:
        await self.ctx.spawn(self.make, name="sup")

    @actors.handler
    def which(self, message: actors.WhichChildren) -> dict[str, actors.ActorRef[object]]:
        return {}


async def test_escalation_into_a_plain_parent_fails_the_parent(
    system: actors.ActorSystem,
) -> None:
    journal = Journal()
    host = await system.spawn(
        Host(lambda: Supervisor([spec(journal, "a")], max_restarts=0)), name="host"
    )
    sup_cell = host._cell.children["sup"]
    a = await child(sup_cell.ref, "a")
    await a.tell(Crash())
    reason = await host.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, actors.RestartIntensityError)


async def test_backoff_delays_grow_and_reset_after_a_stable_period(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    backoff = actors.Backoff(minimum=1, maximum=4, jitter=0, reset_after=30)
    supervisor = await system.spawn(
        Supervisor([spec(journal, "a", backoff=backoff)], max_restarts=100, within=1)
    )
    a = await child(supervisor, "a")
    delays = []
    for _ in range(4):
        start = trio.current_time()
        await a.tell(Crash())
        await a.ask(Generation(), timeout=math.inf)
        delays.append(trio.current_time() - start)
    await trio.sleep(31)  # stable for longer than reset_after
    start = trio.current_time()
    await a.tell(Crash())
    await a.ask(Generation(), timeout=math.inf)
    delays.append(trio.current_time() - start)
    assert delays == pytest.approx([1, 2, 4, 4, 1])


def test_backoff_schedule_is_pure_and_validated() -> None:
    backoff = actors.Backoff(minimum=0.5, maximum=10, factor=3, jitter=0.5)
    assert backoff.delay(0, 0.5) == 0.5
    assert backoff.delay(1, 0.0) == pytest.approx(0.75)
    assert backoff.delay(2, 0.999999) == pytest.approx(6.75, rel=1e-5)
    assert backoff.delay(50, 0.5) == 10
    with pytest.raises(ValueError, match="must not be below minimum"):
        actors.Backoff(minimum=2, maximum=1)
    with pytest.raises(ValueError, match="jitter is a fraction"):
        actors.Backoff(jitter=2)


async def test_dynamic_children_with_a_cap(system: actors.ActorSystem) -> None:
    journal = Journal()
    supervisor = await system.spawn(Supervisor(max_children=2), name="conns")
    first = await actors.start_child(supervisor, spec(journal, "c1"))
    await actors.start_child(supervisor, spec(journal, "c2"))
    with pytest.raises(actors.TooManyChildrenError, match="already has 2 children"):
        await actors.start_child(supervisor, spec(journal, "c3"))
    assert set(await children_of(supervisor)) == {"c1", "c2"}
    await first.tell(Crash())
    assert await first.ask(Generation()) == 2  # dynamic children are supervised too
    assert await supervisor.ask(actors.StopChild("c1")) is True
    assert await supervisor.ask(actors.StopChild("c1")) is False
    await actors.start_child(supervisor, spec(journal, "c3"))
    assert set(await children_of(supervisor)) == {"c2", "c3"}


async def test_a_factory_must_make_a_new_actor_per_restart(system: actors.ActorSystem) -> None:
    journal = Journal()
    instance = Worker(journal, "x")
    supervisor = await system.spawn(Supervisor([ChildSpec("x", lambda: instance)]))
    x = await child(supervisor, "x")
    await x.tell(Crash())
    reason = await x.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, actors.ActorDefinitionError)
    assert "must return a new Actor for each restart" in str(reason.error)
    assert supervisor.is_alive


async def test_shutting_down_a_tree_stops_leaves_first(system: actors.ActorSystem) -> None:
    journal = Journal()

    def inner() -> Supervisor:
        return Supervisor([spec(journal, "leaf1"), spec(journal, "leaf2")])

    outer = await system.spawn(Supervisor([ChildSpec("inner", inner), spec(journal, "solo")]))
    await outer.stop()
    assert journal.stops == ["solo", "leaf2", "leaf1"]


async def test_restarts_and_final_failures_are_published_as_system_events() -> None:
    journal = Journal()
    seen: list[actors.SystemEvent] = []

    async def run() -> None:
        async with actors.open_system() as system:
            supervisor = await system.spawn(
                Supervisor([spec(journal, "a")], max_restarts=1), name="s"
            )
            a = await child(supervisor, "a")
            with system.events.subscribe(buffer=50) as events:
                await a.tell(Crash("first"))
                assert await a.ask(Generation()) == 2
                try:
                    await a.tell(Crash("second"))  # past the intensity: the supervisor fails
                    await trio.sleep_forever()
                finally:
                    while True:
                        try:
                            seen.append(events.receive_nowait())
                        except trio.WouldBlock:
                            break

    with pytest.raises(actors.RestartIntensityError):
        await run()
    (restarted,) = [event for event in seen if isinstance(event, actors.ActorRestarted)]
    assert (restarted.path, restarted.restarts) == ("/s/a", 1)
    assert str(restarted.error) == "first"
    failed = {event.path for event in seen if isinstance(event, actors.ActorFailed)}
    assert "/s/a" in failed
    letters = [event.letter for event in seen if isinstance(event, actors.DeadLetterPublished)]
    assert [letter.message for letter in letters][:2] == [Crash("first"), Crash("second")]


@attrs.define(eq=False)
class SlowStarter(actors.Actor[Work]):
    """Its start hook waits forever, like a client that cannot connect."""

    journal: Journal

    async def on_start(self) -> None:
        self.journal.starts["slow"] = self.journal.starts.get("slow", 0) + 1
        if self.journal.starts["slow"] > 1:
            await trio.sleep_forever()

    @actors.handler
    def work(self, message: Work) -> None:
        raise RuntimeError("fail so that the next start hangs")


async def test_a_stop_cuts_short_a_restart_stuck_in_its_start_hook(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    journal = Journal()
    supervisor = await system.spawn(Supervisor([ChildSpec("slow", lambda: SlowStarter(journal))]))
    slow = await child(supervisor, "slow")
    await slow.tell(Work(1))  # fails; the restart's on_start hangs
    await settle()
    assert journal.starts["slow"] == 2
    start = trio.current_time()
    assert await slow.stop() == actors.Normal()
    assert trio.current_time() == start
    assert await children_of(supervisor) == {}


async def test_spawn_of_an_actor_stopped_while_starting_raises(
    system: actors.ActorSystem,
) -> None:
    journal = Journal()
    journal.starts["slow"] = 1  # the first start already hangs

    async def stop_it_soon() -> None:
        await settle()
        system.children["slow"].request_stop(actors.Normal(), interrupt=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_it_soon)
        with pytest.raises(actors.ActorStoppedError, match="stopped while starting"):
            await system.spawn(SlowStarter(journal), name="slow")
