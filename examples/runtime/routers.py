"""A pool of workers behind a router, a group router, and a stash that waits for a connection.

Run it from the repository root: ``python -m examples.runtime.routers``.

Sessions are routed by user with consistent hashing, so one user's requests always reach the
same worker; a worker that crashes is restarted in place by the pool; growing the pool moves
only the keys the newcomer takes over. A database client stashes queries until it is
connected, then answers them in the order they came. Time is virtual (``MockClock``).
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

import actors

from .transcript import log_runtime_to_stdout, stamp


@attrs.frozen
class Visit(actors.Request[str]):
    """A user's request; the reply names the worker that served it."""

    user: str


@attrs.frozen
class Crash:
    user: str


@attrs.define(eq=False)
class Worker(actors.Actor[Visit | Crash]):
    """Counts the visits of each user it serves: state that must stay on one worker."""

    visits: dict[str, int] = attrs.Factory(dict)

    @actors.handler(Visit)
    def visit(self, message: Visit) -> str:
        self.visits[message.user] = self.visits.get(message.user, 0) + 1
        return f"{message.user} -> {self.ctx.name} (visit {self.visits[message.user]})"

    @actors.handler
    def crash(self, message: Crash) -> None:
        raise RuntimeError(f"bad session for {message.user}")


def by_user(message: Visit | Crash) -> str:
    return message.user


async def sessions(system: actors.ActorSystem) -> None:
    pool = await system.spawn_pool(
        Worker, size=3, routing=actors.ConsistentHashing(key=by_user), name="sessions"
    )
    print(f"{stamp()} pool of {[ref.name for ref in pool.routees]}")
    users = ["ada", "bob", "cy", "dee", "eve", "fay"]
    for user in [*users, "ada", "bob"]:
        print(f"{stamp()} {await pool.ask(Visit(user))}")
    owner = {user: (await pool.ask(Visit(user))).split()[2] for user in users}

    await pool.tell(Crash("bob"))  # bob's worker fails; the pool restarts it in place
    print(f"{stamp()} after a crash: {await pool.ask(Visit('bob'))}")

    await pool.resize(4)
    moved = {user: (await pool.ask(Visit(user))).split()[2] for user in users}
    changed = [user for user in users if moved[user] != owner[user]]
    targets = sorted({moved[user] for user in changed})
    print(f"{stamp()} grown to {len(pool.routees)} routees: {changed} moved, to {targets}")
    await pool.stop()


@attrs.frozen
class Query(actors.Request[str]):
    sql: str


@attrs.frozen
class Connected:
    pass


@attrs.frozen
class ConnectFailed:
    error: Exception


@attrs.define(eq=False)
class Database(actors.Actor[Query | Connected | ConnectFailed]):
    """Stashes queries until the connection is up, then answers them in order."""

    connected: bool = False

    async def on_start(self) -> None:
        self.ctx.pipe_to_self(
            self._connect, on_result=lambda _: Connected(), on_error=ConnectFailed
        )

    async def _connect(self) -> None:
        await trio.sleep(2)  # the handshake

    @actors.handler(Query)
    def query(self, message: Query) -> str:
        if not self.connected:
            self.ctx.stash.stash()
            print(f"{stamp()} database: stashed {message.sql!r} ({len(self.ctx.stash)} waiting)")
            return ""  # not the reply: the asker waits for the unstashed query's
        return f"rows for {message.sql!r}"

    @actors.handler
    def connected_now(self, message: Connected) -> None:
        self.connected = True
        print(f"{stamp()} database: connected, unstashing {self.ctx.stash.unstash_all()}")

    @actors.handler
    def connect_failed(self, message: ConnectFailed) -> None:
        raise message.error  # the actor fails; its stash goes to dead letters


async def stash(system: actors.ActorSystem) -> None:
    database = await system.spawn(Database(), name="database")
    queries = ("select 1", "select 2", "select 3")
    answers: dict[str, str] = {}

    async def ask(sql: str) -> None:
        answers[sql] = await database.ask(Query(sql))

    async with trio.open_nursery() as nursery:
        for sql in queries:
            nursery.start_soon(ask, sql)
            await trio.sleep(0.5)
    # The three answers come in one busy spell of the database: their askers wake
    # together, in an order of trio's choosing, so they are printed in query order.
    for sql in queries:
        print(f"{stamp()} client: {answers[sql]}")


async def main() -> None:
    log_runtime_to_stdout()
    async with actors.open_system("routers") as system:
        await sessions(system)
        print()
        await stash(system)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
