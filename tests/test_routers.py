"""Routers: pools and groups, the five routing logics, asks, resizing, crashed routees."""

from __future__ import annotations

import collections

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import wait_idle


@attrs.frozen
class Job:
    key: str = ""


@attrs.frozen
class WhoAreYou(actors.Request[str]):
    key: str = ""


@attrs.frozen
class Crash:
    pass


@attrs.frozen
class Slow:
    seconds: float


Message = Job | WhoAreYou | Crash | Slow


@attrs.define(eq=False)
class Worker(actors.Actor[Message]):
    """Records which routee handled each job, in a log shared by the test."""

    log: list[tuple[str, str]]

    @actors.handler
    def job(self, message: Job) -> None:
        self.log.append((self.ctx.name, message.key))

    @actors.handler
    def who(self, message: WhoAreYou) -> str:
        return self.ctx.name

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError("routee crashed")

    @actors.handler
    async def slow(self, message: Slow) -> None:
        await trio.sleep(message.seconds)


def counts(log: list[tuple[str, str]]) -> dict[str, int]:
    return dict(collections.Counter(name for name, _ in log))


async def pool_of(
    system: actors.ActorSystem, size: int, routing: actors.Routing | None = None
) -> tuple[actors.Router[Message], list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    router = await system.spawn_pool(lambda: Worker(log), size=size, routing=routing, name="pool")
    return router, log


async def test_round_robin_takes_each_routee_in_turn(system: actors.ActorSystem) -> None:
    router, log = await pool_of(system, 4)
    assert [ref.path for ref in router.routees] == [f"/pool/routee-{n}" for n in range(1, 5)]
    for n in range(10):
        await router.tell(Job(str(n)))
    router.tell_nowait(Job("10"))
    await wait_idle(system)
    assert [name for name, _ in log] == [f"routee-{n % 4 + 1}" for n in range(11)]


async def test_asks_go_through_the_router(system: actors.ActorSystem) -> None:
    router, _ = await pool_of(system, 3)
    answers = [await router.ask(WhoAreYou()) for _ in range(4)]
    assert answers == ["routee-1", "routee-2", "routee-3", "routee-1"]


async def test_random_choice_spreads_over_every_routee(system: actors.ActorSystem) -> None:
    router, log = await pool_of(system, 4, actors.RandomChoice(seed=7))
    for _ in range(200):
        await router.tell(Job())
    await wait_idle(system)
    assert set(counts(log)) == {f"routee-{n}" for n in range(1, 5)}
    assert all(count > 20 for count in counts(log).values())


async def test_broadcast_tells_every_routee_and_refuses_asks(system: actors.ActorSystem) -> None:
    router, log = await pool_of(system, 3, actors.Broadcast())
    await router.tell(Job("a"))
    router.tell_nowait(Job("b"))
    await wait_idle(system)
    assert sorted(log) == sorted((f"routee-{n}", key) for n in range(1, 4) for key in "ab")
    with pytest.raises(TypeError, match="ask each one"):
        await router.ask(WhoAreYou())


async def test_smallest_mailbox_avoids_the_busy_routee(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    router, log = await pool_of(system, 2, actors.SmallestMailbox())
    first, _ = router.routees
    await first.tell(Slow(10))
    await first.tell(Job("queued behind the slow one"))
    await trio.testing.wait_all_tasks_blocked()
    for n in range(3):
        await router.tell(Job(str(n)))
        await trio.testing.wait_all_tasks_blocked()
    assert log == [("routee-2", "0"), ("routee-2", "1"), ("routee-2", "2")]


async def test_consistent_hashing_keeps_a_key_on_one_routee(system: actors.ActorSystem) -> None:
    routing = actors.ConsistentHashing(key=lambda message: message.key)
    router, log = await pool_of(system, 5, routing)
    for _ in range(3):
        for key in ("alice", "bob", "carol", "dave"):
            await router.tell(Job(key))
    await wait_idle(system)
    owners: dict[str, set[str]] = collections.defaultdict(set)
    for name, key in log:
        owners[key].add(name)
    assert all(len(names) == 1 for names in owners.values())
    assert len(set().union(*owners.values())) > 1


def owners_of(router: actors.Router[Message], keys: list[str]) -> dict[str, str]:
    router.routees  # noqa: B018 - refresh the ring after a resize
    return {key: router.routing.select(Job(key), router.routees).name for key in keys}


@pytest.mark.parametrize("size", [4, 8, 16])
async def test_consistent_hashing_moves_about_one_nth_of_the_keys_on_resize(
    system: actors.ActorSystem, size: int
) -> None:
    routing = actors.ConsistentHashing(key=lambda message: message.key)
    router, _ = await pool_of(system, size, routing)
    keys = [f"user-{n}" for n in range(20_000)]
    before = owners_of(router, keys)

    await router.resize(size + 1)
    grown = owners_of(router, keys)
    moved = [key for key in keys if grown[key] != before[key]]
    share = len(moved) / len(keys)
    assert 0.5 / (size + 1) < share < 1.5 / (size + 1)
    assert {grown[key] for key in moved} == {f"routee-{size + 1}"}  # all to the newcomer

    await router.resize(size)
    assert owners_of(router, keys) == before  # the newcomer's keys come back


async def test_resize_grows_and_shrinks_youngest_first(system: actors.ActorSystem) -> None:
    router, _ = await pool_of(system, 2)
    await router.resize(4)
    assert [ref.name for ref in router.routees] == [f"routee-{n}" for n in range(1, 5)]
    removed = router.routees[2:]
    await router.resize(1)
    assert [ref.name for ref in router.routees] == ["routee-1"]
    assert not any(ref.is_alive for ref in removed)
    await router.resize(2)
    assert [ref.name for ref in router.routees] == ["routee-1", "routee-5"]
    await router.resize(0)
    with pytest.raises(actors.NoRouteesError, match="router over pool /pool has no routees"):
        await router.tell(Job())
    with pytest.raises(ValueError, match="zero or more"):
        await router.resize(-1)


async def test_a_crashed_routee_is_replaced_and_keeps_its_place(
    system: actors.ActorSystem,
) -> None:
    router, log = await pool_of(system, 3)
    before = router.routees
    await router.tell(Crash())  # routee-1 crashes and is restarted
    for n in range(3):
        await router.tell(Job(str(n)))
    await wait_idle(system)
    assert router.routees == before
    assert all(ref.is_alive for ref in before)
    assert sorted(log) == [("routee-1", "2"), ("routee-2", "0"), ("routee-3", "1")]
    assert system.snapshot().find("/pool/routee-1").restarts == 1


async def test_stopping_the_pool_stops_its_routees(system: actors.ActorSystem) -> None:
    router, _ = await pool_of(system, 2)
    routees = router.routees
    assert router.pool is not None
    assert router.pool.path == "/pool"
    assert await router.stop() == actors.Normal()
    assert not any(ref.is_alive for ref in routees)
    with pytest.raises(actors.NoRouteesError):
        await router.ask(WhoAreYou())


async def test_a_group_router_follows_the_group(system: actors.ActorSystem) -> None:
    log: list[tuple[str, str]] = []
    router = system.group_router("workers", handles=Job)
    with pytest.raises(actors.NoRouteesError, match="group 'workers'"):
        await router.tell(Job())
    first = await system.spawn(Worker(log), name="first")
    second = await system.spawn(Worker(log), name="second")
    system.join_group("workers", first)
    await router.tell(Job("a"))
    system.join_group("workers", second)
    await router.tell(Job("b"))
    await router.tell(Job("c"))
    await first.stop()
    await router.tell(Job("d"))
    await wait_idle(system)
    assert sorted(log) == [("first", "a"), ("first", "c"), ("second", "b"), ("second", "d")]
    assert router.pool is None
    with pytest.raises(TypeError, match="join or leave the group"):
        await router.resize(3)
    with pytest.raises(TypeError, match="stop the group's members"):
        await router.stop()


async def test_a_group_router_checks_what_members_handle(system: actors.ActorSystem) -> None:
    @attrs.define(eq=False)
    class Other(actors.Actor[Crash]):
        @actors.handler(Crash)
        def crash(self, message: Crash) -> None:
            pass

    system.join_group("workers", await system.spawn(Other()))
    router = system.group_router("workers", handles=Job)
    with pytest.raises(actors.UnhandledMessageError, match="no handler for Job"):
        await router.tell(Job())


@attrs.define(eq=False)
class Boss(actors.Actor[WhoAreYou]):
    """Owns a pool of workers and forwards asks to it."""

    log: list[tuple[str, str]] = attrs.Factory(list)
    workers: actors.Router[Message] | None = None

    async def on_start(self) -> None:
        self.workers = await self.ctx.spawn_pool(lambda: Worker(self.log), size=2, name="workers")

    @actors.handler
    async def who(self, message: WhoAreYou) -> str:
        assert self.workers is not None
        return await self.workers.ask(message)


async def test_an_actor_owns_a_pool_of_children(system: actors.ActorSystem) -> None:
    boss = await system.spawn(Boss(), name="boss")
    assert [await boss.ask(WhoAreYou()) for _ in range(3)] == ["routee-1", "routee-2", "routee-1"]
    assert [a.path for a in system.snapshot().walk()] == [
        "/boss",
        "/boss/workers",
        "/boss/workers/routee-1",
        "/boss/workers/routee-2",
    ]


def test_ring_hash_is_stable_and_typed() -> None:
    from actors._routing import ring_hash

    assert ring_hash("alice") == ring_hash(b"alice") != ring_hash("bob")
    assert ring_hash(42) == ring_hash("42")
    with pytest.raises(TypeError, match="must be str, bytes or int"):
        ring_hash(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="virtual_nodes"):
        actors.ConsistentHashing(key=str, virtual_nodes=0)
