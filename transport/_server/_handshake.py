"""The server's handshake decision: Origin allow-list, subprotocol choice, an auth hook.

:func:`decide` is the whole decision; only the user's hook is async. The server makes
it in its accept path, before any connection actor exists (:func:`answer_request`),
then spawns the actor with :func:`accepted_opener`; :func:`server_opener` does all of
it inside the actor, for a stream that did not come from a listener.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

import attrs
import trio

from .._adapter._answer import check_response
from .._adapter._library import Backend, open_request
from .._adapter._limits import DEFAULT_INBOUND_LIMITS, BackendLimits, InboundLimits
from .._adapter._request import PlainRequest, ServerRequest, describe_remote, read_request
from .._connection._actor import Opener
from .._connection._messages import ConnectionInfo, ConnectionOptions, compression_settings
from .._exceptions import HandshakeRejected
from .._redact import redact_headers, redact_target

logger = logging.getLogger("transport")


@attrs.frozen
class HandshakeRequest:
    """A client's opening request as the server sees it (values only, no stream).

    Its repr hides query values and the values of headers that may carry
    credentials (see ``transport._redact``); the attributes hold them all.
    """

    path: str = attrs.field(repr=redact_target)
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=redact_headers)
    subprotocols: tuple[str, ...]
    remote: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header (browsers always send it), or ``None``."""
        return self.header("origin")


@attrs.frozen
class Accept:
    """Accept the handshake, optionally choosing a ``subprotocol`` and adding ``headers``."""

    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Reject:
    """Refuse the handshake with an HTTP ``status`` (and an optional ``body``).

    The client gets one complete HTTP/1.1 response, and then the server closes the
    connection: the status with its reason phrase, ``headers``, ``Content-Length``,
    ``Date`` and ``Connection: close``; a ``body`` without a ``Content-Type`` in
    ``headers`` goes as ``text/plain; charset=utf-8``. Checked when made: a status
    outside 200 to 599, a header name that is not an HTTP token, a value with CR, LF or
    another control character, and a header the server writes itself
    (``Content-Length``, ``Transfer-Encoding``, ``Connection``, ``Date``) raise
    :exc:`ValueError` (in a hook: the client gets 500 and the log says why).
    """

    status: int = 403
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        check_response(self.status, self.headers, self.body)


#: Called with each request after the built-in checks passed: return :class:`Reject` to
#: refuse, :class:`Accept` to override the subprotocol or add headers, ``None`` to accept.
HandshakeHook = Callable[[HandshakeRequest], Awaitable[Accept | Reject | None]]


