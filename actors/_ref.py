"""``ActorRef``: the only way to reach an actor."""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar, TypeVarTuple, final

import trio

from ._cell import current_cell
from ._exceptions import (
    ActorStoppedError,
    AskTimeoutError,
    MailboxFullError,
    SelfAskError,
    WrongThreadError,
)
from ._messages import DeadLetterReason, MailboxStatistics, Normal, Request, StopReason
from ._reply import Expired, ReplySlot
from ._threads import ThreadInbox

if TYPE_CHECKING:
    from ._cell import Cell

M_contra = TypeVar("M_contra", contravariant=True)
R = TypeVar("R")
Ts = TypeVarTuple("Ts")


@final
class ActorRef(Generic[M_contra]):
    """The send side of an actor's bounded mailbox, plus its identity.

    A ref is all anyone outside the actor ever holds: messages go in through
    it, nothing comes out but replies. Refs are cheap, hashable and safe to
    keep after the actor stopped (sending then raises
    :exc:`ActorStoppedError`).

    Methods must be called from the system's trio thread, except the
    ``*_from_thread`` ones, which are for plain OS threads.
    """

    __slots__ = ("__weakref__", "_cell")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path} {self._cell.state.value}>"

    @property
    def name(self) -> str:
        """The actor's name, unique among its siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's path from the system root, e.g. ``/chat/room-lobby``."""
        return self._cell.path

    @property
    def is_alive(self) -> bool:
        """True until the actor starts stopping."""
        return not self._cell.mailbox.closed

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the actor stopped, or ``None`` while it runs."""
        return self._cell.reason if not self.is_alive else None

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the actor's mailbox counters."""
        return self._cell.mailbox.statistics()

    async def tell(self, message: M_contra) -> None:
        """Queue ``message``, waiting while the mailbox is full.

        Raises :exc:`UnhandledMessageError` at once if the actor has no handler
        for the message's type, and :exc:`ActorStoppedError` if the actor has
        stopped (or stops while this call waits for room).
        """
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("tell")
        if type(message) not in cell.handlers:
            cell.check_message(message)
        # Mailbox.send inlined: one coroutine frame less per message.
        envelope = (message, _current_cell(), None)
        mailbox = cell.mailbox
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            mailbox.send_nowait(envelope)
        except trio.WouldBlock:
            await mailbox.send(envelope)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_request(self, message: Request[R]) -> PendingReply[R]:
        """Queue ``message`` as :meth:`tell` does and return its pending reply at once:
        :meth:`ask` without waiting for the answer (OTP's ``gen_server:send_request``).

        Waits while the mailbox is full. The reply settles, as an ask's would,
        when the handler returns (its value), raises or rejects the request
        (that error), or when the actor stops or drops the message first
        (:exc:`ActorStoppedError`, :exc:`MailboxFullError`); a stashed request
        settles once it is finally handled. There is no deadline: bound the
        wait yourself (``with trio.fail_after(...): await reply.wait()``).
        Many requests in flight cost one small object each and no task.
        """
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("send_request")
        if type(message) not in cell.handlers:
            cell.check_message(message)
        slot: ReplySlot[R] = ReplySlot()
        await cell.mailbox.send((message, _current_cell(), slot))
        return PendingReply(slot, cell.path)

    def send_request_nowait(self, message: Request[R]) -> PendingReply[R]:
        """:meth:`send_request` without waiting: raises :exc:`trio.WouldBlock` if the
        mailbox is full (and is no checkpoint)."""
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("send_request_nowait")
        if type(message) not in cell.handlers:
            cell.check_message(message)
        slot: ReplySlot[R] = ReplySlot()
        cell.mailbox.send_nowait((message, _current_cell(), slot))
        return PendingReply(slot, cell.path)

    def tell_nowait(self, message: M_contra) -> None:
        """Queue ``message`` or raise :exc:`trio.WouldBlock` if the mailbox is full."""
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("tell_nowait")
        if type(message) not in cell.handlers:
            cell.check_message(message)
        cell.mailbox.send_nowait((message, _current_cell(), None))

    async def ask(self, message: Request[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Send ``message`` and wait for the handler's return value.

        ``timeout`` (seconds, counted from the call, including any wait for
        mailbox room) defaults to the system's ``ask_timeout``; pass
        ``math.inf`` to wait without a deadline. If the handler raises, this
        raises the handler's own exception. Raises :exc:`AskTimeoutError` when
        the deadline passes (a later reply goes to dead letters),
        :exc:`ActorStoppedError` as soon as the actor stops without replying,
        and :exc:`SelfAskError` if an actor asks itself.
        """
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("ask")
        if type(message) not in cell.handlers:
            cell.check_message(message)
        sender = _current_cell()
        if sender is cell:
            raise SelfAskError(
                f"actor {cell.path} asked itself for {type(message).__qualname__}; it would "
                "wait forever on its own mailbox. Call the logic directly, or tell yourself "
                "and handle the result as a message"
            )
        if timeout is None:
            timeout = cell.system.ask_timeout
        slot: ReplySlot[R] = ReplySlot()
        envelope = (message, sender, slot)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            cell.mailbox.send_nowait(envelope)
        except trio.WouldBlock:
            full = True
        else:
            full = False
        if full:
            # The mailbox is full: wait for room and for the reply under one deadline.
            try:
                with trio.move_on_after(timeout):
                    await cell.mailbox.send(envelope)
                    return await slot.wait()
            finally:
                if not slot.settled:
                    slot.abandoned = True
            raise _ask_timeout(cell.path, message, timeout) from None
        if timeout == math.inf:
            return await slot.wait()
        deadlines = cell.system.ask_deadlines
        deadlines.add(slot, timeout)
        try:
            return await slot.wait()
        except Expired:
            raise _ask_timeout(cell.path, message, timeout) from None
        finally:
            deadlines.remove(slot, timeout)
            if not slot.settled:
                slot.abandoned = True

    def tell_from_thread(self, message: M_contra) -> None:
        """From a plain OS thread: queue ``message``, blocking the thread while the actor is full.

        The message goes into the actor's thread inbox, a bounded thread-safe
        queue (the mailbox's capacity) that the trio thread drains in
        batches, waking once per batch rather than once per message; the
        thread blocks while the inbox is full. Messages from one thread keep
        their order. Raises :exc:`UnhandledMessageError` in the thread for a
        message the actor has no handler for, and :exc:`ActorStoppedError` if
        the actor or the whole system has stopped; a message accepted just
        before the actor stopped goes to dead letters.
        """
        self._into_thread_inbox(message, block=True)

    def tell_from_thread_nowait(self, message: M_contra) -> None:
        """From a plain OS thread: as :meth:`tell_from_thread`, but raise :exc:`trio.WouldBlock` when full."""
        self._into_thread_inbox(message, block=False)

    def _into_thread_inbox(self, message: object, *, block: bool) -> None:
        cell = self._cell
        if threading.get_ident() == cell.system.thread_id:
            raise _trio_thread("tell_from_thread", cell.path)
        if type(message) not in cell.handlers:
            cell.check_message(message)
        ThreadInbox.of(cell).put(message, block=block)

    def ask_from_thread(self, message: Request[R], *, timeout: float | None = None) -> R:
        """From a plain OS thread: ask and block the thread until the reply (or error)."""

        cell = self._cell
        inbox = cell.thread_inbox
        told = 0 if inbox is None else inbox.accepted

        async def ask() -> R:
            limit = cell.system.ask_timeout if timeout is None else timeout
            if inbox is not None and told:
                # Messages this thread told before must reach the mailbox first,
                # within the same deadline.
                started = trio.current_time()
                with trio.move_on_after(limit) as waited:
                    await inbox.wait_delivered(told)
                if waited.cancelled_caught:
                    raise _ask_timeout(cell.path, message, limit)
                limit -= trio.current_time() - started
            return await self.ask(message, timeout=limit)

        return self._from_thread(ask)

    def request_stop(self, *, drain: bool = False) -> None:
        """Ask the actor to stop; returns at once without waiting (see :meth:`stop`)."""
        cell = self._cell
        if threading.get_ident() != cell.system.thread_id:
            raise _wrong_thread("request_stop")
        cell.request_stop(Normal(), drain=drain, interrupt=True)

    async def stop(self, *, drain: bool = False) -> StopReason:
        """Stop the actor and wait until it has stopped; returns its stop reason.

        Stop requests travel on the control lane, ahead of queued messages.
        With ``drain=False`` (the default) a handler that is waiting is
        cancelled at its next checkpoint, and the message it was handling and
        everything still queued go to dead letters (asks among them fail at
        once with :exc:`ActorStoppedError`). With ``drain=True`` the mailbox
        refuses new messages but the queued ones are processed first.
        Stopping an actor that already stopped just returns its reason.
        """
        self.request_stop(drain=drain)
        return await self._cell.wait_stopped()

    async def wait_stopped(self) -> StopReason:
        """Wait until the actor has stopped (hooks run, children gone); returns its reason."""
        return await self._cell.wait_stopped()

    async def _tell_or_dead_letter(self, message: object) -> None:  # noqa: ASYNC910
        cell = self._cell
        try:
            await cell.mailbox.send((message, _current_cell(), None))
        except ActorStoppedError:
            cell.dead_letter(message, _current_cell(), DeadLetterReason.STOPPED)
        except MailboxFullError as exc:
            cell.dead_letter(message, _current_cell(), DeadLetterReason.DROPPED, exc)

    def _from_thread(self, function: Callable[[*Ts], Awaitable[R]], *args: *Ts) -> R:
        cell = self._cell
        if threading.get_ident() == cell.system.thread_id:
            raise _trio_thread("ask_from_thread", cell.path)
        try:
            return trio.from_thread.run(function, *args, trio_token=cell.system.token)
        except trio.RunFinishedError as exc:
            raise ActorStoppedError(
                f"actor {cell.path} is gone: its actor system has finished"
            ) from exc


_current_cell = current_cell.get


def _ask_timeout(path: str, message: object, timeout: float) -> AskTimeoutError:
    return AskTimeoutError(
        f"actor {path} did not answer {type(message).__qualname__} within {timeout}s; "
        "pass a larger timeout= or check that the actor is not blocked"
    )


@final
class PendingReply(Generic[R]):
    """The reply to a request sent with :meth:`ActorRef.send_request`, once it comes."""

    __slots__ = ("_path", "_slot", "_waiting")

    def __init__(self, slot: ReplySlot[R], path: str) -> None:
        self._slot = slot
        self._path = path
        self._waiting = False

    def __repr__(self) -> str:
        return f"<PendingReply from {self._path} {'done' if self.done else 'pending'}>"

    @property
    def done(self) -> bool:
        """True once the reply (or the error) has come."""
        return self._slot.settled

    def result(self) -> R:
        """The handler's return value, or raise its error; :exc:`trio.WouldBlock` while
        the reply has not come. May be called any number of times."""
        if not self._slot.settled:
            raise trio.WouldBlock
        return self._slot.result()

    async def wait(self) -> R:
        """Wait for the reply and return it as :meth:`result` does.

        One task at a time may wait (another gets :exc:`trio.BusyResourceError`);
        cancelling the wait leaves the reply to come.
        """
        if self._waiting:
            raise trio.BusyResourceError(
                f"another task already waits for this reply from {self._path}"
            )
        self._waiting = True
        try:
            return await self._slot.wait()
        finally:
            self._waiting = False


def _trio_thread(method: str, path: str) -> WrongThreadError:
    return WrongThreadError(
        f"ActorRef.{method}() of {path} was called from the actor system's own trio thread, "
        "where it would deadlock; use await ref.tell() / ref.ask()"
    )


def _wrong_thread(method: str) -> WrongThreadError:
    return WrongThreadError(
        f"ActorRef.{method}() was called from a thread other than the actor system's trio "
        f"thread; from a plain OS thread use ref.tell_from_thread() or ref.ask_from_thread()"
    )
