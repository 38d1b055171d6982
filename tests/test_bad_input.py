"""Bad input gets a clear, specific error; nothing hangs."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import actors
from tests.messages import Add, Counter, Total


@attrs.frozen
class Unknown:
    pass


@attrs.frozen
class SpecialAdd(Add):
    pass


async def test_message_of_a_type_the_actor_does_not_handle(system: actors.ActorSystem) -> None:
    counter: actors.ActorRef[Any] = await system.spawn(Counter(), name="counter")
    with pytest.raises(
        actors.UnhandledMessageError, match=r"actor /counter .* no handler for Unknown"
    ):
        await counter.tell(Unknown())
    with pytest.raises(actors.UnhandledMessageError):
        counter.tell_nowait(Unknown())
    assert issubclass(actors.UnhandledMessageError, TypeError)
    assert counter.statistics().depth == 0


async def test_subclass_of_a_handled_type_is_dispatched(system: actors.ActorSystem) -> None:
    counter = await system.spawn(Counter())
    await counter.tell(SpecialAdd(4))
    assert await counter.ask(Total()) == 4


def test_handler_for_a_type_not_declared_is_refused() -> None:
    class Wrong(actors.Actor[Add]):
        @actors.handler(Unknown)
        def unknown(self, message: object) -> None:
            pass

        @actors.handler(Add)
        def add(self, message: object) -> None:
            pass

    with pytest.raises(actors.ActorDefinitionError, match="handles Unknown, which is not among"):
        actors._actor.handler_table(Wrong)


def test_declared_type_without_handler_is_refused() -> None:
    class Missing(actors.Actor[Add | Total]):
        @actors.handler(Add)
        def add(self, message: object) -> None:
            pass

    with pytest.raises(actors.ActorDefinitionError, match=r"declares Total .* no @handler"):
        actors._actor.handler_table(Missing)


def test_unresolvable_annotation_says_what_to_do() -> None:
    @attrs.frozen
    class Local:
        pass

    class Confused(actors.Actor[Local]):
        @actors.handler
        def local(self, message: Local) -> None:
            pass

    with pytest.raises(actors.ActorDefinitionError, match=r"@handler\(MessageType\)"):
        actors._actor.handler_table(Confused)


def test_handler_decorator_rejects_non_types() -> None:
    with pytest.raises(actors.ActorDefinitionError, match="takes message classes"):
        actors.handler("Add")  # type: ignore[call-overload]


async def test_spawn_rejects_non_actors(system: actors.ActorSystem) -> None:
    with pytest.raises(TypeError, match="takes an Actor instance"):
        await system.spawn(lambda: "not an actor")  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("name", ["", "a/b"])
async def test_spawn_rejects_bad_names(system: actors.ActorSystem, name: str) -> None:
    with pytest.raises(ValueError, match="actor names are non-empty strings"):
        await system.spawn(Counter(), name=name)


@pytest.mark.parametrize(
    "kwargs",
    [{"mailbox_size": 0}, {"ask_timeout": 0}, {"stop_timeout": -1}],
)
async def test_system_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        async with actors.open_system(**kwargs):  # type: ignore[arg-type]
            pass


async def test_spawn_rejects_bad_mailbox_size(system: actors.ActorSystem) -> None:
    with pytest.raises(ValueError, match="mailbox capacity must be at least 1"):
        await system.spawn(Counter(), mailbox_size=0)
