"""The ``trio-actors`` command as users get it: the wheel built from this tree, installed with
``pip install 'trio-actors[demo]'`` into a plain virtual environment, run as real processes
on loopback.

A second environment holds the base install alone (no extra): the runtime and the WebSocket
transport import without Redis's client, and the programs that need an extra say which one.
Every wait is bounded; a hang fails the test.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import signal
import socket
import ssl
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio
import trustme

import actors
import transport
from tests.test_examples_chat import check_chat_page
from transport.apps import chat_protocol as protocol

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 300  # building and installing from the package index, cache or not
TIMEOUT = 30  # generous: every run below takes a few seconds; the bound turns a hang into a failure
BIG = 2 * 1024 * 1024  # past the default 1 MiB limit of a message


@attrs.frozen
class Install:
    """A virtual environment with the wheel installed, and its ``trio-actors`` script."""

    python: Path
    script: Path


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )


def _install(where: Path, requirement: str) -> Install:
    """A fresh venv at ``where`` holding ``requirement`` (this interpreter's pip installs it)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    python = where / "bin" / "python"
    _pip("--python", str(python), "install", requirement)
    return Install(python, where / "bin" / "trio-actors")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT))
    (built,) = out.glob("trio_actors-*.whl")
    return built


@pytest.fixture(scope="module")
def with_demo(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    return _install(tmp_path_factory.mktemp("venv") / "demo", f"{wheel}[demo]")


@pytest.fixture(scope="module")
def base(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    return _install(tmp_path_factory.mktemp("venv") / "base", str(wheel))


def run(install: Install, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(install.script), *args],
        cwd=install.python.parent,  # not the source tree: only the installed packages count
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@asynccontextmanager
async def serving(
    install: Install, *args: str, until: bytes = b"listening on "
) -> AsyncIterator[tuple[trio.Process, list[str]]]:
    """Run the installed script until it prints a line with ``until``; yield it and its lines."""
    process = await trio.lowlevel.open_process(
        [str(install.script), *args],
        cwd=install.python.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    output = b""
    try:
        with trio.fail_after(TIMEOUT):
            while until not in output or not output.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, f"it ended: {output!r}"
                output += chunk
        yield process, output.decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def stopped_by(process: trio.Process, signum: signal.Signals) -> tuple[int, str]:
    """Send ``signum``; the exit status and what it wrote on stderr."""
    assert process.stderr is not None
    process.send_signal(signum)
    errors = b""
    with trio.fail_after(TIMEOUT):
        while chunk := await process.stderr.receive_some():
            errors += chunk
        return await process.wait(), errors.decode()


def url_in(lines: list[str]) -> str:
    match = next(m for line in lines if (m := re.match(r"listening on (\S+)$", line)))
    return match.group(1)


# -- the distribution -------------------------------------------------------------------------


def test_wheel_ships_the_programs_the_licence_and_lean_requirements(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
        (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for shipped in ["cli.py", "demo.py", "echo_server.py", "chat_server.py", "static/chat.html"]:
        assert f"transport/apps/{shipped}" in names
    assert not any(name.startswith(("examples/", "tests/")) for name in names)
    assert "trio-actors = transport.apps.cli:main" in scripts
    assert metadata["License-Expression"] == "MIT OR Apache-2.0"
    licences = {name.rsplit("/", 1)[-1] for name in names if "/licenses/" in name}
    assert licences == {"LICENSE", "LICENSE.MIT", "LICENSE.APACHE2"}
    classifiers = metadata.get_all("Classifier") or []
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {minor}" in classifiers
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = {re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0] for r in requires if ";" not in r}
    assert {"trio", "trio-websocket", "wsproto", "attrs", "cattrs", "outcome"} <= unconditional
    assert "coredis" not in unconditional
    assert any(re.match(r"coredis\b.*; extra == .redis.$", r) for r in requires), requires
    assert any(re.match(r"trustme\b.*; extra == .demo.$", r) for r in requires), requires


def test_version(with_demo: Install) -> None:
    result = run(with_demo, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"trio-actors {importlib.metadata.version('trio-actors')}\n"


def test_base_install_imports_without_the_redis_client(base: Install) -> None:
    probe = "import actors, transport, importlib.util; print(importlib.util.find_spec('coredis'))"
    result = subprocess.run(
        [str(base.python), "-W", "error", "-c", probe],
        cwd=base.python.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "None\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["chat", "--port", "0", "--redis", "redis://127.0.0.1:6379/0"], "trio-actors[redis]"),
        (["demo", "--seconds", "1"], "trio-actors[demo]"),
    ],
)
def test_a_program_without_its_extra_says_which_to_install(
    base: Install, args: list[str], says: str
) -> None:
    result = run(base, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"trio-actors {args[0]}: error: ")
    assert f"pip install '{says}'" in result.stderr


# -- the programs -----------------------------------------------------------------------------


async def test_echo_takes_big_messages_and_closes_with_1001_at_sigterm(
    with_demo: Install, system: actors.ActorSystem
) -> None:
    args = ["echo", "--port", "0", "--max-message-size", "4MiB"]
    async with serving(with_demo, *args) as (process, lines):
        url = url_in(lines)
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/", url)
        options = transport.ConnectionOptions(max_message_size=4 * 1024 * 1024)
        async with transport.open_websocket_client(system, url, options=options) as ws:
            big = b"\x01" * BIG
            await ws.send(big)
            with trio.fail_after(TIMEOUT):
                assert await ws.receive() == big
            status, errors = await stopped_by(process, signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                ended = await ws.ref.wait_stopped()
    assert (status, errors) == (0, "")
    assert isinstance(ended, transport.ConnectionClosed)
    assert (ended.code, ended.by_peer) == (1001, True)


async def test_echo_over_tls_stops_at_ctrl_c(
    with_demo: Install, system: actors.ActorSystem, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = ["--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem")]
    async with serving(with_demo, "echo", "--port", "0", *args) as (process, lines):
        url = url_in(lines)
        assert url.startswith("wss://127.0.0.1:")
        client = trustme_client(ca)
        async with transport.open_websocket_client(system, url, ssl_context=client) as ws:
            await ws.send("secret")
            with trio.fail_after(TIMEOUT):
                assert await ws.receive() == "secret"
            assert await stopped_by(process, signal.SIGINT) == (0, "")


def trustme_client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_chat_serves_its_page_and_a_room(
    with_demo: Install, system: actors.ActorSystem
) -> None:
    args = ["chat", "--port", "0", "--http-port", "0"]
    async with serving(with_demo, *args, until=b" in a browser") as (process, lines):
        url = url_in(lines)
        await check_chat_page(url, lines)
        async with transport.open_websocket_client(system, url) as ws:
            await ws.send(protocol.encode_client(protocol.JoinRoom("lobby", "ada")))
            with trio.fail_after(TIMEOUT):
                reply = await ws.receive()
            assert isinstance(reply, str)
            assert protocol.decode_server(reply) == protocol.Members("lobby", ("ada",))
        assert await stopped_by(process, signal.SIGTERM) == (0, "")


def test_demo_runs_from_the_install(with_demo: Install) -> None:
    result = run(with_demo, "demo", "--seconds", "3", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for name in ["greeter", "commands", "ticker", "sensors", "alice"]:
        assert re.search(rf"-- {name} joined lobby$", result.stdout, re.MULTILINE), name
    assert re.search(r"^chat connections: 5 accepted, 0 still open$", result.stdout, re.MULTILINE)


# -- bad arguments ----------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
def mismatched(tmp_path: Path) -> tuple[str, str]:
    """A certificate and the key of another certificate."""
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    return str(tmp_path / "cert.pem"), str(tmp_path / "other-key.pem")


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{command}: error: "), result.stderr
    return result.stderr


def test_unknown_option(with_demo: Install) -> None:
    line = one_error_line(run(with_demo, "echo", "--colour", "red"), "trio-actors echo")
    assert "unrecognized arguments: --colour red" in line
    assert "trio-actors echo --help" in line
    line = one_error_line(run(with_demo, "serve"), "trio-actors")
    assert "invalid choice: 'serve'" in line


def test_port_in_use_names_the_option(with_demo: Install, taken_port: int) -> None:
    result = run(with_demo, "echo", "--port", str(taken_port))
    line = one_error_line(result, "trio-actors echo")
    assert f"cannot listen on 127.0.0.1:{taken_port} (--port): address already in use" in line
    args = ["chat", "--port", "0", "--http-port", str(taken_port)]
    line = one_error_line(run(with_demo, *args), "trio-actors chat")
    assert f"127.0.0.1:{taken_port} (--http-port)" in line


def test_missing_certificate_file(with_demo: Install, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.pem")
    result = run(with_demo, "echo", "--certfile", missing, "--keyfile", missing)
    assert f"--certfile {missing}: no such file" in one_error_line(result, "trio-actors echo")


def test_key_that_is_not_the_certificates(with_demo: Install, mismatched: tuple[str, str]) -> None:
    cert, key = mismatched
    result = run(with_demo, "echo", "--certfile", cert, "--keyfile", key)
    line = one_error_line(result, "trio-actors echo")
    assert f"--keyfile {key} is not the key of --certfile {cert}" in line


def test_bad_sizes_and_ports(with_demo: Install) -> None:
    line = one_error_line(run(with_demo, "echo", "--max-message-size", "0"), "trio-actors echo")
    assert "argument --max-message-size: size '0' is not a positive number" in line
    line = one_error_line(run(with_demo, "demo", "--port", "70000"), "trio-actors demo")
    assert "port '70000' is not a number from 0 to 65535" in line


def test_unreachable_redis() -> None:
    """With the redis extra (this environment's): a Redis that refuses is one line too."""
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{unused.getsockname()[1]}/0"
        result = subprocess.run(
            [sys.executable, "-m", "transport.apps", "chat", "--port", "0", "--redis", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    line = one_error_line(result, "trio-actors chat")
    assert f"redis at {url} cannot be reached" in line
