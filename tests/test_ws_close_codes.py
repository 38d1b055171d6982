"""Close codes and handshake decisions: pure functions, no trio."""

from __future__ import annotations

import inspect

import attrs
import pytest

import actors
import transport
from transport import CloseCode, is_transient
from transport._close_codes import Situation, close_code_for, is_sendable
from transport._overflow import close_situation
from transport._server._handshake import check_request


@pytest.mark.parametrize(
    ("situation", "code"),
    [
        (Situation.NORMAL, 1000),
        (Situation.SHUTDOWN, 1001),
        (Situation.RESTART, 1012),
        (Situation.HANDLER_FAILED, 1011),
        (Situation.MESSAGE_TOO_BIG, 1009),
        (Situation.OVERFLOW_POLICY_VIOLATION, 1008),
        (Situation.OVERFLOW_TRY_AGAIN_LATER, 1013),
        (Situation.BAD_PAYLOAD, 1007),
        (Situation.PROTOCOL_ERROR, 1002),
        (Situation.IDLE_TIMEOUT, 1001),
    ],
)
def test_every_situation_has_its_code(situation: Situation, code: int) -> None:
    assert close_code_for(situation) == code


def test_every_situation_is_mapped_to_a_sendable_code() -> None:
    for situation in Situation:
        assert is_sendable(close_code_for(situation))


@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 999, 1016, 2999, 5000])
def test_reserved_and_out_of_range_codes_are_not_sendable(code: int) -> None:
    assert not is_sendable(code)
    with pytest.raises(ValueError, match=str(code)):
        transport.Close(code)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_sendable_codes(code: int) -> None:
    assert is_sendable(code)
    assert transport.Close(code).code == code


def test_transient_codes_are_worth_a_reconnect() -> None:
    assert {c for c in CloseCode if is_transient(c)} == {1001, 1006, 1011, 1012, 1013, 1014}


def test_overflow_policies_map_to_their_close_situation() -> None:
    policy = transport.Overflow
    assert close_situation(policy.CLOSE_POLICY_VIOLATION) is Situation.OVERFLOW_POLICY_VIOLATION
    assert close_situation(policy.CLOSE_TRY_AGAIN_LATER) is Situation.OVERFLOW_TRY_AGAIN_LATER
    assert close_situation(policy.DROP_OLDEST) is None
    assert close_situation(policy.DROP_NEWEST) is None


def test_connection_closed_is_a_frozen_stop_reason() -> None:
    closed = transport.ConnectionClosed(1011, "internal error", error=ValueError("x"))
    assert isinstance(closed, actors.StopReason)
    assert closed.is_failure
    assert closed.is_transient
    assert closed == transport.ConnectionClosed(1011, "internal error")  # error not compared
    assert not transport.ConnectionClosed(1000).is_failure
    assert not transport.ConnectionClosed(1001).is_failure
    assert not transport.ConnectionClosed(1008).is_transient
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        closed.code = 1000  # type: ignore[misc]


def request(
    origin: str | None = None, subprotocols: tuple[str, ...] = ()
) -> transport.HandshakeRequest:
    headers = (("Origin", origin),) if origin else ()
    return transport.HandshakeRequest("/", headers, subprotocols, "")


def test_origin_allow_list() -> None:
    policy = transport.HandshakePolicy(allowed_origins={"https://a.example"})
    assert check_request(request("https://a.example"), policy) == transport.Accept()
    assert check_request(request("https://b.example"), policy) == transport.Reject(
        403, b"origin not allowed"
    )
    assert check_request(request(None), policy) == transport.Accept()  # not a browser


def test_subprotocol_follows_the_servers_preference() -> None:
    policy = transport.HandshakePolicy(subprotocols=("v3", "v2"))
    assert check_request(request(subprotocols=("v1", "v2", "v3")), policy).subprotocol == "v3"  # type: ignore[union-attr]
    assert check_request(request(subprotocols=("v1",)), policy) == transport.Accept(None)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="inbound_queue_size"):
        transport.ConnectionOptions(inbound_queue_size=0)
    with pytest.raises(ValueError, match="write_timeout"):
        transport.ConnectionOptions(write_timeout=0)
    with pytest.raises(ValueError, match="ping_interval"):
        transport.ConnectionOptions(ping_interval=-1)
    with pytest.raises(ValueError, match=r"overflow cannot be Overflow\.FAIL; use one of"):
        transport.ConnectionOptions(overflow=transport.Overflow.FAIL)
    with pytest.raises(ValueError, match=r"when_full cannot be Overflow\.CLOSE_TRY_AGAIN_LATER"):
        transport.ReconnectingClient(
            url="ws://h/", when_full=transport.Overflow.CLOSE_TRY_AGAIN_LATER
        )


def test_public_surface_is_documented() -> None:
    public = {name for name in dir(transport) if not name.startswith("_")} - {"annotations"}
    for name in public:
        obj = getattr(transport, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"transport.{name} has no docstring"
            assert obj.__module__.startswith("transport"), name
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                if member_name.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if inspect.isfunction(target):
                    assert target.__doc__, f"transport.{name}.{member_name} has no docstring"


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(transport) if not name.startswith("_")} - {"annotations"}
    assert set(transport.__all__) == public
