"""The side-by-side programs of docs/migrating.rst (``examples/migrating.py``) do the same.

Every client, trio-websocket's and ours, against every server, on loopback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio_websocket

import actors
import transport
from examples import migrating

TIMEOUT = 20  # generous: each exchange takes far less; the bound turns a hang into a failure
SERVERS = {"trio-websocket": migrating.tws_serve, "trio-actors": migrating.actors_serve}
Serve = Callable[..., Awaitable[None]]


@pytest.mark.parametrize("server", SERVERS.values(), ids=SERVERS.keys())
async def test_every_client_against_every_server(server: Serve) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server, 0)
        url = f"ws://127.0.0.1:{port}/"
        with trio.fail_after(TIMEOUT):
            assert await migrating.tws_client(url) == "hello"
            assert await migrating.actors_client(url) == "hello"
            # trio-websocket 0.12.2 leaves its client's socket open when the server closed
            # first; ours closes it (filterwarnings = error would catch a leak here).
            with pytest.warns(ResourceWarning, match="unclosed <socket"):
                code = await migrating.tws_close_code(url)
            assert code == 1000
            assert await migrating.actors_close_code(url) == 1000
            expected = [f"tick {n}" for n in range(50)]
            assert await migrating.tws_ticker(url, 50) == expected
            assert await migrating.actors_ticker(url, 50) == expected
        nursery.cancel_scope.cancel()


async def test_both_guards_refuse_without_the_token_and_admit_with_it() -> None:
    token = [("Authorization", f"Bearer {migrating.TOKEN}")]
    async with actors.open_system() as system:
        async with trio.open_nursery() as nursery:
            ours = functools.partial(transport.serve_websocket, policy=migrating.GUARDED)
            servers = [
                await nursery.start(
                    trio_websocket.serve_websocket, migrating.tws_guarded, "127.0.0.1", 0, None
                ),
                await nursery.start(ours, system, migrating.actors_echo, "127.0.0.1", 0),
            ]
            for server in servers:
                url = f"ws://127.0.0.1:{server.port}/"
                with trio.fail_after(TIMEOUT):
                    with pytest.raises(transport.HandshakeRejected) as refused:
                        await transport.connect_websocket(system, url)
                    assert refused.value.status == 401
                    async with transport.open_websocket_client(system, url, headers=token) as ws:
                        await ws.send("in")
                        assert await ws.receive() == "in"
            nursery.cancel_scope.cancel()


async def test_the_hand_made_heartbeat_keeps_pinging() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(migrating.actors_serve, 0)
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            with trio.move_on_after(0.3) as waited:
                await migrating.tws_heartbeat(ws, interval=0.05)
            assert waited.cancelled_caught  # it pinged, and every pong came in time
            assert ws.closed is None
        nursery.cancel_scope.cancel()


def test_the_keepalive_options_are_the_defaults() -> None:
    assert transport.ConnectionOptions() == migrating.KEEPALIVE
    assert migrating.NO_KEEPALIVE.ping_interval is None
