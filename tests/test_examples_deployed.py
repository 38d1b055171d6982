"""The server of the deployment guide (``examples/deployed_server.py``), run as users run it.

A real process on loopback: the client address from ``X-Forwarded-For`` behind a trusted
proxy (and not otherwise), the Origin allow-list, the drain at SIGTERM with 1012, and the
clear refusals before it listens (certificate files, the open-file limit).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trustme

import actors
import transport
from examples.deployed_server import client_address, parse_arguments

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20  # generous: each wait takes far less; the bound turns a hang into a failure
MODULE = "examples.deployed_server"


@asynccontextmanager
async def deployed(*args: str) -> AsyncIterator[tuple[str, trio.Process, list[bytes]]]:
    """Run the server until its ``listening on`` line; yield its URL, the process and its
    output so far (appended to as it arrives). Kills it on the way out if still running."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-W", "error", "-m", MODULE, "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    output = [b""]
    try:
        with trio.fail_after(TIMEOUT):
            while (match := re.search(rb"^listening on (\S+)$", output[0], re.M)) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, output[0]
                output[0] += chunk
        yield match.group(1).decode(), process, output
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def test_greets_with_the_forwarded_address_and_drains_with_1012_at_sigterm(
    system: actors.ActorSystem,
) -> None:
    args = ("--trusted-proxy", "127.0.0.1", "--allow-origin", "https://chat.example.com")
    async with deployed(*args) as (url, process, output):
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/", url)
        # As the proxy sends it: the client's claim first, then the address the proxy saw.
        forwarded = [("X-Forwarded-For", "10.9.9.9, 203.0.113.7")]
        async with transport.open_websocket_client(system, url, headers=forwarded) as ws:
            with trio.fail_after(TIMEOUT):
                assert await ws.receive() == "hello 203.0.113.7"
                await ws.send("ping")
                assert await ws.receive() == "ping"
            with pytest.raises(transport.HandshakeRejected) as refused:
                await transport.connect_websocket(
                    system, url, headers=[("Origin", "https://evil.example")]
                )
            assert refused.value.status == 403
            browser = [("Origin", "https://chat.example.com")]
            async with transport.open_websocket_client(system, url, headers=browser) as page:
                with trio.fail_after(TIMEOUT):
                    assert await page.receive() == "hello 127.0.0.1"  # no X-Forwarded-For
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(TIMEOUT):
                    reason = await page.ref.wait_stopped()
                    assert await process.wait() == 0
            assert isinstance(reason, transport.ConnectionClosed)
            assert (reason.code, reason.by_peer) == (1012, True)
        assert process.stdout is not None
        with trio.fail_after(TIMEOUT):
            while chunk := await process.stdout.receive_some():
                output[0] += chunk
        assert b"drained: 2 connections closed with 1012\n" in output[0]


def test_the_forwarded_address_is_believed_only_from_a_trusted_proxy() -> None:
    proxies = frozenset({"10.0.0.2", "10.0.0.3"})
    header = [("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.3")]
    assert client_address("10.0.0.2:40000", header, proxies) == "198.51.100.4"
    assert client_address("192.0.2.1:40000", header, proxies) == "192.0.2.1"
    assert client_address("10.0.0.2:40000", [], proxies) == "10.0.0.2"
    assert client_address("::1:40000", header, frozenset({"::1"})) == "10.0.0.3"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", MODULE, "--port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_a_missing_certificate_file_is_a_clear_error_before_listening(tmp_path: Path) -> None:
    missing = str(tmp_path / "cert.pem")
    result = run_module("--certfile", missing, "--keyfile", missing)
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        result.stderr == "cannot load --certfile/--keyfile: [Errno 2] No such file or directory\n"
    )


def test_max_connections_past_the_open_file_limit_is_refused_before_listening() -> None:
    result = run_module("--max-connections", str(2**40))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "too low for --max-connections 1099511627776" in result.stderr
    assert "raise it (ulimit -n, or LimitNOFILE= in the systemd unit)" in result.stderr


def test_a_key_that_does_not_match_the_certificate_is_a_clear_error(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    result = run_module(
        "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem")
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        "cannot load --certfile/--keyfile: [X509: KEY_VALUES_MISMATCH] key values mismatch"
    )


def test_the_gc_threshold_defaults_to_tune_gcs_and_is_checked_before_listening() -> None:
    assert parse_arguments([]).gc_threshold == 20_000
    assert parse_arguments(["--gc-threshold", "5000"]).gc_threshold == 5000
    result = run_module("--gc-threshold", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "error: --gc-threshold must be at least 1" in result.stderr
