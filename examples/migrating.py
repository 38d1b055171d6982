"""The same programs written with trio-websocket and with trio-actors, side by side.

docs/migrating.rst shows each pair; ``tests/test_examples_migrating.py`` runs every client
against every server, so the two columns are known to do the same thing.
Each ``tws_*`` function uses trio-websocket directly, its ``actors_*`` twin this project.
"""

from __future__ import annotations

import trio
import trio_websocket

import actors
import transport

TOKEN = "let-me-in"

# -- a client --------------------------------------------------------------------------------


async def tws_client(url: str) -> str | bytes:
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message("hello")
        return await ws.get_message()


async def actors_client(url: str) -> str | bytes:
    async with actors.open_system() as system:
        async with transport.open_websocket_client(system, url) as ws:
            await ws.send("hello")
            return await ws.receive()


# -- an echo server that ends a connection on "bye" -------------------------------------------


async def tws_echo(request: trio_websocket.WebSocketRequest) -> None:
    # An exception here ends the whole server; returning closes with 1000.
    ws = await request.accept()
    try:
        while (message := await ws.get_message()) != "bye":
            await ws.send_message(message)
    except trio_websocket.ConnectionClosed:
        pass  # the client went away


async def actors_echo(connection: transport.WebSocketConnection) -> None:
    # An exception here closes this connection with 1011; the server goes on.
    async for message in connection:  # ends when the client goes away
        if message == "bye":
            return  # closes with 1000
        await connection.send(message)


async def tws_serve(
    port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, tws_echo, "127.0.0.1", port, None
        )
        task_status.started(server.port)


async def actors_serve(
    port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    async with actors.open_system() as system:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                transport.serve_websocket, system, actors_echo, "127.0.0.1", port
            )
            task_status.started(server.port)


# -- how a connection ended --------------------------------------------------------------------


async def tws_close_code(url: str) -> int:
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message("bye")
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed as closed:
            return closed.reason.code if closed.reason else 1005
    raise AssertionError("unreachable")  # pragma: no cover


async def actors_close_code(url: str) -> int:
    async with actors.open_system() as system:
        async with transport.open_websocket_client(system, url) as ws:
            await ws.send("bye")
            async for _ in ws:
                pass
            ended = await ws.ref.wait_stopped()  # the connection actor's stop reason
            assert isinstance(ended, transport.ConnectionClosed)
            return ended.code


# -- refusing a handshake -----------------------------------------------------------------------


async def tws_guarded(request: trio_websocket.WebSocketRequest) -> None:
    headers = {name.lower(): value for name, value in request.headers}
    if headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
        await request.reject(401)
        return
    await tws_echo_accepted(await request.accept())


async def tws_echo_accepted(ws: trio_websocket.WebSocketConnection) -> None:
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def check_token(request: transport.HandshakeRequest) -> transport.Reject | None:
    if request.header("authorization") != f"Bearer {TOKEN}":
        return transport.Reject(401)
    return None  # accept


GUARDED = transport.HandshakePolicy(on_handshake=check_token)
# transport.serve_websocket(system, actors_echo, host, port, policy=GUARDED)


# -- keepalive -----------------------------------------------------------------------------------


async def tws_heartbeat(ws: trio_websocket.WebSocketConnection, interval: float) -> None:
    """trio-websocket has no keepalive: a task of your own pings and gives up."""
    while True:
        with trio.fail_after(interval):  # no pong in time: TooSlowError ends the nursery
            await ws.ping()
        await trio.sleep(interval)


KEEPALIVE = transport.ConnectionOptions(ping_interval=20, pong_timeout=20)  # the defaults
# transport.open_websocket_client(system, url, options=KEEPALIVE)

NO_KEEPALIVE = transport.ConnectionOptions(ping_interval=None)

# -- sending from another task ---------------------------------------------------------------


async def tws_ticker(url: str, ticks: int) -> list[str | bytes]:
    """trio-websocket: any task may call the connection; a lock orders the sends."""
    async with trio_websocket.open_websocket_url(url) as ws:
        async with trio.open_nursery() as nursery:

            async def tick() -> None:
                for n in range(ticks):
                    await ws.send_message(f"tick {n}")

            nursery.start_soon(tick)
            received = [await ws.get_message() for _ in range(ticks)]
        return received


async def actors_ticker(url: str, ticks: int) -> list[str | bytes]:
    """trio-actors: any task may send (into the writer's queue); one task reads."""
    async with actors.open_system() as system:
        async with transport.open_websocket_client(system, url) as ws:
            async with trio.open_nursery() as nursery:

                async def tick() -> None:
                    for n in range(ticks):
                        await ws.send(f"tick {n}")

                nursery.start_soon(tick)
                received = [await ws.receive() for _ in range(ticks)]
            return received
