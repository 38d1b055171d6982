"""The exceptions of the actor runtime.

Every error the runtime raises derives from :class:`ActorError` and, where trio
already has a word for the situation, from that trio exception too, so code
written against trio's vocabulary keeps working::

    ActorError
    ├── ActorStoppedError        (trio.BrokenResourceError)  the target is gone
    ├── AskTimeoutError          (trio.TooSlowError)         no reply within the deadline
    ├── SelfAskError             (RuntimeError)              an actor asked itself
    ├── MailboxFullError                                     refused by the FAIL overflow policy
    ├── StashFullError           (in _stash.py)              stashed into a full stash
    ├── NoRouteesError           (in _router.py)             a router had no routee
    ├── UnhandledMessageError    (TypeError)                 no handler for this message type
    ├── ActorDefinitionError     (TypeError)                 the actor class is malformed
    ├── SystemClosedError        (trio.ClosedResourceError)  the system is shut down
    ├── NameTakenError           (ValueError)                the name is taken (siblings, registry)
    ├── WrongThreadError         (RuntimeError)              a trio-only call from a foreign thread
    └── ErrorReply                                           raised by a handler: fail the ask only

Exceptions raised by a handler are never wrapped: whoever asked gets the
handler's own exception object.
"""

from __future__ import annotations

import trio


class ActorError(Exception):
    """Base class of every error raised by the actor runtime."""


class ActorStoppedError(ActorError, trio.BrokenResourceError):
    """The target actor has stopped (or stopped while the call was waiting).

    Raised by ``tell``, ``ask`` and ``spawn`` when the actor that should
    receive the message, or host the child, is no longer running.
    """


class AskTimeoutError(ActorError, trio.TooSlowError):
    """An ``ask`` got no reply within its deadline.

    A reply that arrives later is discarded, counted and sent to dead letters.
    """


class MailboxFullError(ActorError):
    """The target's mailbox was full and its overflow policy refused or dropped the message.

    Raised at once by ``tell``, ``tell_nowait`` and ``ask`` under
    :attr:`MailboxOverflow.FAIL`; an ask whose message a drop policy threw
    away fails with it too (the message itself goes to dead letters).
    """


class SelfAskError(ActorError, RuntimeError):
    """An actor asked itself, which would wait forever on its own mailbox."""


class UnhandledMessageError(ActorError, TypeError):
    """A message was sent to an actor that has no handler for its type."""


class ActorDefinitionError(ActorError, TypeError):
    """An actor class is malformed (for example a handler for a type it does not accept)."""


class SystemClosedError(ActorError, trio.ClosedResourceError):
    """The actor system is shut down (or not yet open); nothing can be spawned in it."""


class NameTakenError(ActorError, ValueError):
    """A name is already taken: by a sibling, or in the system's name registry."""


class WrongThreadError(ActorError, RuntimeError):
    """A method that must run in the actor system's trio thread was called from another thread.

    Use the ``*_from_thread`` methods of :class:`~actors.ActorRef` instead.
    """


class ErrorReply(ActorError):
    """Raise it from a handler to answer an ask with ``error`` without failing the actor.

    ::

        @actors.handler
        def join(self, message: Join) -> RoomInfo:
            if message.room not in self.rooms:
                raise actors.ErrorReply(KeyError(message.room))
            ...

    The asker gets ``error`` itself (here the ``KeyError``); the actor goes
    on with its next message. A handler that raises any other exception
    fails its actor, as usual. For a message that was told, not asked,
    ``error`` goes to dead letters with reason ``REJECTED``.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error
