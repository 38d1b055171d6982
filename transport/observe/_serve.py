"""``serve_observer``: one port for ``/metrics``, the dashboard page and its WebSocket.

It is a WebSocket server of this framework (:func:`transport.serve_websocket`)
whose handshake policy answers plain HTTP ``GET`` requests too
(``http`` of :class:`transport.HandshakePolicy`): ``/`` gets the dashboard page,
``/metrics`` the Prometheus text, and an upgrade to ``/live`` becomes a
connection actor that feeds the page. Every figure is read in the system's trio
thread, in the task that answers the request.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import AsyncIterator
from typing import final

import trio

import actors

from .._server._handshake import HandshakePolicy, HandshakeRequest, HttpResponse, Reject
from .._server._host import WebSocketServer, serve_websocket
from ._dashboard import LIVE_PATH, dashboard_page, feed_dashboard
from ._metrics import metrics_text, require_prometheus
from ._tally import EventCounter, Tally

#: Seconds between two states sent to a dashboard when nothing happens.
DEFAULT_INTERVAL = 1.0
# The event counter's mailbox and subscription: a burst of events larger than this
# loses its oldest ones (counted in trio_actors_events_lost_total).
_EVENT_BUFFER = 1024
_HTML = "text/html; charset=utf-8"


@final
class Observer:
    """A running observer (from :func:`serve_observer` or :func:`open_observer`)."""

    __slots__ = ("_host", "server")

    def __init__(self, server: WebSocketServer, host: str) -> None:
        #: The WebSocket server that serves the observer's port.
        self.server = server
        self._host = host

    def __repr__(self) -> str:
        return f"<Observer {self.url}>"

    @property
    def port(self) -> int:
        """The bound TCP port (useful after asking for port 0)."""
        return self.server.port

    @property
    def url(self) -> str:
        """The dashboard's address, ``http://host:port/``; Prometheus scrapes ``url + "metrics"``."""
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"


async def serve_observer(  # noqa: ASYNC128 - serve_websocket calls started() through _Started
    system: actors.ActorSystem,
    host: str,
    port: int,
    *,
    interval: float = DEFAULT_INTERVAL,
    task_status: trio.TaskStatus[Observer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics and the live dashboard of ``system`` on ``host:port`` until cancelled.

    Use with ``nursery.start``, which returns an :class:`Observer`. On that one
    port, ``GET /metrics`` answers the Prometheus text format, ``GET /`` the
    dashboard page, and the page's WebSocket (``/live``) gets the state of the
    system every ``interval`` seconds and each system event as it happens.

    The observer counts the connections, servers, reconnecting clients and
    backplanes of ``system`` that start after it, so start it first. One
    observer per system. It adds three actors to the system it watches: its
    event counter, its server's host and one connection per open dashboard.
    The dashboard shows the system's internals to whoever reaches the port:
    bind it to a loopback address (the usual ``127.0.0.1``) or put it behind
    an authenticating proxy.

    Raises :exc:`ModuleNotFoundError` without the ``metrics`` extra
    (``prometheus-client``), and :exc:`OSError` naming the address when the
    port cannot be bound (for example, when it is taken).
    """
    _check_arguments(interval)
    tally = Tally(system)
    tally.attach()
    counter: actors.ActorRef[actors.SystemEvent] | None = None
    try:
        counter = await system.spawn(
            EventCounter(tally), name="observer-events", mailbox_size=_EVENT_BUFFER
        )
        tally.subscription = system.events.subscribe_actor(counter, buffer=_EVENT_BUFFER)
        policy = HandshakePolicy(
            on_handshake=_only_live, http=functools.partial(_answer_http, tally)
        )
        started = _Started(task_status, host)
        try:
            await serve_websocket(
                system,
                functools.partial(feed_dashboard, tally, interval),
                host,
                port,
                policy=policy,
                name="observer",
                task_status=started,
            )
        except OSError as exc:
            if started.done:
                raise
            raise _listen_error(host, port, exc) from exc
    finally:
        tally.detach()
        if counter is not None:
            with trio.CancelScope(shield=True):
                await counter.stop()


@contextlib.asynccontextmanager
async def open_observer(
    system: actors.ActorSystem, host: str, port: int, *, interval: float = DEFAULT_INTERVAL
) -> AsyncIterator[Observer]:
    """:func:`serve_observer` for the duration of an ``async with`` block::

        async with transport.observe.open_observer(system, "127.0.0.1", 9464) as observer:
            print("dashboard:", observer.url)

    Raises what :func:`serve_observer` raises; exceptions raised in the block
    propagate unchanged. Neither is wrapped in an exception group.
    """
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            observer: Observer = await nursery.start(
                functools.partial(serve_observer, system, host, port, interval=interval)
            )
        except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery, unwrapped
            failure = exc
        else:
            try:
                yield observer
            except GeneratorExit:
                raise
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - re-raised below, outside the nursery
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _check_arguments(interval: float) -> None:
    if not interval > 0:
        raise ValueError(f"interval must be positive, not {interval!r}")
    require_prometheus()


class _Started:
    """Turns the server's ``started(server)`` into ``started(Observer)``."""

    def __init__(self, task_status: trio.TaskStatus[Observer], host: str) -> None:
        self._task_status = task_status
        self._host = host
        self.done = False

    def started(self, value: WebSocketServer | None = None) -> None:
        assert value is not None
        self.done = True
        self._task_status.started(Observer(value, self._host))


def _listen_error(host: str, port: int, exc: OSError) -> OSError:
    if exc.errno == errno.EADDRINUSE:
        why = "the port is taken; pick another port, or stop what listens there"
    else:
        why = f"{exc.strerror or exc}; check the host and port"
    return OSError(exc.errno, f"the observer cannot listen on {host}:{port}: {why}")


async def _only_live(request: HandshakeRequest) -> Reject | None:
    await trio.lowlevel.checkpoint()
    if request.path.split("?", 1)[0] == LIVE_PATH:
        return None
    return Reject(404, f"the dashboard's websocket is at {LIVE_PATH}\n".encode())


async def _answer_http(tally: Tally, request: HandshakeRequest) -> HttpResponse:
    await trio.lowlevel.checkpoint()
    path = request.path.split("?", 1)[0]
    if path == "/metrics":
        body, content_type = metrics_text(tally)
        return HttpResponse(200, body, (("content-type", content_type),))
    if path in ("/", "/index.html"):
        return HttpResponse(200, dashboard_page(), (("content-type", _HTML),))
    return HttpResponse(
        404,
        b"not found: the observer serves / (the dashboard) and /metrics\n",
        (("content-type", "text/plain; charset=utf-8"),),
    )
