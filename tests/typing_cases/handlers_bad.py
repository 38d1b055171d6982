"""A handler whose reply does not match its request: mypy --strict must reject each one.

``tests/test_typing.py`` expects an error on exactly the lines marked below.
"""

from __future__ import annotations

import attrs

import actors


@attrs.frozen
class GetTotal(actors.Request[int]):
    pass


@attrs.frozen
class GetName(actors.Request[str]):
    pass


@attrs.define(eq=False)
class Counter(actors.Actor[GetTotal | GetName]):
    total: int = 0

    @actors.handler(GetTotal)  # error: returns str, GetTotal's reply is int
    def get_total(self, message: GetTotal) -> str:
        return str(self.total)

    @actors.handler(GetName)  # error: an async handler returning int, GetName's reply is str
    async def get_name(self, message: GetName) -> int:
        return self.total
