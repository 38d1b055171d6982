"""Fault injection for tests: actors that crash on, delay or drop chosen message types.

The public entry point is :func:`actors.testing.inject_faults`. It wraps an
actor factory; each instance it makes is switched to a generated subclass of
its own class whose handlers for the chosen types first apply the faults and
then call the original handler. The subclass adds no state (``__slots__ =
()``), so the instance keeps every attribute and behaves exactly as before for
all other messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio

from ._actor import _HANDLER_MARK, Actor, handler_table, resolve_handler
from ._exceptions import UnhandledMessageError
from ._messages import DeadLetterReason, Request

if TYPE_CHECKING:
    from typing import Never

A = TypeVar("A", bound="Actor[Never]")


@final
class InjectedFault(Exception):
    """The exception a handler raises for a message type named in ``crash_on``."""


def inject_faults(
    actor_factory: Callable[[], A],
    *,
    crash_on: type | tuple[type, ...] = (),
    delay: Mapping[type, float] | None = None,
    drop: type | tuple[type, ...] = (),
) -> Callable[[], A]:
    """Wrap an actor factory so that its actors misbehave on chosen message types.

    * ``crash_on``: handling a message of this type (or a subclass) raises
      :exc:`InjectedFault` instead of running the handler, so the actor fails
      exactly as if its handler had raised (dead letter with reason ``FAILED``,
      supervisor decision, stop reason :class:`~actors.Failed`).
    * ``delay``: ``{Type: seconds}``; the handler starts that many seconds
      (trio clock) after the message is taken from the mailbox, so messages
      behind it wait too.
    * ``drop``: the message is taken from the mailbox and not handled; it is
      published to dead letters with reason
      :attr:`~actors.DeadLetterReason.DROPPED` (never silently lost). Only
      told messages can be dropped: a :class:`~actors.Request` type is refused,
      because its ask would be answered with ``None``.

    Faults of one type combine in that order: delay, then drop, then crash.
    Every type named must be handled by the actor, else spawning raises
    :exc:`~actors.UnhandledMessageError`. Use the result wherever a factory
    is accepted (``system.spawn``, ``ctx.spawn``, supervised actors, whose
    restarts come from the same factory)::

        flaky = inject_faults(Counter, crash_on=Boom, delay={Add: 0.5})
        counter = await system.spawn(flaky)
    """
    if isinstance(actor_factory, Actor):
        raise TypeError(
            f"inject_faults() takes a factory (the actor class or a function returning an "
            f"instance), not the instance {actor_factory!r}; write inject_faults(lambda: ...)"
        )
    crash = _as_types("crash_on", crash_on)
    dropped = _as_types("drop", drop)
    pauses = dict(delay or {})
    for message_type, seconds in pauses.items():
        _as_types("delay", message_type)
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(
                f"inject_faults() delay for {message_type.__qualname__} must be a finite "
                f"number of seconds, zero or more, not {seconds!r}"
            )
    for message_type in dropped:
        if issubclass(message_type, Request):
            raise TypeError(
                f"inject_faults() cannot drop {message_type.__qualname__}: it is a Request, and a "
                "dropped ask would be answered with None. Drop told messages only, or use "
                "delay= longer than the ask timeout"
            )
    made: dict[type, type] = {}

    def factory() -> A:
        instance = actor_factory()
        if not isinstance(instance, Actor):
            raise TypeError(
                f"the factory given to inject_faults() returned {instance!r}, not an Actor"
            )
        cls = type(instance)
        faulty = made.get(cls)
        if faulty is None:
            faulty = made[cls] = _faulty_class(cls, crash, pauses, dropped)
        object.__setattr__(instance, "__class__", faulty)
        return instance

    return factory


def _as_types(what: str, value: type | tuple[type, ...]) -> tuple[type, ...]:
    types_ = value if isinstance(value, tuple) else (value,)
    for item in types_:
        if not isinstance(item, type):
            raise TypeError(f"inject_faults() {what} takes message classes, not {item!r}")
    return types_


def _faulty_class(
    cls: type, crash: tuple[type, ...], pauses: dict[type, float], dropped: tuple[type, ...]
) -> type:
    table = handler_table(cls)
    fault_types = {*crash, *pauses, *dropped}
    for message_type in fault_types:
        if message_type not in table and not resolve_handler(table, message_type):
            accepted = ", ".join(sorted(t.__qualname__ for t in table))
            raise UnhandledMessageError(
                f"inject_faults() names {message_type.__qualname__}, but {cls.__qualname__} has "
                f"no handler for it; name message types it handles: {accepted}"
            )
    all_faults = tuple(fault_types)
    wrapped = {key for key in table if issubclass(key, all_faults)}
    namespace: dict[str, object] = {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}+faults",
        "__doc__": f"{cls.__qualname__} with injected faults (actors.testing.inject_faults).",
    }
    for index, key in enumerate(sorted(wrapped, key=lambda t: t.__qualname__)):
        function, is_async = table[key]
        namespace[f"_injected_fault_{index}"] = _faulty_handler(
            key, function, is_async, crash, pauses, dropped
        )
    return type(cls.__name__, (cls,), namespace)


def _faulty_handler(
    key: type,
    function: Callable[[Any, Any], Any],
    is_async: bool,
    crash: tuple[type, ...],
    pauses: dict[type, float],
    dropped: tuple[type, ...],
) -> Callable[[Actor[Any], object], Any]:
    async def faulty(self: Actor[Any], message: object) -> object:
        pause = next((pauses[t] for t in type(message).__mro__ if t in pauses), 0.0)
        await trio.sleep(pause)  # with no delay, a plain checkpoint
        cell = self._actor_cell
        if isinstance(message, dropped):
            cell.dead_letter(message, cell.sender, DeadLetterReason.DROPPED)
            return None
        if isinstance(message, crash):
            raise InjectedFault(
                f"injected fault: actor {cell.path} crashed on {message!r} "
                f"(inject_faults crash_on={type(message).__qualname__})"
            )
        result = function(self, message)
        if is_async:
            result = await result
        return result

    setattr(faulty, _HANDLER_MARK, (key,))
    faulty.__name__ = faulty.__qualname__ = f"{function.__name__}+faults"
    return faulty
