"""One reader at a time over an inbox that outlives connections (reconnecting client, pool)."""

from __future__ import annotations

from typing import Self

import trio

from .._codec import Codec, RawCodec


class ReceiveIterable:
    """``async for message in x``: ``x.receive()`` until :exc:`trio.EndOfChannel`."""

    __slots__ = ()

    async def receive(self) -> str | bytes:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class InboxReader(ReceiveIterable):
    """``receive`` / ``receive_message`` / ``async for`` over an inbox channel.

    The inbox is the channel a reconnecting client (or a pool of them) fills
    across reconnects; ``None`` when inbound messages go to a subscriber actor
    instead. Only one task may receive at a time.
    """

    __slots__ = ("_inbox", "_receiving")

    def __init__(self, inbox: trio.MemoryReceiveChannel[object] | None) -> None:
        self._inbox = inbox
        self._receiving = False

    def _reader_name(self) -> str:
        raise NotImplementedError

    def _reader_codec(self) -> Codec:
        raise NotImplementedError

    async def receive(self) -> str | bytes:
        """The next inbound message, from whichever connection; :exc:`trio.EndOfChannel` at the end.

        The channel ends when the client (or pool) has stopped. Only with the
        default :class:`RawCodec`; with another codec use :meth:`receive_message`.
        """
        codec = self._reader_codec()
        if not isinstance(codec, RawCodec):
            raise TypeError(
                f"{self._reader_name()} decodes with {codec!r}; "
                "receive with receive_message(), not receive()"
            )
        data = await self.receive_message()
        assert isinstance(data, str | bytes)
        return data

    async def receive_message(self) -> object:
        """The next inbound message as the codec decoded it (or an :class:`Undecodable`)."""
        if self._inbox is None:
            raise RuntimeError(
                f"{self._reader_name()} delivers to its subscriber; read there, not here"
            )
        if self._receiving:
            raise trio.BusyResourceError(
                f"another task is already receiving from {self._reader_name()}; "
                "only one task may receive"
            )
        self._receiving = True
        try:
            return await self._inbox.receive()
        finally:
            self._receiving = False
