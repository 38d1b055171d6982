"""Introspection: snapshots of the live tree, the printed tree, JSON, the log filter."""

from __future__ import annotations

import json
import logging

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import wait_idle
from tests.messages import Add, Boom, Counter, Total, keep_busy


@attrs.define(eq=False)
class Room(actors.Actor[Add]):
    """Spawns two sessions and keeps a timer, like a small chat room."""

    async def on_start(self) -> None:
        await self.ctx.spawn(Counter(), name="alice")
        await self.ctx.spawn(Counter(), name="bob")
        self.ctx.timers.start_fixed_rate("flush", Add(0), 60)

    @actors.handler
    def add(self, message: Add) -> None:
        pass


async def test_snapshot_copies_the_live_tree(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    room = await system.spawn(Room(), name="lobby")
    await trio.sleep(5)
    counter = await system.spawn(Counter(), name="counter", mailbox_size=8)
    await counter.tell(Add(2))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 10)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            await counter.tell(Add(1))
        await trio.sleep(2)

        taken = system.snapshot()

        nursery.cancel_scope.cancel()

    assert taken.system == "test"
    assert [a.path for a in taken.walk()] == ["/lobby", "/lobby/alice", "/lobby/bob", "/counter"]
    lobby = taken.find("/lobby")
    assert lobby.name == "lobby"
    assert lobby.actor_class == f"{Room.__module__}.Room"
    assert lobby.state == "running"
    assert lobby.age == 7
    assert lobby.timers == ("'flush'",)
    assert [child.name for child in lobby.children] == ["alice", "bob"]
    busy = taken.find("/counter")
    assert (busy.mailbox_depth, busy.mailbox_high_water, busy.mailbox_capacity) == (3, 3, 8)
    assert busy.processed == 1
    assert busy.age == 2
    assert busy.restarts == 0
    assert busy.last_failure is None
    assert room.is_alive


async def test_snapshot_shows_restarts_failures_and_dead_letters(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    supervisor = await system.spawn(actors.Supervisor(), name="sup")
    worker = await actors.start_child(supervisor, actors.ChildSpec("worker", Counter))
    await worker.tell(Boom(ValueError("disk full")))
    await wait_idle(system)

    taken = system.snapshot()

    node = taken.find("/sup/worker")
    assert node.restarts == 1
    assert node.last_failure == "ValueError('disk full')"
    assert node.dead_lettered == 1
    assert taken.dead_letters == 1


async def test_snapshot_is_frozen_and_find_names_the_known_paths(
    system: actors.ActorSystem,
) -> None:
    await system.spawn(Counter(), name="only")
    taken = system.snapshot()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        taken.find("/only").state = "stopped"  # type: ignore[misc]
    with pytest.raises(KeyError, match=r"no actor at '/nope' in this snapshot; actors: /only"):
        taken.find("/nope")


async def test_as_dict_is_json_ready(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    await system.spawn(Room(), name="lobby")
    await trio.sleep(1)
    data = json.loads(json.dumps(system.snapshot().as_dict()))
    assert data["system"] == "test"
    (lobby,) = data["actors"]
    assert lobby["path"] == "/lobby"
    assert lobby["timers"] == ["'flush'"]
    assert [child["name"] for child in lobby["children"]] == ["alice", "bob"]
    assert lobby["children"][0]["children"] == []
    assert lobby["age"] == 1


async def test_format_tree_prints_an_indented_tree(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    await system.spawn(Room(), name="lobby")
    await trio.sleep(1.5)
    counter = await system.spawn(Counter(), name="counter")
    await counter.tell(Add(1))
    assert await counter.ask(Total()) == 1
    with pytest.raises(ValueError, match="x"):
        await counter.ask(Boom(ValueError("x")))
    await trio.sleep(0.5)

    text = actors.format_tree(system.snapshot())

    assert text == "\n".join(
        [
            f"system 'test' at t={start + 2:.1f}: 3 actors, 1 dead letter",
            "└── lobby  Room  running  mailbox 0/256 (high 0)  processed 0  timers 'flush'  age 2.0s",
            "    ├── alice  Counter  running  mailbox 0/256 (high 0)  processed 0  age 2.0s",
            "    └── bob  Counter  running  mailbox 0/256 (high 0)  processed 0  age 2.0s",
        ]
    )
    assert "counter" not in text  # it failed and stopped: no longer part of the live tree


async def test_a_busy_sender_and_its_waiting_senders_show_in_the_tree(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    counter = await system.spawn(Counter(), name="counter", mailbox_size=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_busy, counter, 10)
        await trio.testing.wait_all_tasks_blocked()
        await counter.tell(Add(1))
        nursery.start_soon(counter.tell, Add(2))
        await trio.testing.wait_all_tasks_blocked()
        line = actors.format_tree(system.snapshot()).splitlines()[1]
        assert "mailbox 1/1 (high 1)" in line
        assert "senders waiting 1" in line


def make_record(path: str | None) -> logging.LogRecord:
    record = logging.LogRecord("actors", logging.INFO, __file__, 1, "hello", None, None)
    if path is not None:
        record.actor_path = path
    return record


def test_path_filter_keeps_a_subtree_and_always_sets_actor_path() -> None:
    chat = actors.ActorPathFilter("/chat")
    assert chat.filter(make_record("/chat"))
    assert chat.filter(make_record("/chat/lobby"))
    assert not chat.filter(make_record("/chatter"))
    assert not chat.filter(make_record(None))

    everything = actors.ActorPathFilter()
    plain = make_record(None)
    assert everything.filter(plain)
    assert logging.Formatter("%(actor_path)s %(message)s").format(plain) == "- hello"
    with pytest.raises(ValueError, match="starts with '/'"):
        actors.ActorPathFilter("chat")


async def test_snapshot_shows_registered_names_and_groups(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter(), name="counter")
    system.register("totals", counter)
    system.register("sums", counter)
    system.join_group("workers", counter)
    system.join_group("adders", counter)

    node = system.snapshot().find("/counter")

    assert (node.names, node.groups) == (("totals", "sums"), ("workers", "adders"))
    assert (
        actors.format_tree(system.snapshot())
        .splitlines()[1]
        .endswith("names totals, sums  groups workers, adders  age 0.0s")
    )
    system.unregister("sums")
    system.leave_group("adders", counter)
    node = system.snapshot().find("/counter")
    assert (node.names, node.groups) == (("totals",), ("workers",))


async def test_each_system_keeps_its_own_names_groups_and_topics() -> None:
    async with actors.open_system("one") as one, actors.open_system("two") as two:
        first = await one.spawn(Counter())
        one.register("counter", first)
        one.join_group("workers", first)
        one_topic: actors.Topic[int] = one.topic("numbers")
        assert two.lookup("counter") is None
        assert two.group_members("workers") == []
        assert two.topic("numbers") is not one_topic
    assert one_topic.statistics().subscribers == 0
    with pytest.raises(actors.SystemClosedError):
        one.topic("numbers")
