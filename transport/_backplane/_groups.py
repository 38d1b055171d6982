"""Cluster-wide groups, the part both backplanes share: local members and each process's view.

A process's own members of the cluster-wide group ``g`` are the members of the
:mod:`actors` group ``backplane:g`` of its system (:func:`local_group_name`), so an
actor leaves every group when it stops, as with :func:`actors.join_group`.
:func:`follow_local` turns that group's feed into calls the backplane acts on.

Each process keeps a :class:`GroupView` of the groups it follows: the members it
knows of in every process, and a local topic that carries every change of them to
the subscribers of :meth:`Backplane.group_changes`. The view changes only through
:meth:`GroupView.joined`, :meth:`GroupView.left` and :meth:`GroupView.reconcile`,
each of which publishes what changed: the snapshot a subscriber gets and the changes
after it never overlap or miss one.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast, final

import trio

import actors

from ._interface import ClusterGroupChange, ClusterMember

if TYPE_CHECKING:
    from typing import Never

#: Changes a follower of a group holds by default before the oldest is dropped.
DEFAULT_CHANGES_BUFFER = 100


def local_group_name(group: str) -> str:
    """The :mod:`actors` group that holds this process's members of the cluster-wide ``group``."""
    return f"backplane:{group}"


def local_members(system: actors.ActorSystem, group: str) -> list[actors.ActorRef[Never]]:
    """This process's members of the cluster-wide ``group``."""
    return system.group_members(local_group_name(group))


@final
class GroupView:
    """What this process knows of one cluster-wide group, and the topic of its changes."""

    __slots__ = ("group", "members", "topic")

    def __init__(self, system: actors.ActorSystem, group: str) -> None:
        self.group = group
        self.members: dict[ClusterMember, None] = {}
        self.topic: actors.Topic[ClusterGroupChange] = system.topic(
            f"backplane-group:{group}",
            policy=actors.OverflowPolicy.DROP_OLDEST,
            buffer=DEFAULT_CHANGES_BUFFER,
        )

    def joined(self, member: ClusterMember) -> None:
        """``member`` joined (nothing happens if it is known already)."""
        if member not in self.members:
            self.members[member] = None
            self._publish(ClusterGroupChange(self.group, member, joined=True))

    def left(self, member: ClusterMember, reason: str) -> None:
        """``member`` left for ``reason`` (nothing happens if it was not known)."""
        if member in self.members:
            del self.members[member]
            self._publish(ClusterGroupChange(self.group, member, joined=False, reason=reason))

    def reconcile(self, members: Iterable[ClusterMember], *, reason: str = "lost") -> None:
        """Make the view ``members``: those missing from it left for ``reason``."""
        now = dict.fromkeys(members)
        for member in [m for m in self.members if m not in now]:
            self.left(member, reason)
        for member in now:
            self.joined(member)

    def _publish(self, change: ClusterGroupChange) -> None:
        # DROP_OLDEST never waits; a closed topic (the system is shutting down) has nobody.
        with contextlib.suppress(actors.TopicClosedError):
            self.topic.publish_nowait(change)

    @contextlib.contextmanager
    def follow(
        self, buffer: int | None
    ) -> Iterator[tuple[tuple[ClusterMember, ...], actors.TopicReceiveChannel[ClusterGroupChange]]]:
        """The members now and a channel of every change after them."""
        with self.topic.subscribe(buffer=buffer) as changes:
            yield tuple(self.members), changes


async def follow_local(
    system: actors.ActorSystem,
    group: str,
    on_change: Callable[[actors.ActorRef[Never], str | None], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_change(ref, None)`` for each local join of ``group``, ``on_change(ref,
    reason)`` for each leave (``"left"`` or ``"stopped"``), until cancelled.

    Starts with a join for each member there already. When the feed dropped changes
    (it is bounded), what is missed is not replayed: the backplane's heartbeat makes
    its records agree with :func:`local_members` again.
    """
    with system.group_changes(local_group_name(group)) as feed:
        for ref in feed.members:
            await on_change(ref, None)
        task_status.started()
        async for change in feed:
            if isinstance(change, actors.GroupJoined):
                await on_change(change.ref, None)
            else:
                await on_change(change.ref, "left" if change.reason is None else "stopped")


def tell_members(
    system: actors.ActorSystem,
    refs: Iterable[actors.ActorRef[Never]],
    message: object,
    recipient: str,
) -> int:
    """Tell ``message`` to each of ``refs`` without waiting; returns how many took it.

    A member whose mailbox is full, that stopped, or that cannot handle the message
    does not hold up the others: its copy goes to dead letters with the reason.
    """
    told = 0
    for ref in refs:
        any_ref = cast("actors.ActorRef[object]", ref)  # tell_nowait checks the type
        reason = actors.DeadLetterReason.DROPPED
        error: BaseException | None = None
        try:
            any_ref.tell_nowait(message)
        except trio.WouldBlock:
            pass
        except actors.ActorStoppedError as exc:
            reason, error = actors.DeadLetterReason.STOPPED, exc
        except actors.UnhandledMessageError as exc:
            reason, error = actors.DeadLetterReason.UNDELIVERABLE, exc
        else:
            told += 1
            continue
        system.dead_letters.publish(
            actors.DeadLetter(
                message=message,
                recipient=f"{recipient} member {ref.path}",
                sender=None,
                reason=reason,
                error=error,
            )
        )
    return told


def pick(members: Iterable[ClusterMember]) -> ClusterMember | None:
    """One of ``members`` at random, or ``None`` if there are none."""
    choices = list(members)
    return random.choice(choices) if choices else None
