"""The ``Actor`` base class and the ``@handler`` decorator that builds its dispatch table."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from ._exceptions import ActorDefinitionError
from ._messages import Request

if TYPE_CHECKING:
    from ._cell import Cell
    from ._context import ActorContext
    from ._messages import StopReason

M_contra = TypeVar("M_contra", contravariant=True)
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M")
R = TypeVar("R")
S = TypeVar("S")

_HANDLER_MARK = "__actors_handles__"


class Actor(Generic[M_contra]):
    """Base class of actors; ``M_contra`` is the type (often a union) of messages it accepts.

    Write an actor as an attrs class whose methods marked with :func:`handler`
    take one message each; the method is picked by the message's type and its
    return value is the reply to an :meth:`~actors.ActorRef.ask`::

        @attrs.define(eq=False)
        class Counter(actors.Actor[Increment | GetCount]):
            count: int = 0

            @actors.handler
            def increment(self, message: Increment) -> None:
                self.count += message.by

            @actors.handler
            def get(self, message: GetCount) -> int:
                return self.count

    Handlers may be plain or ``async`` functions. An actor processes one
    message at a time, so its own state needs no lock. While a handler awaits,
    the mailbox waits too: to wait on something slow (another actor, the
    network), start it with :meth:`ActorContext.pipe_to_self` and handle the
    outcome as a message.
    """

    __slots__ = ("_actor_cell",)
    _actor_cell: Cell

    @property
    def ctx(self) -> ActorContext[M_contra]:
        """This actor's context: its own ref, spawning, tasks, stopping."""
        try:
            return self._actor_cell.context
        except AttributeError:
            raise RuntimeError(
                f"{type(self).__name__} has no context yet: it is not running. "
                "Spawn it with system.spawn() or ctx.spawn() first."
            ) from None

    def _bind_cell(self, cell: Cell | None) -> None:
        if cell is None:
            del self._actor_cell
        else:
            self._actor_cell = cell

    async def on_start(self) -> None:
        """Called in the actor's task before its ref is handed to anyone.

        If it raises, ``spawn`` raises the same exception and the actor never
        runs. ``self.ctx`` is usable here (spawn children, start tasks).
        """

    def on_spell_start(self) -> None:
        """Called before the first message of a *busy spell*; override to batch work.

        The actor's loop takes the messages that are ready one after another,
        up to 64 in a row, without letting other tasks run in between (it
        still checks for cancellation, and control messages still overtake
        ordinary ones between two messages): that run is a busy spell. A spell
        ends when the mailbox is empty, after its 64th message, or when the
        loop ends; :meth:`on_spell_end` then runs before the loop waits or
        lets other tasks run. Together they let an actor share work among the
        messages of a spell: a connection writes the frames of a spell with one
        write, a stream consumer acknowledges them together.

        It must not block (it is not async); if it raises, the actor fails
        with that exception, as if a handler had raised. Actors that do not
        override the hooks pay nothing for them.
        """

    async def on_spell_end(self) -> None:
        """Called once at the end of every busy spell (see :meth:`on_spell_start`).

        It runs after the spell's last message was handled, before the loop
        waits for the next one, and also when the loop ends (a stop, a failure,
        an interruption) with a spell open, so work a spell left pending is
        never forgotten. If the loop is being cancelled, it runs shielded and
        bounded by the actor's ``stop_timeout``, and what it raises is logged;
        otherwise, if it raises, the actor fails with that exception, as if a
        handler had raised.
        """

    async def on_stop(self, reason: StopReason) -> None:
        """Called once when the actor stops, whatever the reason.

        It runs shielded from cancellation but bounded by the actor's
        ``stop_timeout``; its mailbox is already closed and its children
        already stopped. Exceptions it raises are logged, not propagated.
        """


class RequestHandler(Protocol[R]):
    """What ``@handler(SomeRequest)`` returns: a decorator that type-checks the reply.

    The decorated method must return the request's reply type ``R`` (or, if
    ``async``, an awaitable of it); mypy rejects any other return type.
    """

    @overload
    def __call__(
        self, function: Callable[[S, M], Awaitable[R]], /
    ) -> Callable[[S, M], Awaitable[R]]: ...
    @overload
    def __call__(self, function: Callable[[S, M], R], /) -> Callable[[S, M], R]: ...


