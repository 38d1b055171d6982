from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

import actors

# actors.testing is a pytest plugin registered by the package's pytest11 entry point:
# installing trio-actors gives pytest its fixtures, no pytest_plugins line needed.


@pytest.fixture
async def system() -> AsyncIterator[actors.ActorSystem]:
    async with actors.open_system("test") as system:
        yield system


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients in tests connect directly unless a test names a proxy: a proxy set in the
    environment of the machine running them (``HTTPS_PROXY`` ...) must not carry their
    loopback connections."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority, for servers' certificates over TLS."""
    return trustme.CA()


@pytest.fixture
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    """A client SSL context that trusts :func:`ca` (and nothing else)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
