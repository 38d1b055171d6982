"""The chat example scaled out: two chat server processes sharing their rooms through Redis.

Each server runs as users run it (``trio-actors chat --redis URL`` in a
subprocess, its address read from its ``listening on`` line), against a real redis-server
on a free loopback port (the ``redis_server`` fixture: skipped locally without
redis-server, failing under ``CI=true``). Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

import actors
from tests.redis_support import (
    COREDIS_MARKS,
    COREDIS_WARNINGS,
    RedisServer,
    collect_coredis_garbage as collect_coredis_garbage,
    redis_server as redis_server,
)
from tests.test_examples_chat import ROOT, ChatClient, chat_client, joined, said
from transport.apps import chat_protocol as protocol

pytestmark = COREDIS_MARKS

TIMEOUT = 20  # generous: each wait takes far less; the bound turns a hang into a failure


@attrs.define(eq=False)
class ChatServerProcess:
    url: str
    lines: list[str]
    #: What it wrote to stderr, once it has exited.
    errors: str = ""


@asynccontextmanager
async def chat_server(redis: RedisServer) -> AsyncIterator[ChatServerProcess]:
    """``trio-actors chat --redis URL`` until its ``listening on`` line and the
    one after it; leaving the block sends SIGINT and waits for a clean exit."""
    options = ["--port", "0", "--no-page", "--redis", redis.url]
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-W",
            "error",
            *COREDIS_WARNINGS,
            "-m",
            "transport.apps",
            "chat",
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(TIMEOUT):
            # It prints where it listens, then where its rooms live.
            while (match := re.search(rb"^listening on (\S+)\n.*\n", output, re.M)) is None:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    errors = await process.stderr.receive_some()
                    raise AssertionError(f"the chat server ended: {output!r} {errors!r}")
                output += chunk
        started = ChatServerProcess(match.group(1).decode(), output.decode().splitlines())
        yield started
        process.send_signal(signal.SIGINT)
        with trio.fail_after(TIMEOUT):
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
            started.errors = errors.decode()
            assert await process.wait() == 0, started.errors
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


def cut_off(message: protocol.ServerMessage) -> bool:
    return isinstance(message, protocol.Problem) and "may have been missed" in message.text


def texts(client: ChatClient) -> list[str]:
    return [m.text for m in client.seen if isinstance(m, protocol.Posted)]


async def members(client: ChatClient, room: str) -> protocol.ServerMessage:
    await client.send(protocol.AskWho(room))
    return await client.expect(lambda m: isinstance(m, protocol.Members))


async def test_a_room_spans_two_chat_servers_through_redis(
    system: actors.ActorSystem, redis_server: RedisServer
) -> None:
    async with chat_server(redis_server) as one, chat_server(redis_server) as two:
        assert one.url != two.url
        for server in (one, two):
            shared = f"rooms are shared through {redis_server.url} (this server is node "
            assert server.lines[1].startswith(shared), server.lines
        async with chat_client(system, one.url) as alice, chat_client(system, two.url) as bob:
            assert await alice.join("lobby", "alice") == protocol.Members("lobby", ("alice",))
            # Bob's server has its own room actor: it learns who is in the room on the other
            # server from its roll call, whose answer may still be on its way.
            assert "bob" in (await bob.join("lobby", "bob")).names
            await alice.expect(lambda m: m == protocol.Joined("lobby", "bob"))
            await bob.send(protocol.SayInRoom("lobby", "hello from server 2"))
            await alice.expect(said("bob", "hello from server 2"))
            await alice.send(protocol.SayInRoom("lobby", "hello from server 1"))
            await bob.expect(said("alice", "hello from server 1"))
            await alice.expect(said("alice", "hello from server 1"))
            # Everyone sees the room in one order, whichever server they are on.
            assert texts(alice) == texts(bob) == ["hello from server 2", "hello from server 1"]
            assert await members(bob, "lobby") == protocol.Members("lobby", ("bob", "alice"))
            assert await members(alice, "lobby") == protocol.Members("lobby", ("alice", "bob"))
            # A name is taken on every server, not just on the one that holds it.
            async with chat_client(system, two.url) as impostor:
                await impostor.send(protocol.JoinRoom("lobby", "alice"))
                problem = await impostor.expect(lambda m: isinstance(m, protocol.Problem))
                assert problem == protocol.Problem("the name 'alice' is taken in 'lobby'")
            async with chat_client(system, two.url) as carol:
                await carol.join("lobby", "carol")
                await alice.expect(joined("carol"))
            left = await alice.expect(lambda m: isinstance(m, protocol.Left))
            assert left == protocol.Left("lobby", "carol", "disconnected")
            await bob.send(protocol.LeaveRoom("lobby"))
            left = await alice.expect(lambda m: isinstance(m, protocol.Left))
            assert left == protocol.Left("lobby", "bob", "left the room")
    assert one.errors == two.errors == ""


async def test_members_are_told_when_redis_comes_back_and_the_chat_goes_on(
    system: actors.ActorSystem, redis_server: RedisServer
) -> None:
    async with chat_server(redis_server) as one, chat_server(redis_server) as two:
        async with chat_client(system, one.url) as alice, chat_client(system, two.url) as bob:
            await alice.join("lobby", "alice")
            await bob.join("lobby", "bob")
            await alice.expect(joined("bob"))
            # Redis goes away and comes back on the same port; each server reconnects,
            # subscribes again and tells its members that they may have missed messages.
            # It stays down for a while, so that the servers' attempts to reconnect are refused.
            await trio.to_thread.run_sync(redis_server.restart, 0.5)
            for member in (alice, bob):
                notice = await member.expect(cut_off)
                assert isinstance(notice, protocol.Problem)
                assert re.fullmatch(
                    r"the chat servers were cut off for \d+\.\ds: messages in 'lobby' "
                    r"may have been missed",
                    notice.text,
                )
            # Both servers are subscribed again: the room works across them as before.
            await alice.send(protocol.SayInRoom("lobby", "still there?"))
            await bob.expect(said("alice", "still there?"))
            await bob.send(protocol.SayInRoom("lobby", "yes"))
            await alice.expect(said("bob", "yes"))
    # Each server's log says what happened, and nothing else.
    for server in (one, two):
        lines = server.errors.splitlines()
        assert lines, "no warning about the lost connection"
        for line in lines:
            # The line names what failed, not the exception group it came in.
            lost = re.escape(f"backplane: lost redis at {redis_server.url}: ")
            assert re.match(rf"{lost}\w+(Error|Exception): ", line), server.errors


async def test_demo_with_redis_runs_two_servers_and_a_conversation_across_them(
    redis_server: RedisServer,
) -> None:
    command = [sys.executable, "-W", "error", *COREDIS_WARNINGS, "-m", "transport.apps", "demo"]
    with trio.fail_after(60):
        result = await trio.run_process(
            [*command, "--seconds", "4", "--seed", "1", "--redis", redis_server.url],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    assert f"rooms shared through {redis_server.url}" in out
    for server in ("1", "2"):
        assert re.search(
            rf"^chat server {server}: listening on ws://127\.0\.0\.1:\d+/$", out, re.MULTILINE
        )
    # Who is on which server.
    assert re.search(r"^on server 1: greeter, ticker, alice$", out, re.MULTILINE)
    assert re.search(r"^on server 2: commands, sensors$", out, re.MULTILINE)
    line = r"^\[ *[\d.]+s\] "
    for server, name in [("1", "greeter"), ("2", "commands"), ("1", "alice"), ("2", "sensors")]:
        assert re.search(rf"{line}\[server {server}\] -- {name} joined lobby$", out, re.MULTILINE)
    # Alice (server 1) asks, the command bot (server 2) answers; the greeter (server 1)
    # welcomes the command bot.
    assert re.search(rf"{line}\[server 1\] alice: /roll$", out, re.MULTILINE)
    assert re.search(rf"{line}\[server 2\] commands: alice rolled [1-6] \(d6\)$", out, re.MULTILINE)
    assert re.search(rf"{line}\[server 1\] greeter: welcome, commands!$", out, re.MULTILINE)
    # The command bot's /who answer lists the members of both servers.
    who = re.search(rf"{line}\[server 2\] commands: alice: in lobby: (.*)$", out, re.MULTILINE)
    assert who is not None
    assert set(who.group(1).split(", ")) == {"greeter", "commands", "ticker", "sensors", "alice"}
    assert re.search(r"^chat server 1: [1-9]\d* connections accepted", out, re.MULTILINE)
    assert re.search(r"^chat server 2: [1-9]\d* connections accepted", out, re.MULTILINE)
    assert "log ERROR" not in out
    assert "log WARNING" not in out
