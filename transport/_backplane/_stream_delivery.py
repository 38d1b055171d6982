"""Delivering a durable stream's entries to a consumer actor, and acknowledging them.

Each entry goes into the actor's mailbox as a request
(:meth:`actors.ActorRef.send_request`), a whole batch in a row, waiting only while the
mailbox is full; the actor handles them one at a time, in order. Each request's pending
reply tells how its entry ended: a value once its handler returned, an error if the
handler raised or rejected it, or if the actor stopped or dropped it first. An entry is
acknowledged once its reply holds a value, never before: an entry the actor stashes
(:class:`actors.Stash`) is acknowledged once the handler that finally handles it
returned. An entry whose reply is an error stays pending; the consumer claims it and
delivers it again after ``min_idle``.

Behind the actor, one task gathers the settled entries and acknowledges them with one
``XACK`` each time it looks: when the last entry of a batch has been handled, while the
next batch is read and handled, and every ``ACK_DELAY`` seconds while that entry is slow
to come. A handler that hangs thus holds back only itself and the entries after it.
"""

from __future__ import annotations

import logging
import math
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

#: Longest wait, in seconds, of a handled entry for its acknowledgement while the last
#: entry of its batch is not handled yet.
ACK_DELAY = 0.01


@final
class Delivery:
    """Hands batches of entries to one consumer actor and acknowledges those it handled.

    :meth:`deliver` sends entries; :meth:`serve_acks` (a task of its own) acknowledges
    them as their replies come; :meth:`close` acknowledges the last ones once the actor
    stopped.
    """

    __slots__ = (
        "_backplane",
        "_client",
        "_closed",
        "_closing",
        "_consumer",
        "_group",
        "_ids",
        "_key",
        "_mark",
        "_marked",
        "_name",
        "_ready",
        "_ref",
        "_replies",
        "_since",
        "_stuck",
        "_timeout",
    )

    def __init__(
        self,
        backplane: RedisBackplane,
        name: str,
        key: str,
        ref: actors.ActorRef[StreamMessage[Any]],
        group: str,
        consumer: str,
        timeout: float,
    ) -> None:
        self._backplane = backplane
        self._client: coredis.Redis[bytes] = backplane.client
        self._name = name
        self._key = key
        self._ref = ref
        self._group = group
        self._consumer = consumer
        self._timeout = timeout
        #: The entries sent and not settled yet (ids and replies, in the order sent).
        self._ids: list[Any] = []
        self._replies: list[actors.PendingReply[None]] = []
        #: Ids to acknowledge with the next ``XACK`` whatever their replies (undecodable).
        self._ready: list[Any] = []
        #: The reply to the last entry of the last batch sent, until a look found it settled.
        self._mark: actors.PendingReply[None] | None = None
        self._marked = trio.Event()  # set when a batch was sent
        #: When an entry last settled (or none waited), and whether a stall was logged.
        self._since = 0.0
        self._stuck = False
        self._closing = False
        self._closed = trio.Event()

    async def deliver(self, entries: tuple[StreamEntry, ...]) -> None:
        """Send ``entries`` to the actor in order, each as a request.

        Each wait for room in the mailbox is bounded by the consumer's handler timeout:
        past it, the rest of the batch stays pending. Entries that cannot be decoded go
        to dead letters and are acknowledged (delivering them again would not help).
        """
        backplane = self._backplane
        codec, max_size = backplane.codec, backplane.max_message_size
        name, group = self._name, self._group
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
                self._ready.append(entry_id)
                self._marked.set()
                continue
            ids.append(entry_id)
            messages.append(StreamMessage(name, group, text_id, message))
        ref, timeout = self._ref, self._timeout
        if not self._replies:
            self._since = trio.current_time()
        sent = 0
        reply = None
        waited = trio.current_time()  # since when the next entry waits to go in
        try:
            while sent < len(messages):
                with trio.move_on_at(waited + timeout):  # noqa: ASYNC912 - sends one at least
                    for message in messages[sent:]:
                        try:  # no pass through the scheduler while the mailbox has room
                            reply = ref.send_request_nowait(message)
                        except trio.WouldBlock:
                            reply = await ref.send_request(message)
                        # Not kept in locals: a look replaces the lists while this waits.
                        self._ids.append(ids[sent])
                        self._replies.append(reply)
                        sent += 1
                        waited = trio.current_time()
                if sent < len(messages) and trio.current_time() >= waited + timeout:
                    self._log_left(
                        len(messages) - sent, f"waiting {timeout}s for room in its mailbox"
                    )
                    break
        except (actors.ActorStoppedError, actors.MailboxFullError) as exc:
            self._log_left(len(messages) - sent, f"sending them ({exc!r})")
        if reply is not None:
            self._mark = reply
            self._marked.set()
        await trio.lowlevel.checkpoint()

    async def serve_acks(self) -> None:
        """Acknowledge the entries whose handler returned, one ``XACK`` per look.

        Returns once :meth:`close` was called and a look finds nothing more to
        acknowledge. An acknowledgement that fails (Redis away) leaves its entries
        pending: they are delivered again after ``min_idle``, at least once.
        """
        self._since = trio.current_time()
        try:
            while True:
                mark = self._mark
                if mark is None and not self._closing:
                    # No batch sent since the last look: wait for the next one, and look
                    # again now and then at the entries still unsettled (stashed ones).
                    with trio.move_on_after(ACK_DELAY if self._replies else math.inf):
                        await self._marked.wait()
                    self._marked = trio.Event()
                    if self._mark is not None:
                        continue
                elif mark is not None:
                    with trio.move_on_after(ACK_DELAY):
                        try:
                            await mark.wait()
                        except Exception:  # noqa: BLE001 - settled too; the look logs the error
                            await trio.lowlevel.checkpoint()  # wait() did, before raising
                    if mark.done and self._mark is mark:
                        self._mark = None
                else:  # closing, and every batch sent was looked at
                    await trio.lowlevel.checkpoint()
                ids = self._sweep()
                if ids:
                    try:
                        await self._client.xack(self._key, self._group, ids)
                    except Exception as exc:  # noqa: BLE001 - unacknowledged: delivered again
                        logger.debug(
                            "backplane: ack of %d entries of stream %r failed: %r",
                            len(ids),
                            self._name,
                            exc,
                        )
                elif self._closing:
                    return
        finally:
            self._closed.set()

    async def close(self) -> None:
        """Once the actor stopped (or within the handler timeout), acknowledge what it
        handled and return when the last ``XACK`` is done; :meth:`serve_acks` returns too."""
        with trio.move_on_after(self._timeout):
            await self._ref.wait_stopped()
        self._closing = True
        self._marked.set()
        await self._closed.wait()

    def _sweep(self) -> list[Any]:
        """Take the settled entries; return the ids of those handled, to acknowledge."""
        handled, self._ready = self._ready, []
        ids, replies = self._ids, self._replies
        unsettled_ids: list[Any] = []
        unsettled: list[actors.PendingReply[None]] = []
        stopped = 0
        for entry_id, reply in zip(ids, replies, strict=True):
            if not reply.done:
                unsettled_ids.append(entry_id)
                unsettled.append(reply)
                continue
            try:
                reply.result()
            except actors.ActorStoppedError as exc:
                if self._ref.is_alive:  # the handler raised it
                    self._log_failed(entry_id, exc)
                else:
                    stopped += 1
            except Exception as exc:  # noqa: BLE001 - left pending: delivered again after min_idle
                self._log_failed(entry_id, exc)
            else:
                handled.append(entry_id)
        if stopped:
            self._log_left(stopped, "it stopped")
        self._ids, self._replies = unsettled_ids, unsettled
        now = trio.current_time()
        if len(unsettled) < len(replies) or not unsettled:
            self._since = now
            self._stuck = False
        elif not self._stuck and now - self._since >= self._timeout:
            self._stuck = True
            self._log_left(len(unsettled), f"none was handled for {self._timeout}s")
        return handled

    def _log_failed(self, entry_id: Any, error: BaseException) -> None:
        logger.info(
            "backplane: %s of stream %r failed in %s (%r); it will be delivered again",
            entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            self._name,
            self._consumer,
            error,
        )

    def _log_left(self, count: int, why: str) -> None:
        if count > 0:
            logger.info(
                "backplane: %d entries of stream %r were left pending in %s while %s; "
                "they will be delivered again unless handled first",
                count,
                self._name,
                self._consumer,
                why,
            )
