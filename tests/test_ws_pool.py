"""Connection pools: routing strategies, members down and replaced, against loopback servers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing

import actors
import transport
from tests.reconnect_support import EXACT, OPTIONS, Endpoint, closed_port
from transport import ClientState, Routing
from transport._pool._routing import choose_member, stable_hash


@pytest.fixture
async def endpoint(system: actors.ActorSystem) -> AsyncIterator[Endpoint]:
    async with trio.open_nursery() as nursery:
        endpoint = Endpoint(system, greeting="welcome")
        await endpoint.start(nursery)
        yield endpoint
        nursery.cancel_scope.cancel()


async def introduce(connection: transport.WebSocketConnection) -> None:
    """on_connected: tell the server which pool member this connection belongs to."""
    await connection.send(f"hello {connection.ref.path.split('/')[-2]}")


def template(url: str, **kwargs: object) -> transport.ReconnectingClient:
    return transport.ReconnectingClient(
        url=url,
        options=OPTIONS,
        backoff=EXACT,
        on_connected=introduce,
        **kwargs,  # type: ignore[arg-type]
    )


async def wait_until(
    pool: transport.ConnectionPool, predicate: Callable[[transport.PoolStatistics], bool]
) -> transport.PoolStatistics:
    while not predicate(stats := pool.statistics()):
        await pool._router._changed.wait()
    return stats


async def by_member(
    endpoint: Endpoint, count: int, owners: dict[int, str] | None = None
) -> dict[str, list[str | bytes]]:
    """The next ``count`` messages (hellos aside), by the member that sent them.

    ``owners`` maps server connection numbers to members (updated from the hellos).
    """
    owners = {} if owners is None else owners
    got: dict[str, list[str | bytes]] = defaultdict(list)
    while count:
        number, message = await endpoint.messages.receive()
        if isinstance(message, str) and message.startswith("hello "):
            owners[number] = message.removeprefix("hello ")
            continue
        got[owners[number]].append(message)
        count -= 1
    return dict(got)


# -- sans-IO routing ------------------------------------------------------------------------


def test_round_robin_skips_members_that_are_down() -> None:
    up = [True, False, True]
    loads = [0, 0, 0]
    picks = []
    turn = 0
    for _ in range(4):
        index = choose_member(Routing.ROUND_ROBIN, up=up, loads=loads, turn=turn)
        picks.append(index)
        turn = index + 1
    assert picks == [0, 2, 0, 2]
    # Nobody up: in turn anyway (the member buffers).
    assert choose_member(Routing.ROUND_ROBIN, up=[False] * 3, loads=loads, turn=1) == 1


def test_least_loaded_prefers_live_members_then_the_lightest_in_turn() -> None:
    assert choose_member(Routing.LEAST_LOADED, up=[True] * 3, loads=[5, 2, 2], turn=0) == 1
    assert choose_member(Routing.LEAST_LOADED, up=[True] * 3, loads=[5, 2, 2], turn=2) == 2
    assert choose_member(Routing.LEAST_LOADED, up=[True, False, True], loads=[5, 0, 2], turn=0) == 2


def test_key_hash_is_stable_and_ignores_who_is_up() -> None:
    for key in ("user-1", b"user-2", 42, ("a", 1)):
        first = choose_member(Routing.KEY_HASH, up=[True] * 4, loads=[0] * 4, turn=0, key=key)
        down = choose_member(Routing.KEY_HASH, up=[False] * 4, loads=[9] * 4, turn=3, key=key)
        assert first == down == stable_hash(key) % 4
    assert stable_hash("user-1") == 2116437524  # the same in every process
    with pytest.raises(ValueError, match="needs a key"):
        choose_member(Routing.KEY_HASH, up=[True], loads=[0], turn=0)


# -- pools against a server -----------------------------------------------------------------


async def test_round_robin_spreads_evenly_and_inbound_comes_from_every_member(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    async with transport.open_connection_pool(system, template(endpoint.url), size=3) as pool:
        await pool.wait_connected()
        assert sorted([await pool.receive() for _ in range(3)]) == [
            "welcome 0",
            "welcome 1",
            "welcome 2",
        ]
        for i in range(30):
            await pool.send(f"m{i}")
        got = await by_member(endpoint, 30)
        assert got == {f"connection-{k}": [f"m{i}" for i in range(k, 30, 3)] for k in range(3)}
        stats = pool.statistics()
        assert (stats.routed, stats.rerouted, stats.connected) == ((10, 10, 10), 0, 3)
        assert [m.sent for m in stats.members] == [11, 11, 11]  # with the hello
    assert pool.statistics().connected == 0


async def test_key_hash_keeps_each_key_on_one_connection_in_order(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    keys = [f"user-{k}" for k in range(8)]
    async with transport.open_connection_pool(
        system, template(endpoint.url), size=3, routing=Routing.KEY_HASH
    ) as pool:
        await pool.wait_connected()
        for seq in range(5):
            for key in keys:
                await pool.send(f"{key}:{seq}", key=key)
        with pytest.raises(ValueError, match="needs a key"):
            await pool.send("no key")
        got = await by_member(endpoint, 40)
    for key in keys:
        owner = f"connection-{stable_hash(key) % 3}"
        for member, messages in got.items():
            mine = [m for m in messages if isinstance(m, str) and m.startswith(f"{key}:")]
            assert mine == ([f"{key}:{seq}" for seq in range(5)] if member == owner else [])


async def test_least_loaded_sends_to_the_lightest_members(
    system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    port = await closed_port()
    url = f"ws://127.0.0.1:{port}/"
    async with transport.open_connection_pool(
        system, template(url), size=3, routing=Routing.LEAST_LOADED
    ) as pool:
        # Nobody is connected yet: messages wait in the members' buffers.
        for i in range(5):
            await pool.members[0].tell(transport.SendText(f"direct {i}"))
        for i in range(6):
            await pool.send(f"m{i}")
        stats = pool.statistics()
        assert stats.routed == (0, 3, 3)
        assert [m.buffered for m in stats.members] == [5, 3, 3]
        async with trio.open_nursery() as nursery:
            endpoint = Endpoint(system)
            await endpoint.start(nursery, port=port)
            got = await by_member(endpoint, 11)
            assert got["connection-0"] == [f"direct {i}" for i in range(5)]
            assert got["connection-1"] == ["m0", "m2", "m4"]
            assert got["connection-2"] == ["m1", "m3", "m5"]
            nursery.cancel_scope.cancel()


async def test_a_killed_connection_is_replaced_while_the_others_keep_serving(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    async with transport.open_connection_pool(system, template(endpoint.url), size=3) as pool:
        await pool.wait_connected()
        owners: dict[int, str] = {}
        assert await by_member(endpoint, 0, owners) == {}
        while len(owners) < 3:
            number, message = await endpoint.messages.receive()
            assert isinstance(message, str)
            owners[number] = message.removeprefix("hello ")
        victim = endpoint.connections[
            next(n for n, member in owners.items() if member == "connection-1")
        ]
        await victim.close(1012, "restarting")
        await wait_until(pool, lambda s: s.connected == 2)
        down_at = trio.current_time()
        for i in range(6):
            await pool.send(f"down {i}")  # re-routed to the live members
        got = await by_member(endpoint, 6, owners)
        assert got == {
            "connection-0": ["down 0", "down 2", "down 4"],
            "connection-2": ["down 1", "down 3", "down 5"],
        }
        await pool.wait_connected()
        assert trio.current_time() - down_at == 1  # the member's own backoff
        for i in range(3):
            await pool.send(f"up {i}")
        got = await by_member(endpoint, 3, owners)
        assert sorted(got) == ["connection-0", "connection-1", "connection-2"]
        stats = pool.statistics()
        assert [m.connects for m in stats.members] == [1, 2, 1]
        assert stats.rerouted == 3
        assert stats.replaced == 0


async def test_key_hash_buffers_for_a_member_that_is_down(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    key = "user-7"
    owner = stable_hash(key) % 2
    async with transport.open_connection_pool(
        system, template(endpoint.url), size=2, routing=Routing.KEY_HASH
    ) as pool:
        await pool.wait_connected()
        hellos = {message: number for number, message in await endpoint.take(2)}
        await endpoint.connections[hellos[f"hello connection-{owner}"]].close(1013)
        await wait_until(pool, lambda s: s.connected == 1)
        for seq in range(4):
            await pool.send(f"{key}:{seq}", key=key)
        assert pool.statistics().members[owner].buffered == 4
        got = await by_member(endpoint, 4)
        assert got == {f"connection-{owner}": [f"{key}:{seq}" for seq in range(4)]}
        assert pool.statistics().rerouted == 0


async def test_a_member_that_gives_up_is_restarted_by_the_supervisor(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []

    async def flaky_login(connection: transport.WebSocketConnection) -> None:
        calls.append(connection.ref.path)
        if len(calls) == 1:
            raise PermissionError("first login refused")
        await introduce(connection)

    client = transport.ReconnectingClient(
        url=endpoint.url, options=OPTIONS, backoff=EXACT, on_connected=flaky_login
    )
    start = trio.current_time()
    async with transport.open_connection_pool(
        system, client, size=2, restart_backoff=EXACT
    ) as pool:
        await pool.wait_connected()
        assert trio.current_time() - start == 1  # the supervisor's restart backoff
        stats = pool.statistics()
        assert stats.replaced == 1
        assert stats.connected == 2
        for i in range(4):
            await pool.send(f"m{i}")
        got = await by_member(endpoint, 4)
        assert sum(len(messages) for messages in got.values()) == 4


async def test_a_pool_whose_members_keep_giving_up_fails(
    system: actors.ActorSystem, endpoint: Endpoint, autojump_clock: trio.testing.MockClock
) -> None:
    endpoint.reject = [401] * 100
    pool = await transport.connect_connection_pool(
        system, template(endpoint.url), size=2, restart_backoff=EXACT, max_restarts=3
    )
    reason = await pool.ref.wait_stopped()
    assert isinstance(reason, actors.Failed)
    assert isinstance(reason.error, actors.RestartIntensityError)
    assert "more than 3 restarts" in str(reason.error)
    # Two members fail at 0 s, both are restarted at 1 s and fail again: the fourth
    # restart is one too many. (A member whose third restart was already decided may
    # still make one more attempt: the runtime honours a stop that arrives between
    # incarnations only after the restart backoff.)
    assert endpoint.handshakes[:4] == [0, 0, 1, 1]
    with pytest.raises(actors.ActorStoppedError):
        await pool.send("anyone?")
    assert all(
        m.state in (ClientState.GAVE_UP, ClientState.CLOSED) for m in pool.statistics().members
    )
