"""WebSocket servers of a second implementation (``websockets``, asyncio), run as a subprocess.

::

    python tests/peer_servers.py speak-first

prints ``port N`` once it listens on loopback, then serves until its stdin closes.

- ``speak-first``: each connection's handler sends ``"bye"`` and closes with 1001 at once,
  so the text and the Close frame can arrive in the same read as the 101 response.
- ``echo``: each connection's handler sends back every message it receives.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def speak_first(connection: ServerConnection) -> None:
    await connection.send("bye")
    await connection.close(1001, "going away")


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


HANDLERS = {"speak-first": speak_first, "echo": echo}


async def main(kind: str) -> None:
    async with serve(HANDLERS[kind], "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"port {port}", flush=True)  # noqa: T201 - the protocol with the test is stdout
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
