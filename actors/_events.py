"""The system event stream: what the runtime reports (failures, restarts, dead letters).

The events are plain frozen values. The stream that carries them is a
:class:`~actors.Topic` owned by the system (see :attr:`actors.ActorSystem.events`),
with the ``DROP_OLDEST`` policy so the runtime never waits on a slow listener.

This module is a leaf (it imports nothing from the runtime at module level),
so the cell, the dead-letter sink and supervisors can call
:func:`publish_event` without import cycles. Until somebody asks for the
stream of a system, publishing an event to it costs one dictionary lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import attrs

from ._messages import DeadLetter

if TYPE_CHECKING:
    from ._system import ActorSystem


@attrs.frozen
class SystemEvent:
    """Base class of everything published on a system's event stream.

    Match on the subclasses: :class:`ActorFailed`, :class:`ActorRestarted`,
    :class:`DeadLetterPublished`. More may be added; a handler for
    ``SystemEvent`` itself catches those too.
    """


@final
@attrs.frozen
class ActorFailed(SystemEvent):
    """The actor at ``path`` stopped for good because ``error`` was raised in it.

    A failure after which a supervisor restarts the actor is reported as
    :class:`ActorRestarted` instead.
    """

    path: str
    error: BaseException


@final
@attrs.frozen
class ActorRestarted(SystemEvent):
    """A supervisor restarted the actor at ``path``; ``restarts`` counts restarts so far.

    ``error`` is the failure that caused it, or ``None`` when the actor was
    restarted without failing (a permanent child that stopped itself, or a
    sibling's failure under ``ONE_FOR_ALL`` / ``REST_FOR_ONE``).
    """

    path: str
    error: BaseException | None
    restarts: int


@final
@attrs.frozen
class DeadLetterPublished(SystemEvent):
    """``letter`` was recorded in the system's dead letters."""

    letter: DeadLetter


def publish_event(system: ActorSystem, event: SystemEvent) -> None:
    """Offer ``event`` to the event stream of ``system``; never blocks, never raises.

    For the runtime and for supervisors. Nobody listening (no stream yet, or
    no subscriber) costs almost nothing; a listener whose buffer is full
    loses its oldest event, counted in the stream's statistics.
    """
    stream = system._event_stream
    if stream is not None:
        stream._offer_event(event)


def publish_dead_letter(system: ActorSystem, letter: DeadLetter) -> None:
    """Offer ``letter`` to the event stream of ``system`` as :class:`DeadLetterPublished`."""
    stream = system._event_stream
    if stream is not None:
        stream._offer_event(DeadLetterPublished(letter))
