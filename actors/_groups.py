"""Process groups: many actors under one group name, per actor system (Erlang's ``pg``).

An actor joins and leaves groups explicitly and leaves all of them
automatically when it stops for good (a supervisor's restart keeps its
memberships: they belong to the cell). Anyone can list a group's members or
follow its changes through a feed.

A feed never slows the runtime down: each has a bounded buffer, and a change
that does not fit is dropped, counted on the feed (:attr:`GroupFeed.dropped`)
and published to the system's dead letters with reason ``DROPPED``. A
subscriber that sees ``dropped`` grow resynchronises with
:func:`group_members`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, final

import attrs
import trio

from ._cell import Cell, check_thread
from ._messages import DeadLetter, DeadLetterReason, StopReason
from ._registry import check_handles, check_name, member_cell
from ._watch import add_stop_hook, remove_stop_hook

if TYPE_CHECKING:
    from typing import Never

    from ._ref import ActorRef
    from ._system import ActorSystem

M = TypeVar("M")

#: How many changes a group feed holds by default before it drops.
DEFAULT_FEED_BUFFER = 100


@final
@attrs.frozen
class GroupJoined:
    """``ref`` joined ``group``."""

    group: str
    ref: ActorRef[Never]


@final
@attrs.frozen
class GroupLeft:
    """``ref`` left ``group``: by :func:`leave_group` (``reason`` is ``None``) or by stopping.

    When the actor stopped, ``reason`` is its stop reason.
    """

    group: str
    ref: ActorRef[Never]
    reason: StopReason | None = None


#: A change of a group's membership, as a :class:`GroupFeed` delivers it.
GroupChange: TypeAlias = GroupJoined | GroupLeft


@final
class GroupFeed(trio.abc.ReceiveChannel[GroupChange]):
    """The changes of one group, from :func:`group_changes`; a bounded receive channel.

    ``members`` is the membership when the feed was opened; every later
    change arrives in order, unless the buffer was full (see ``dropped``).
    ``async for change in feed:`` ends when the ``with`` block is left.
    """

    def __init__(self, group: str, members: tuple[ActorRef[Never], ...], buffer: int) -> None:
        self.group = group
        self.members = members
        self._dropped = 0
        self._send, self._receive = trio.open_memory_channel[GroupChange](buffer)

    def __repr__(self) -> str:
        return f"<GroupFeed {self.group!r}, {self._dropped} dropped>"

    @property
    def dropped(self) -> int:
        """How many changes this feed missed because its buffer was full."""
        return self._dropped

    async def receive(self) -> GroupChange:
        """The next change, waiting for one; :exc:`trio.EndOfChannel` once the feed is closed."""
        return await self._receive.receive()

    def receive_nowait(self) -> GroupChange:
        """The next change, or :exc:`trio.WouldBlock` if none is buffered."""
        return self._receive.receive_nowait()

    async def aclose(self) -> None:
        """Stop reading; changes are no longer buffered for this feed."""
        await self._receive.aclose()

    def _offer(self, change: GroupChange) -> None:
        try:
            self._send.send_nowait(change)
        except trio.WouldBlock:
            self._dropped += 1
            change.ref._cell.system.dead_letters.publish(
                DeadLetter(
                    message=change,
                    recipient=f"<feed of group {self.group!r}>",
                    sender=None,
                    reason=DeadLetterReason.DROPPED,
                )
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the reader closed its end: it wants no more changes


class Groups:
    """The groups of one system: members by group, groups by member, feeds by group."""

    __slots__ = ("changes", "feeds", "groups_of", "members")

    def __init__(self) -> None:
        #: Bumped on every membership change (group routers cache their routees by it).
        self.changes = 0
        self.members: dict[str, dict[Cell, None]] = {}
        self.groups_of: dict[Cell, dict[str, None]] = {}
        self.feeds: dict[str, list[GroupFeed]] = {}

    def add(self, group: str, cell: Cell) -> None:
        members = self.members.setdefault(group, {})
        if cell in members:
            return
        members[cell] = None
        groups = self.groups_of.get(cell)
        if groups is None:
            groups = self.groups_of[cell] = {}

            def left(reason: StopReason) -> None:
                self.cell_stopped(cell, reason)

            add_stop_hook(cell, self, left)
        groups[group] = None
        self.publish(GroupJoined(group, cell.ref))

    def remove(self, group: str, cell: Cell) -> None:
        members = self.members.get(group)
        if members is None or cell not in members:
            return
        self._drop_member(group, members, cell)
        groups = self.groups_of[cell]
        del groups[group]
        if not groups:
            del self.groups_of[cell]
            remove_stop_hook(cell, self)
        self.publish(GroupLeft(group, cell.ref))

    def cell_stopped(self, cell: Cell, reason: StopReason) -> None:
        for group in self.groups_of.pop(cell, ()):
            members = self.members.get(group)
            if members is not None and cell in members:
                self._drop_member(group, members, cell)
                self.publish(GroupLeft(group, cell.ref, reason))

    def _drop_member(self, group: str, members: dict[Cell, None], cell: Cell) -> None:
        del members[cell]
        if not members:
            del self.members[group]

    def publish(self, change: GroupChange) -> None:
        self.changes += 1
        for feed in self.feeds.get(change.group, ()):
            feed._offer(change)


def join_group(system: ActorSystem, group: str, ref: ActorRef[Never]) -> None:
    """The implementation of the :meth:`ActorSystem.join_group` method."""
    check_thread(system.thread_id, "ActorSystem.join_group()")
    check_name(group, "a group name")
    cell = member_cell(system, ref, "added to a group")
    system._groups.add(group, cell)


def leave_group(system: ActorSystem, group: str, ref: ActorRef[Never]) -> None:
    """The implementation of the :meth:`ActorSystem.leave_group` method."""
    check_thread(system.thread_id, "ActorSystem.leave_group()")
    system._groups.remove(group, ref._cell)


def group_members(
    system: ActorSystem, group: str, *, handles: type[M] | None = None
) -> list[ActorRef[Any]]:
    """The implementation of the :meth:`ActorSystem.group_members` method."""
    check_thread(system.thread_id, "ActorSystem.group_members()")
    members = system._groups.members.get(group, {})
    if handles is not None:
        for cell in members:
            check_handles(cell, handles, f"a member of group {group!r}")
    return [cell.ref for cell in members]


def group_names(system: ActorSystem) -> list[str]:
    """The implementation of the :meth:`ActorSystem.group_names` method."""
    check_thread(system.thread_id, "ActorSystem.group_names()")
    return list(system._groups.members)


@contextlib.contextmanager
def group_changes(
    system: ActorSystem, group: str, *, buffer: int = DEFAULT_FEED_BUFFER
) -> Iterator[GroupFeed]:
    """The implementation of the :meth:`ActorSystem.group_changes` method."""
    check_thread(system.thread_id, "ActorSystem.group_changes()")
    check_name(group, "a group name")
    if buffer < 1:
        raise ValueError(f"a group feed needs a buffer of at least 1, not {buffer!r}")
    groups = system._groups
    members = tuple(cell.ref for cell in groups.members.get(group, ()))
    feed = GroupFeed(group, members, buffer)
    groups.feeds.setdefault(group, []).append(feed)
    try:
        yield feed
    finally:
        feeds = groups.feeds[group]
        feeds.remove(feed)
        if not feeds:
            del groups.feeds[group]
        feed._send.close()
