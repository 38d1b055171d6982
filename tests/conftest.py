from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import actors

pytest_plugins = ["actors.testing"]


@pytest.fixture
async def system() -> AsyncIterator[actors.ActorSystem]:
    async with actors.open_system("test") as system:
        yield system
