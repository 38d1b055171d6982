"""Hostile frames from a raw-socket client: each earns its Close code, at once.

Every case of :data:`tests.hostile.FRAME_CASES` is sent right after a good handshake and
two valid messages, whose echoes must come first (strict close order).
The server must answer with a Close frame carrying the RFC 6455 code (1002 protocol
error, 1007 invalid payload, 1009 too big) instead of dropping TCP, within a bound,
and keep serving well-behaved clients.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import actors
import transport
from tests.hostile import (
    BINARY,
    FRAME_CASES,
    TEXT,
    FrameCase,
    HostileClient,
    frame,
    settled,
    start_server,
    still_serves,
)

#: Seconds within which every hostile frame must be answered (they are refused on sight).
ANSWER_WITHIN = 2.0


@pytest.mark.parametrize("case", FRAME_CASES, ids=[case.name for case in FRAME_CASES])
async def test_hostile_frame_is_closed_with_its_code(
    system: actors.ActorSystem, case: FrameCase
) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system)
        client = await HostileClient.open(server.port)
        with trio.fail_after(ANSWER_WITHIN):
            # Strict close order (guarantee 7): the echoes of the messages that came
            # before, in the same read, go out before the Close.
            await client.send(frame(TEXT, b"first") + frame(BINARY, b"second") + case.data)
            assert await client.next_message() == b"first"
            assert await client.next_message() == b"second"
            ending = await client.ending()
            assert ending.code == case.code, ending
            assert await client.closed()  # and the server closes TCP after its Close frame
        await client.aclose()
        with trio.fail_after(5):
            await settled(server)
            await still_serves(system, server.port)
        nursery.cancel_scope.cancel()


async def test_server_side_outcome_is_a_local_close_with_the_code(
    system: actors.ActorSystem,
) -> None:
    """The connection actor itself reports the protocol error it detected (not a 1006)."""
    send_ref, receive_ref = trio.open_memory_channel[actors.ActorRef[Any]](3)

    async def handler(connection: transport.WebSocketConnection) -> None:
        await send_ref.send(connection.ref)
        async for _ in connection:
            pass

    cases = FRAME_CASES[:2] + [c for c in FRAME_CASES if c.code != 1002][:2]
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, system, handler=handler)
        for case in cases:
            client = await HostileClient.open(server.port)
            with trio.fail_after(ANSWER_WITHIN):
                ref = await receive_ref.receive()
                await client.send(case.data)
                assert (await client.ending()).code == case.code
                reason = await ref.wait_stopped()
            await client.aclose()
            assert isinstance(reason, transport.ConnectionClosed)
            assert (reason.code, reason.by_peer) == (case.code, False), reason
            assert reason.reason
        nursery.cancel_scope.cancel()