@attrs.frozen
class HttpResponse:
    """The answer to a plain HTTP request (see ``http`` of :class:`HandshakePolicy`).

    ``Content-Length``, ``Date`` and ``Connection: close`` are added; give the
    ``Content-Type`` in ``headers``. Checked when made, as :class:`Reject` is
    (:exc:`ValueError`; in a handler: the client gets 500 and the log says why);
    a 204 or 304 has no body.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        check_response(self.status, self.headers, self.body)


#: Answers a plain HTTP ``GET`` or ``HEAD`` (one without ``Upgrade``) on a WebSocket
#: server's port: the request comes as a :class:`HandshakeRequest` (no subprotocols).
HttpHandler = Callable[[HandshakeRequest], Awaitable[HttpResponse]]


@attrs.frozen(kw_only=True)
class HandshakePolicy:
    """What a server accepts.

    ``subprotocols``: the server's subprotocols in order of preference; the
    first one the client also proposed is chosen (none if there is no
    overlap). ``allowed_origins``: if given, a request carrying an ``Origin``
    header not in it is refused with 403 (requests without ``Origin`` come
    from non-browser clients and pass). ``on_handshake``: authentication or
    routing hook: an async function called with each :class:`HandshakeRequest` after
    the built-in checks passed; it returns a :class:`Reject` to refuse, an
    :class:`Accept` to override the subprotocol or add headers, ``None`` to accept.

    ``http``: answers plain HTTP requests on the same port (a health check, a
    page, metrics), see :data:`HttpHandler`. Without it (the default) a
    request that is not a websocket upgrade is answered 400. With it, a
    ``GET`` or ``HEAD`` without an ``Upgrade`` header goes to the handler
    (other methods get 405); each such request costs no connection actor, is
    answered once and closed (no keep-alive), and the handler is bounded by
    the handshake timeout (503 past it; 500 if it raises). Origins and
    ``on_handshake`` apply to websocket requests only.
    """

    subprotocols: Sequence[str] = ()
    allowed_origins: Collection[str] | None = None
    on_handshake: HandshakeHook | None = None
    http: HttpHandler | None = None


#: Accept every request, no subprotocol.
DEFAULT_POLICY = HandshakePolicy()

# The decision of a policy that checks nothing (decisions are frozen: one serves all).
_ACCEPT_AS_IS = Accept()


def check_request(request: HandshakeRequest, policy: HandshakePolicy) -> Accept | Reject:
    """The built-in part of the decision (pure): Origin, then subprotocol."""
    origin = request.origin
    allowed = policy.allowed_origins
    if allowed is not None and origin is not None and origin not in allowed:
        return Reject(403, b"origin not allowed")
    chosen = next((p for p in policy.subprotocols if p in request.subprotocols), None)
    return Accept(subprotocol=chosen)


async def decide(  # noqa: ASYNC910 - the hook is user code
    request: HandshakeRequest, policy: HandshakePolicy
) -> Accept | Reject:
    """The full decision: the built-in checks, then the hook (a hook that raises means 500)."""
    decision = check_request(request, policy)
    if isinstance(decision, Reject) or policy.on_handshake is None:
        await trio.lowlevel.checkpoint()
        return decision  # noqa: ASYNC910
    try:
        verdict = await policy.on_handshake(request)
    except Exception:
        logger.exception("the handshake hook raised for %s", redact_target(request.path))
        verdict = Reject(500, b"internal error")
    return decision if verdict is None else verdict  # noqa: ASYNC910


async def answer_request(
    request: ServerRequest, stream: trio.abc.Stream, policy: HandshakePolicy, *, within: float
) -> Accept | Reject:
    """Decide on ``request`` (bounded by ``within``, past which it is a 503).

    A :class:`Reject` has been answered and its stream closed when this returns;
    the caller hands an accepted request to its connection actor
    (:func:`accepted_opener`).
    """
    decision: Accept | Reject
    if policy.on_handshake is None and policy.allowed_origins is None and not policy.subprotocols:
        # Nothing to check: every request is accepted as it is.
        return _ACCEPT_AS_IS  # noqa: ASYNC910 - the caller's spawn checkpoints an accepted request
    if policy.on_handshake is None:
        # Only the built-in checks: plain code, nothing to bound (and no scope to pay
        # for on every accepted connection).
        decision = check_request(_request_of(request), policy)
    else:
        with trio.move_on_after(within) as scope:
            decision = await decide(_request_of(request), policy)
        if scope.cancelled_caught:
            logger.warning(
                "the handshake hook took over %ss for %s", within, redact_target(request.path)
            )
            decision = Reject(503, b"handshake decision timed out")
    if isinstance(decision, Reject):
        await request.reject(decision.status, decision.body, decision.headers, within)
    return decision  # noqa: ASYNC910 - the caller's spawn checkpoints an accepted request


async def answer_plain(request: PlainRequest, policy: HandshakePolicy, *, within: float) -> None:
    """Answer a plain HTTP ``request`` with ``policy.http`` and close its stream."""
    handler = policy.http
    assert handler is not None  # the server reads plain requests only when it has a handler
    response: HttpResponse
    if request.method not in ("GET", "HEAD"):
        await trio.lowlevel.checkpoint()
        response = HttpResponse(405, b"method not allowed\n", (("allow", "GET, HEAD"),))
    else:
        with trio.move_on_after(within) as scope:  # noqa: ASYNC912 - the handler is user code
            try:
                response = await handler(
                    HandshakeRequest(
                        request.path, request.headers, (), describe_remote(request.stream)
                    )
                )
            except Exception:
                logger.exception("the http handler raised for %s", redact_target(request.path))
                response = HttpResponse(500, b"internal error\n")
        if scope.cancelled_caught:
            logger.warning(
                "the http handler took over %ss for %s", within, redact_target(request.path)
            )
            response = HttpResponse(503, b"timed out\n")
    await request.respond(response.status, response.body, response.headers, within)


def backend_limits(
    options: ConnectionOptions, inbound: InboundLimits = DEFAULT_INBOUND_LIMITS
) -> BackendLimits:
    """The limits the library applies to a server connection made with ``options``
    (a server works them out once, for all its connections)."""
    return BackendLimits(
        options.max_message_size,
        options.receive_buffer_size,
        inbound,
        compression_settings(options),
    )


def accepted_opener(
    request: ServerRequest,
    stream: trio.abc.Stream,
    accept: Accept,
    options: ConnectionOptions,
    limits: BackendLimits,
) -> Opener:
    """An opener that hands an already accepted ``request`` to the library and sends the
    101; ``limits`` from :func:`backend_limits`."""

    async def open_connection(nursery: trio.Nursery) -> tuple[Backend, ConnectionInfo]:
        try:
            handshake = open_request(request, nursery, limits=limits, hold_violations=True)
            backend = await handshake.accept(
                accept.subprotocol, accept.headers, options.handshake_timeout
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
        info = ConnectionInfo(
            is_client=False,
            path=request.path,
            subprotocol=backend.subprotocol,
            headers=request.headers,
            remote=request.remote,
            compression=backend.compression,
        )
        return backend, info

    return open_connection


def server_opener(
    stream: trio.abc.Stream,
    policy: HandshakePolicy,
    options: ConnectionOptions,
    inbound: InboundLimits = DEFAULT_INBOUND_LIMITS,
) -> Opener:
    """An opener that reads the request from ``stream``, decides, and accepts or rejects it."""

    async def open_connection(nursery: trio.Nursery) -> tuple[Backend, ConnectionInfo]:
        timeout = options.handshake_timeout
        try:
            request = await read_request(stream, within=timeout)
            verdict = await answer_request(request, stream, policy, within=timeout)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
        if isinstance(verdict, Reject):
            raise HandshakeRejected(verdict.status, verdict.headers, verdict.body)
        opener = accepted_opener(
            request, stream, verdict, options, backend_limits(options, inbound)
        )
        return await opener(nursery)

    return open_connection


def _request_of(request: ServerRequest) -> HandshakeRequest:
    return HandshakeRequest(
        path=request.path,
        headers=request.headers,
        subprotocols=request.subprotocols,
        remote=request.remote,
    )
