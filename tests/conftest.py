from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import actors

# actors.testing is a pytest plugin registered by the package's pytest11 entry point:
# installing trio-actors gives pytest its fixtures, no pytest_plugins line needed.


@pytest.fixture
async def system() -> AsyncIterator[actors.ActorSystem]:
    async with actors.open_system("test") as system:
        yield system