@overload
def handler(message_type: type[Request[R]], /) -> RequestHandler[R]: ...
@overload
def handler(message_type: type, /, *more_types: type) -> Callable[[F], F]: ...
@overload
def handler(function: F, /) -> F: ...
def handler(*args: Any) -> Any:
    """Mark a method of an :class:`Actor` as the handler of one message type.

    The type is read from the annotation of the method's message parameter
    (a union registers each member). Where the annotation cannot be resolved
    at spawn time (a message class defined inside a function), name the type
    explicitly: ``@handler(Ping)``.

    Naming a :class:`Request` type, ``@handler(GetTotal)``, also has mypy
    check the reply: the method must return ``GetTotal``'s reply type (an
    ``async`` one, an awaitable of it), so what ``ask`` returns is what the
    handler returns::

        @actors.handler(GetTotal)  # GetTotal is a Request[int]
        def total(self, message: GetTotal) -> int:
            return self.count
    """
    if len(args) == 1 and inspect.isfunction(args[0]):
        setattr(args[0], _HANDLER_MARK, ())
        return args[0]
    for arg in args:
        if not isinstance(arg, type):
            raise ActorDefinitionError(
                f"@handler takes message classes, not {arg!r}; "
                "write @handler or @handler(MessageType)"
            )

    def mark(function: F) -> F:
        setattr(function, _HANDLER_MARK, tuple(args))
        return function

    return mark


# Per class: message type -> (unbound handler function, is coroutine function).
HandlerTable = dict[type, tuple[Callable[[Any, Any], Any], bool]]
_tables: dict[type, HandlerTable] = {}


def handler_table(cls: type) -> HandlerTable:
    """Build (once per class) and check the dispatch table of an actor class."""
    try:
        return _tables[cls]
    except KeyError:
        pass
    table: HandlerTable = {}
    owners: dict[type, str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            marked = getattr(value, _HANDLER_MARK, None)
            if marked is None:
                continue
            types_ = marked or _annotated_message_types(cls, value)
            for message_type in types_:
                if message_type in table and owners[message_type] == klass.__qualname__:
                    raise ActorDefinitionError(
                        f"{cls.__qualname__} has two handlers for {message_type.__qualname__}: "
                        f"{table[message_type][0].__name__} and {name}; keep one"
                    )
                table[message_type] = (value, inspect.iscoroutinefunction(value))
                owners[message_type] = klass.__qualname__
    _check_against_declared(cls, table)
    _tables[cls] = table
    return table


def resolve_handler(handlers: HandlerTable, message_type: type) -> bool:
    """Find a handler for a subclass of a handled type and cache it; False if none."""
    for base in message_type.__mro__[1:]:
        found = handlers.get(base)
        if found is not None:
            handlers[message_type] = found
            return True
    return False


def _annotated_message_types(cls: type, function: Callable[..., object]) -> tuple[type, ...]:
    where = f"{cls.__qualname__}.{function.__name__}"
    params = list(inspect.signature(function).parameters.values())
    if len(params) != 2:
        raise ActorDefinitionError(
            f"handler {where} must take exactly (self, message), not {len(params)} parameters"
        )
    # Resolve only the message parameter: the return annotation may name types
    # imported for type checking only.
    raw = function.__annotations__.get(params[1].name)

    def only_message() -> None: ...

    only_message.__annotations__ = {} if raw is None else {params[1].name: raw}
    try:
        hints = typing.get_type_hints(only_message, globalns=function.__globals__)
    except NameError as exc:
        raise ActorDefinitionError(
            f"cannot resolve the message annotation of {where} ({exc}); define the message "
            f"class at module level or name it explicitly: @handler(MessageType)"
        ) from None
    annotation = hints.get(params[1].name)
    if annotation is None:
        raise ActorDefinitionError(
            f"handler {where} has no type annotation on {params[1].name!r}; annotate it "
            f"with the message class or write @handler(MessageType)"
        )
    members = _union_members(annotation)
    for member in members:
        if not isinstance(member, type):
            raise ActorDefinitionError(
                f"handler {where} is annotated with {member!r}; handlers dispatch on classes"
            )
    return members


def _union_members(annotation: object) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    return (origin if origin is not None else annotation,)


def _declared_message_types(cls: type) -> tuple[type, ...] | None:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Actor:
                (argument,) = typing.get_args(base)
                members = _union_members(argument)
                if all(isinstance(m, type) and m is not object for m in members):
                    return members
                return None
    return None


def _check_against_declared(cls: type, table: HandlerTable) -> None:
    declared = _declared_message_types(cls)
    if declared is None:
        return
    for message_type, (function, _) in table.items():
        if not issubclass(message_type, declared):
            raise ActorDefinitionError(
                f"{cls.__qualname__}.{function.__name__} handles {message_type.__qualname__}, which is not "
                f"among the messages {cls.__qualname__} declares in Actor[...]; add it there "
                "or remove the handler"
            )
    for message_type in declared:
        if not any(issubclass(t, message_type) for t in table):
            raise ActorDefinitionError(
                f"{cls.__qualname__} declares {message_type.__qualname__} in Actor[...] but "
                "has no @handler for it"
            )
