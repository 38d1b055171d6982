"""trio-actors: actors on trio, with bounded mailboxes and structured lifetimes.

Open a system, spawn actors into it, talk to them through their refs::

    async with actors.open_system() as system:
        counter = await system.spawn(Counter())
        await counter.tell(Increment(2))
        assert await counter.ask(GetCount()) == 2
"""

from __future__ import annotations

from ._actor import Actor as Actor, handler as handler
from ._context import ActorContext as ActorContext
from ._dead_letters import DeadLetters as DeadLetters, DeadLetterStatistics as DeadLetterStatistics
from ._exceptions import (
    ActorDefinitionError as ActorDefinitionError,
    ActorError as ActorError,
    ActorStoppedError as ActorStoppedError,
    AskTimeoutError as AskTimeoutError,
    NameTakenError as NameTakenError,
    SelfAskError as SelfAskError,
    SystemClosedError as SystemClosedError,
    UnhandledMessageError as UnhandledMessageError,
    WrongThreadError as WrongThreadError,
)
from ._messages import (
    Cancelled as Cancelled,
    DeadLetter as DeadLetter,
    DeadLetterReason as DeadLetterReason,
    Failed as Failed,
    MailboxStatistics as MailboxStatistics,
    Normal as Normal,
    Request as Request,
    StopReason as StopReason,
)
from ._ref import ActorRef as ActorRef
from ._system import (
    DEFAULT_ASK_TIMEOUT as DEFAULT_ASK_TIMEOUT,
    DEFAULT_MAILBOX_SIZE as DEFAULT_MAILBOX_SIZE,
    DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT,
    ActorSystem as ActorSystem,
    SystemStatistics as SystemStatistics,
    open_system as open_system,
)

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "DEFAULT_MAILBOX_SIZE",
    "DEFAULT_STOP_TIMEOUT",
    "Actor",
    "ActorContext",
    "ActorDefinitionError",
    "ActorError",
    "ActorRef",
    "ActorStoppedError",
    "ActorSystem",
    "AskTimeoutError",
    "Cancelled",
    "DeadLetter",
    "DeadLetterReason",
    "DeadLetterStatistics",
    "DeadLetters",
    "Failed",
    "MailboxStatistics",
    "NameTakenError",
    "Normal",
    "Request",
    "SelfAskError",
    "StopReason",
    "SystemClosedError",
    "SystemStatistics",
    "UnhandledMessageError",
    "WrongThreadError",
    "handler",
    "open_system",
]
