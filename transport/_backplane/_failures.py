"""Which exceptions mean "the connection to Redis is gone", wherever coredis raises them."""

from __future__ import annotations

import re

import anyio
import coredis.exceptions
import trio

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,  # a connection coredis closed after it broke
    anyio.EndOfStream,
    trio.BrokenResourceError,
)


def is_connection_failure(exc: BaseException) -> bool:
    """True if ``exc`` (or every leaf of the group ``exc``) means the connection is gone."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_connection_failure(inner) for inner in exc.exceptions)
    return isinstance(exc, CONNECTION_ERRORS)


def is_start_failure(exc: BaseException, *also: type[BaseException]) -> bool:
    """True if ``exc`` says the server at the url is not a reachable Redis (or is one of ``also``)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_start_failure(inner, *also) for inner in exc.exceptions)
    return isinstance(exc, (*CONNECTION_ERRORS, coredis.exceptions.RedisError, *also))


def describe(exc: BaseException) -> str:
    """``Type: text`` of ``exc``, looking inside groups of one."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return re.sub(r"(?<=://)([^:/@]*):[^@/]*@", r"\1:***@", url)
