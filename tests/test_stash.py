"""The stash: bounded, refuses when full, unstashes in order, dead letters on stop, kept on restart."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing import wait_idle


@attrs.frozen
class Query(actors.Request[str]):
    text: str


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class Connect:
    pass


@attrs.frozen
class Crash:
    pass


@attrs.define(eq=False)
class Client(actors.Actor[Query | Note | Connect | Crash]):
    """Stashes queries and notes until connected; then answers them in order."""

    log: list[str] = attrs.Factory(list)
    connected: bool = False

    @actors.handler
    def query(self, message: Query) -> str:
        if not self.connected:
            self.ctx.stash.stash()
            return "never seen by the asker"
        self.log.append(f"query {message.text}")
        return message.text.upper()

    @actors.handler
    def note(self, message: Note) -> None:
        if not self.connected:
            self.ctx.stash.stash()
            return
        self.log.append(f"note {message.text}")

    @actors.handler
    def connect(self, message: Connect) -> None:
        self.connected = True
        self.log.append(f"connected, {self.ctx.stash.unstash_all()} unstashed")

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError("connection lost")


async def test_stashed_messages_are_unstashed_in_order_ahead_of_the_queue(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client = Client()
    ref = await system.spawn(client)
    answers: dict[str, str] = {}

    async def ask(text: str) -> None:
        answers[text] = await ref.ask(Query(text), timeout=10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "a")
        await trio.testing.wait_all_tasks_blocked()
        await ref.tell(Note("b"))
        nursery.start_soon(ask, "c")
        await trio.testing.wait_all_tasks_blocked()
        assert answers == {}  # the asks wait while stashed
        await ref.tell(Connect())
        await ref.tell(Note("d"))  # queued after Connect: handled after the stash
    assert answers == {"a": "A", "c": "C"}
    await wait_idle(system)
    assert client.log == ["connected, 3 unstashed", "query a", "note b", "query c", "note d"]


async def test_a_full_stash_raises_instead_of_dropping(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    client = Client()
    ref = await system.spawn(client, mailbox_size=2)
    await ref.tell(Note("1"))
    await ref.tell(Note("2"))
    await wait_idle(system)
    with actors.watching(ref) as terminated:
        await ref.tell(Note("3"))  # the stash holds the mailbox's capacity: 2
        reason = (await terminated.receive()).reason
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, actors.StashFullError)
    assert "stash of actor /client-1 is full (2 messages)" in str(reason.error)


async def test_stashed_messages_go_to_dead_letters_when_the_actor_stops(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = await system.spawn(Client())
    outcome: list[BaseException] = []

    async def ask() -> None:
        try:
            await ref.ask(Query("lost"), timeout=10)
        except actors.ActorStoppedError as exc:
            outcome.append(exc)

    with system.dead_letters.subscribe() as letters:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            await ref.tell(Note("lost too"))
            await wait_idle(system)
            await ref.stop()
        stopped = [letters.receive_nowait() for _ in range(2)]
    assert trio.current_time() < 1  # the asker failed at once, not at its deadline
    assert len(outcome) == 1
    assert [letter.message for letter in stopped] == [Query("lost"), Note("lost too")]
    assert {letter.reason for letter in stopped} == {actors.DeadLetterReason.STOPPED}


async def test_a_restart_hands_the_stash_to_the_new_incarnation(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    incarnations: list[Client] = []

    def make() -> Client:
        incarnations.append(Client())
        return incarnations[-1]

    supervisor = await system.spawn(actors.Supervisor())
    ref = await actors.start_child(supervisor, actors.ChildSpec("client", make))
    await ref.tell(Note("kept"))
    await ref.tell(Crash())
    await wait_idle(system)
    assert len(incarnations) == 2
    # The restarted client is not connected either: it stashes the note again.
    await ref.tell(Connect())
    await wait_idle(system)
    assert incarnations[1].log == ["connected, 1 unstashed", "note kept"]


async def test_stash_outside_a_handler_is_refused(system: actors.ActorSystem) -> None:
    client = Client()
    await system.spawn(client)
    with pytest.raises(RuntimeError, match="found no message to stash"):
        client.ctx.stash.stash()
    assert len(client.ctx.stash) == 0
    assert not client.ctx.stash.is_full
