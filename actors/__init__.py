"""trio-actors: actors on trio, with bounded mailboxes and structured lifetimes.

Open a system, spawn actors into it, talk to them through their refs::

    async with actors.open_system() as system:
        counter = await system.spawn(Counter())
        await counter.tell(Increment(2))
        assert await counter.ask(GetCount()) == 2
"""

from __future__ import annotations

from ._actor import Actor as Actor, RequestHandler as RequestHandler, handler as handler
from ._backoff import Backoff as Backoff
from ._context import ActorContext as ActorContext
from ._dead_letters import DeadLetters as DeadLetters, DeadLetterStatistics as DeadLetterStatistics
from ._events import (
    ActorFailed as ActorFailed,
    ActorRestarted as ActorRestarted,
    DeadLetterPublished as DeadLetterPublished,
    SystemEvent as SystemEvent,
)
from ._exceptions import (
    ActorDefinitionError as ActorDefinitionError,
    ActorError as ActorError,
    ActorStoppedError as ActorStoppedError,
    AskTimeoutError as AskTimeoutError,
    ErrorReply as ErrorReply,
    MailboxFullError as MailboxFullError,
    NameTakenError as NameTakenError,
    SelfAskError as SelfAskError,
    SystemClosedError as SystemClosedError,
    UnhandledMessageError as UnhandledMessageError,
    WrongThreadError as WrongThreadError,
)
from ._gc import tune_gc as tune_gc
from ._groups import (
    GroupChange as GroupChange,
    GroupFeed as GroupFeed,
    GroupJoined as GroupJoined,
    GroupLeft as GroupLeft,
)
from ._introspection import (
    ActorPathFilter as ActorPathFilter,
    ActorSnapshot as ActorSnapshot,
    SystemSnapshot as SystemSnapshot,
    format_tree as format_tree,
)
from ._messages import (
    Cancelled as Cancelled,
    ControlMessage as ControlMessage,
    DeadLetter as DeadLetter,
    DeadLetterReason as DeadLetterReason,
    Failed as Failed,
    MailboxOverflow as MailboxOverflow,
    MailboxStatistics as MailboxStatistics,
    Normal as Normal,
    Request as Request,
    StopReason as StopReason,
)
from ._ref import ActorRef as ActorRef, PendingReply as PendingReply
from ._router import NoRouteesError as NoRouteesError, Router as Router
from ._routing import (
    Broadcast as Broadcast,
    ConsistentHashing as ConsistentHashing,
    RandomChoice as RandomChoice,
    RoundRobin as RoundRobin,
    Routing as Routing,
    SmallestMailbox as SmallestMailbox,
)
from ._stash import Stash as Stash, StashFullError as StashFullError
from ._subscription import (
    Lagged as Lagged,
    OverflowPolicy as OverflowPolicy,
    SubscriberLaggedError as SubscriberLaggedError,
    SubscriberStatistics as SubscriberStatistics,
    Subscription as Subscription,
    TopicReceiveChannel as TopicReceiveChannel,
)
from ._supervisor import (
    ChildSpec as ChildSpec,
    RestartIntensityError as RestartIntensityError,
    RestartType as RestartType,
    SiblingRestart as SiblingRestart,
    StartChild as StartChild,
    StopChild as StopChild,
    Strategy as Strategy,
    Supervisor as Supervisor,
    TooManyChildrenError as TooManyChildrenError,
    WhichChildren as WhichChildren,
    start_child as start_child,
)
from ._system import (
    DEFAULT_ASK_TIMEOUT as DEFAULT_ASK_TIMEOUT,
    DEFAULT_MAILBOX_SIZE as DEFAULT_MAILBOX_SIZE,
    DEFAULT_STOP_TIMEOUT as DEFAULT_STOP_TIMEOUT,
    ActorSystem as ActorSystem,
    SystemStatistics as SystemStatistics,
    open_system as open_system,
)
from ._timers import Timers as Timers
from ._topic import (
    DEFAULT_TOPIC_BUFFER as DEFAULT_TOPIC_BUFFER,
    EVENT_STREAM_BUFFER as EVENT_STREAM_BUFFER,
    Topic as Topic,
    TopicClosedError as TopicClosedError,
    TopicStatistics as TopicStatistics,
)
from ._watch import Terminated as Terminated, watching as watching

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "DEFAULT_MAILBOX_SIZE",
    "DEFAULT_STOP_TIMEOUT",
    "DEFAULT_TOPIC_BUFFER",
    "EVENT_STREAM_BUFFER",
    "Actor",
    "ActorContext",
    "ActorDefinitionError",
    "ActorError",
    "ActorFailed",
    "ActorPathFilter",
    "ActorRef",
    "ActorRestarted",
    "ActorSnapshot",
    "ActorStoppedError",
    "ActorSystem",
    "AskTimeoutError",
    "Backoff",
    "Broadcast",
    "Cancelled",
    "ChildSpec",
    "ConsistentHashing",
    "ControlMessage",
    "DeadLetter",
    "DeadLetterPublished",
    "DeadLetterReason",
    "DeadLetterStatistics",
    "DeadLetters",
    "ErrorReply",
    "Failed",
    "GroupChange",
    "GroupFeed",
    "GroupJoined",
    "GroupLeft",
    "Lagged",
    "MailboxFullError",
    "MailboxOverflow",
    "MailboxStatistics",
    "NameTakenError",
    "NoRouteesError",
    "Normal",
    "OverflowPolicy",
    "PendingReply",
    "RandomChoice",
    "Request",
    "RequestHandler",
    "RestartIntensityError",
    "RestartType",
    "RoundRobin",
    "Router",
    "Routing",
    "SelfAskError",
    "SiblingRestart",
    "SmallestMailbox",
    "StartChild",
    "Stash",
    "StashFullError",
    "StopChild",
    "StopReason",
    "Strategy",
    "SubscriberLaggedError",
    "SubscriberStatistics",
    "Subscription",
    "Supervisor",
    "SystemClosedError",
    "SystemEvent",
    "SystemSnapshot",
    "SystemStatistics",
    "Terminated",
    "Timers",
    "TooManyChildrenError",
    "Topic",
    "TopicClosedError",
    "TopicReceiveChannel",
    "TopicStatistics",
    "UnhandledMessageError",
    "WhichChildren",
    "WrongThreadError",
    "format_tree",
    "handler",
    "open_system",
    "start_child",
    "tune_gc",
    "watching",
]
