"""The stash: messages an actor sets aside until it is ready for them (Akka's ``StashBuffer``).

An actor that must wait for something (a connection, a lock, a reply) before
it can handle some messages stashes them as they arrive and unstashes them all
once it is ready; they are then handled next, in the order they arrived,
ahead of the ordinary messages still queued in the mailbox. An ask that is
stashed keeps its asker waiting (within its deadline): the reply is the
return value of the handler that finally handles it.

The stash is bounded (by default the mailbox's capacity): stashing into a full
stash raises :exc:`StashFullError`, never drops silently. When the actor stops
for good, what is still stashed goes to dead letters (reason ``STOPPED``) and
stashed asks fail with :exc:`ActorStoppedError`. When a supervisor restarts
the actor, what is still stashed is put back at the head of the mailbox, in
order, so the new incarnation handles it: nothing is lost to a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._exceptions import ActorError

if TYPE_CHECKING:
    from ._cell import Cell
    from ._control import Envelope


class StashFullError(ActorError):
    """A message was stashed into a stash that already holds its capacity."""


@final
class Stash:
    """The stash of one actor: ``self.ctx.stash`` inside a handler.

    ::

        @actors.handler
        def query(self, message: Query) -> Answer | None:
            if self.connection is None:
                self.ctx.stash.stash()  # handled again once connected
                return None
            return self.connection.run(message)


        @actors.handler
        def connected(self, message: Connected) -> None:
            self.connection = message.connection
            self.ctx.stash.unstash_all()
    """

    __slots__ = ("_cell", "_items", "capacity")

    def __init__(self, cell: Cell, capacity: int) -> None:
        self._cell = cell
        self._items: list[Envelope] = []
        #: How many messages the stash holds at most.
        self.capacity = capacity

    def __repr__(self) -> str:
        return f"<Stash of {self._cell.path}: {len(self._items)}/{self.capacity}>"

    def __len__(self) -> int:
        return len(self._items)

    @property
    def is_full(self) -> bool:
        """True when :meth:`stash` would raise :exc:`StashFullError`."""
        return len(self._items) >= self.capacity

    def stash(self) -> None:
        """Set the message being handled aside, with its sender and (for an ask) its asker.

        Call it from the handler of that message. The handler's return value
        is then ignored: an ask is answered by the handler that handles the
        message after :meth:`unstash_all`. Raises :exc:`StashFullError` when
        the stash is full and :exc:`RuntimeError` outside a handler (or when
        the message was already stashed).
        """
        cell = self._cell
        current = cell.current
        if current is None:
            raise RuntimeError(
                f"stash() of actor {cell.path} found no message to stash: call it once, "
                "from the handler of the message to set aside"
            )
        if self.is_full:
            raise StashFullError(
                f"the stash of actor {cell.path} is full ({self.capacity} messages); "
                "unstash before stashing more, or stop taking messages you cannot handle"
            )
        slot = current[2]
        if slot is not None:
            slot.stashed = True
        self._items.append(current)
        cell.current = None

    def unstash_all(self) -> int:
        """Put every stashed message back at the head of the mailbox, in stashed order.

        They are handled next, before the ordinary messages queued meanwhile
        (the message being handled now finishes first). Returns how many.
        """
        items = self._take_all()
        self._cell.mailbox.put_back(items)
        return len(items)

    def _take_all(self) -> list[Envelope]:
        """Empty the stash for the runtime (the actor stops); asks are released."""
        items, self._items = self._items, []
        for item in items:
            slot = item[2]
            if slot is not None:
                slot.stashed = False
        return items
