"""Delivering a durable stream's entries to a consumer actor, and acknowledging them.

A consumer hands each batch it read to its actor at once: every entry but the last is
told, the last is asked. The actor handles them one at a time, in order, so the answer
to the last says that every handler of the batch has run; which of them did not return
(a handler that raised, an entry rejected with :exc:`actors.ErrorReply`, dropped, or cut
short by a stop) the consumer reads from the actor's dead letters, by identity of the
message, and it acknowledges the others with one ``XACK``, sent while the next batch is
being handled. No entry is acknowledged before its handler returned, and no handler
waits for a round trip; the cost per entry is a ``tell``, not an ``ask`` and a task
switch.

An entry is handled when its handler returns. An actor that *stashes* an entry
(:class:`actors.Stash`) has returned from that handler: stash a stream's entries
only together with every later one (until ``unstash_all``), as an actor does while it
is not ready, or a later entry's answer acknowledges the stashed one before it is
handled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, final

import coredis
import trio
from coredis.response.types import StreamEntry

import actors

from .._codec import DecodeError
from ._interface import StreamMessage
from ._wire import decode_payload

if TYPE_CHECKING:
    from ._redis import RedisBackplane

logger = logging.getLogger("transport.backplane")

#: Dead letters of the system a consumer holds while a part is out, between two looks;
#: past that it cannot know which entries failed and acknowledges none it is unsure of.
LETTERS_BUFFER = 1024
#: Longest wait, in seconds, of a handled entry for its acknowledgement.
ACK_DELAY = 0.01


@final
class Part:
    """Entries handed to the actor together: every one told but the last, which is asked."""

    __slots__ = (
        "acked",
        "asked",
        "dead_letters",
        "failed",
        "ids",
        "letters",
        "lost",
        "messages",
        "positions",
        "told",
    )

    def __init__(
        self,
        messages: list[StreamMessage[Any]],
        ids: list[Any],
        letters: trio.MemoryReceiveChannel[actors.DeadLetter],
        dead_letters: int,
    ) -> None:
        self.messages = messages
        self.ids = ids
        #: Every dead letter of the system published while the part is out.
        self.letters = letters
        #: The actor's count of dead letters when the part was handed out.
        self.dead_letters = dead_letters
        #: How many of the first entries are in the mailbox (or were), in order.
        self.told = 0
        #: True once the last entry is in the mailbox (or was), asked.
        self.asked = False
        #: How many of the first entries were settled (acknowledged, or found failed).
        self.acked = 0
        #: Positions of the entries found in the actor's dead letters.
        self.failed: set[int] = set()
        #: True once dead letters may have been missed: failures cannot be told apart.
        self.lost = False
        #: Position of each message by its identity, made at the first dead letter.
        self.positions: dict[int, int] | None = None


@final
class Delivery:
    """Hands batches of entries to one consumer actor and acknowledges what it handled.

    A part of a batch (at most a mailbox's worth) goes into the mailbox at once:
    every entry told but the last, which is asked, so its answer comes once every
    handler before it has run. Which of them did not return (raised, rejected with
    :exc:`actors.ErrorReply`, dropped, cut short by a stop) is read from the actor's
    dead letters, by identity of the message. While the answer is slow to come,
    :meth:`serve_progress` acknowledges every ``ACK_DELAY`` the entries the actor is
    past: told entries no longer queued in its mailbox, but the one it may be
    handling. A handler that hangs thus holds back only itself and those after it.
    """

    __slots__ = (
        "_acks",
        "_backplane",
        "_busy",
        "_consumer",
        "_group",
        "_name",
        "_part",
        "_ref",
        "_timeout",
    )

    def __init__(
        self,
        backplane: RedisBackplane,
        name: str,
        ref: actors.ActorRef[StreamMessage[Any]],
        group: str,
        consumer: str,
        timeout: float,
        acks: Acknowledger,
    ) -> None:
        self._backplane = backplane
        self._name = name
        self._timeout = timeout
        self._ref = ref
        self._group = group
        self._consumer = consumer
        self._acks = acks
        self._part: Part | None = None
        self._busy = trio.Event()  # set while a part is out

    async def deliver(self, entries: tuple[StreamEntry, ...]) -> None:
        """Hand ``entries`` to the actor in order; acknowledge those it handled.

        Each wait (for room in the mailbox, for the answer to a part's last entry) is
        bounded by the consumer's handler timeout. Entries that cannot be decoded go to
        dead letters and are acknowledged (delivering them again would not help).
        """
        backplane = self._backplane
        codec, max_size = backplane.codec, backplane.max_message_size
        name, group = self._name, self._group
        undecodable: list[Any] = []
        ids: list[Any] = []
        messages: list[StreamMessage[Any]] = []
        for entry in entries:
            entry_id = entry.identifier
            text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            data = entry.field_values.get(b"m")
            try:
                if not isinstance(data, bytes):
                    raise DecodeError(f"stream entry {text_id} has no field 'm'", repr(entry))
                message = decode_payload(codec, data, max_size)
            except DecodeError as exc:
                backplane.dead_letter(data, f"backplane stream {name!r}", exc)
                undecodable.append(entry_id)
                continue
            ids.append(entry_id)
            messages.append(StreamMessage(name, group, text_id, message))
        self._acks.add_all(undecodable)
        if not messages:
            await trio.lowlevel.checkpoint()
            return
        # At most a mailbox's worth at once, so that a mailbox that drops or fails
        # when full takes a whole part (unless others fill it meanwhile).
        size = max(1, self._ref.statistics().capacity)
        for start in range(0, len(messages), size):
            stop = start + size
            if not await self._hand(messages[start:stop], ids[start:stop]):
                break  # the actor stopped or is stuck: the rest waits to be claimed

    async def _hand(self, messages: list[StreamMessage[Any]], ids: list[Any]) -> bool:
        """Tell all of ``messages`` but the last, ask the last; False to stop delivering.

        The dead letters are followed only while the part is out: an idle consumer
        holds none.
        """
        dead_letters = self._backplane.system.dead_letters
        with dead_letters.subscribe(LETTERS_BUFFER) as letters:
            part = Part(messages, ids, letters, self._ref.statistics().dead_lettered)
            self._part = part
            self._busy.set()
            try:
                return await self._hand_part(part)
            finally:
                self._part = None
                self._busy = trio.Event()

    async def _hand_part(self, part: Part) -> bool:
        ref, timeout = self._ref, self._timeout
        messages, ids = part.messages, part.ids
        last = len(messages) - 1
        answered = False  # the handler of the last one returned
        try:
            for message in messages[:last]:
                try:
                    ref.tell_nowait(message)
                except trio.WouldBlock:
                    with trio.move_on_after(timeout):
                        await ref.tell(message)
                        part.told += 1
                        continue
                    # No room for a whole timeout: a handler is stuck. Those it is past
                    # are acknowledged; the others stay pending.
                    self._settle(part, self._behind(part))
                    self._log_unknown(part, "waiting for room in its mailbox")
                    return False
                part.told += 1
            # The ask puts its message in the mailbox without a schedule point, or
            # waits for room among the senders.
            part.asked = True
            await ref.ask(messages[last], timeout=timeout)
            answered = True
        except actors.ActorStoppedError as exc:
            if ref.is_alive:  # the last handler raised it
                self._log_failed(messages[last].id, exc)
            else:
                # Stopped mid-batch: once it has stopped, each entry told and not
                # handled is in dead letters (a draining actor handles its queue first).
                with trio.move_on_after(timeout) as waited:
                    await ref.wait_stopped()
                if waited.cancelled_caught:  # pragma: no cover - a stop that hangs
                    self._settle(part, self._behind(part))
                    self._log_unknown(part, "stopping")
                    return False
        except actors.AskTimeoutError:
            self._settle(part, self._behind(part))
            part.told += 1
            self._log_unknown(part, f"handling them ({timeout}s passed)")
            return False
        except actors.MailboxFullError as exc:
            # A mailbox that fails when full (others filled it meanwhile).
            self._log_failed(messages[part.told].id, exc)
            self._settle(part, self._behind(part))
            self._log_unknown(part, "its mailbox was full")
            return False
        except Exception as exc:  # noqa: BLE001 - left pending: delivered again after min_idle
            self._log_failed(messages[last].id, exc)
        if answered:
            part.told += 1
            self._settle(part, 0)
            if part.lost:  # the last entry, at least, is known to be handled
                self._acks.add_all(ids[last:])
        else:
            self._settle(part, 0)
        return True

    async def serve_progress(self) -> None:
        """While a part's answer is slow to come, acknowledge the entries the actor is past."""
        while True:
            await self._busy.wait()
            await trio.sleep(ACK_DELAY)
            part = self._part
            if part is not None:
                # Told entries no longer queued were taken, in order, and all but the
                # one it may be handling returned or went to dead letters.
                self._settle(part, self._behind(part))
                self._acks.send_now()

    def _behind(self, part: Part) -> int:
        """How many of the told entries the actor may not be past yet.

        Told entries are taken in order; the mailbox's depth bounds how many are still
        queued (others' messages only make it larger), and one more may be in its
        handler. The asked entry, once in the mailbox, counts in the depth: unless
        some sender waits for room (it might be the ask), one less.
        """
        statistics = self._ref.statistics()
        behind = statistics.depth + 1
        if part.asked and not statistics.senders_waiting:
            behind -= 1
        return behind

    def _settle(self, part: Part, behind: int) -> None:
        """Acknowledge the told entries but the last ``behind``, unless they failed."""
        upto = part.told - behind
        if upto <= part.acked:
            return
        self._collect(part)
        if part.lost:
            return
        failed, ids = part.failed, part.ids
        if failed:
            self._acks.add_all([ids[p] for p in range(part.acked, upto) if p not in failed])
        else:
            self._acks.add_all(ids[part.acked : upto])
        part.acked = upto

    def _collect(self, part: Part) -> None:
        """Take the dead letters published so far; note which of ``part`` failed."""
        letters = part.letters
        received: list[actors.DeadLetter] = []
        while True:
            try:
                received.append(letters.receive_nowait())
            except trio.WouldBlock:
                break
            except trio.EndOfChannel:
                part.lost = True
                break
        if len(received) >= LETTERS_BUFFER:
            part.lost = True
        if self._ref.statistics().dead_lettered == part.dead_letters:
            return  # none of these letters is the actor's
        positions = part.positions
        if positions is None:
            positions = part.positions = {id(m): p for p, m in enumerate(part.messages)}
        path = self._ref.path
        for letter in received:
            position = positions.get(id(letter.message))
            if position is not None and letter.recipient == path:
                part.failed.add(position)
                if letter.reason is not actors.DeadLetterReason.STOPPED:
                    self._log_failed(part.messages[position].id, letter.error)

    def _log_failed(self, text_id: str, error: BaseException | None) -> None:
        logger.info(
            "backplane: %s of stream %r failed in %s (%r); it will be delivered again",
            text_id,
            self._name,
            self._consumer,
            error,
        )

    def _log_unknown(self, part: Part, why: str) -> None:
        count = part.told - part.acked
        if count > 0:
            logger.info(
                "backplane: %d entries of stream %r were left pending in %s while %s; "
                "they will be delivered again",
                count,
                self._name,
                self._consumer,
                why,
            )


@final
class Acknowledger:
    """Acknowledges handled entries in batches, behind the handlers.

    Each entry whose handler returned joins the next ``XACK``, which leaves when the
    batch read with it has been handled (:meth:`send_now`), or ``ACK_DELAY`` seconds
    after its first entry returned, whichever comes first: one command per batch read
    while entries flow, and a handler that hangs does not hold back the
    acknowledgement of those handled before it. An acknowledgement that fails (Redis
    away) or is cancelled leaves its entries pending: they are delivered again after
    ``min_idle``, at least once.
    """

    __slots__ = ("_client", "_due", "_group", "_idle", "_ids", "_key", "_name", "_wake")

    def __init__(self, client: coredis.Redis[bytes], key: str, group: str, name: str) -> None:
        self._client = client
        self._key = key
        self._group = group
        self._name = name
        self._ids: list[Any] = []
        self._wake = trio.Event()  # set when the first entry of a batch is added
        self._due = trio.Event()  # set when the batch must leave now
        self._idle = trio.Event()  # set while nothing waits for its acknowledgement
        self._idle.set()

    def add(self, entry_id: Any) -> None:
        """Acknowledge ``entry_id`` with the next batch."""
        self._ids.append(entry_id)
        if self._idle.is_set():
            self._idle = trio.Event()
        self._wake.set()

    def add_all(self, entry_ids: list[Any]) -> None:
        """Acknowledge each of ``entry_ids`` with the next batch."""
        if entry_ids:
            self._ids += entry_ids
            if self._idle.is_set():
                self._idle = trio.Event()
            self._wake.set()

    def send_now(self) -> None:
        """Send what has gathered without waiting for ``ACK_DELAY``."""
        if self._ids:
            self._due.set()

    async def serve(self) -> None:
        """Send the gathered acknowledgements, one batch at a time, until cancelled."""
        while True:
            await self._wake.wait()
            with trio.move_on_after(ACK_DELAY):
                await self._due.wait()
            self._wake = trio.Event()
            self._due = trio.Event()
            ids, self._ids = self._ids, []
            try:
                await self._client.xack(self._key, self._group, ids)
            except Exception as exc:  # noqa: BLE001 - unacknowledged: delivered again
                logger.debug(
                    "backplane: ack of %d entries of stream %r failed: %r",
                    len(ids),
                    self._name,
                    exc,
                )
            if self._ids:
                self._wake.set()
            else:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until every entry added so far was acknowledged (or its ack failed)."""
        self.send_now()
        await self._idle.wait()
