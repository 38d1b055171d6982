"""Real proxy servers for the proxy tests: tinyproxy (HTTP CONNECT) and danted (SOCKS5).

Each runs on a free loopback port with its own configuration file in a temporary
directory and is killed at teardown, like ``redis_support``'s redis-server. Without
the program the tests are skipped with the command that installs it, except under
``CI=true``, where they fail: there they must run (``scripts/system-deps`` installs
them when run as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, final

import attrs
import pytest

from tests.redis_support import START_TIMEOUT, free_port

#: The Debian package of each proxy program.
PACKAGES = {"tinyproxy": "tinyproxy", "danted": "dante-server"}

#: The system user the SOCKS5 user/password tests authenticate as (created when root).
SOCKS_USER = "trioactorsproxy"
SOCKS_PASSWORD = "pr0xy-pw:with@odd/chars"


def require_program(program: str) -> str:
    """The path of ``program``; skip the test without it (fail under ``CI=true``)."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        hint = f"{program} is not installed: sudo apt-get install {PACKAGES[program]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{hint} (CI=true: the proxy tests must run here)")
        pytest.skip(hint)
    return path


def is_root() -> bool:
    return os.geteuid() == 0


@final
@attrs.define(eq=False)
class ProxyServer:
    """One proxy process on 127.0.0.1:``port``, its output kept in ``lines``."""

    command: Sequence[str]
    port: int
    ready: str
    process: subprocess.Popen[str] | None = None
    lines: list[str] = attrs.field(factory=list)
    drain: threading.Thread | None = None
    # Notified at each new line of output (see wait_for).
    _new_line: threading.Condition = attrs.field(factory=threading.Condition, init=False)

    def start(self) -> None:
        process = subprocess.Popen(
            list(self.command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # danted forks children: stop them as a group
        )
        self.process = process
        assert process.stdout is not None
        watchdog = threading.Timer(START_TIMEOUT, process.kill)
        watchdog.start()
        try:
            for line in process.stdout:
                self.lines.append(line)
                if self.ready in line:
                    break
            else:
                self.stop()
                raise RuntimeError(f"{self.command[0]} did not start: {''.join(self.lines)}")
        finally:
            watchdog.cancel()
        self.drain = threading.Thread(target=self._keep, args=(process.stdout,), daemon=True)
        self.drain.start()
        _wait_listening(self.port)

    def _keep(self, stream: IO[str]) -> None:
        for line in stream:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()

    def wait_for(self, done: Callable[[str], bool], timeout: float) -> str:
        """Block (this thread, up to ``timeout`` s) until ``done(output)``; the output then."""
        with self._new_line:
            self._new_line.wait_for(lambda: done(self.output()), timeout)
            return self.output()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=START_TIMEOUT)
        if self.drain is not None:
            self.drain.join(timeout=START_TIMEOUT)
        assert process.stdout is not None
        process.stdout.close()

    def output(self) -> str:
        return "".join(self.lines)


def _wait_listening(port: int) -> None:
    """Wait (real time, bounded) until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def tinyproxy(
    directory: Path, *, basic_auth: tuple[str, str] | None = None, connect_ports: Sequence[int] = ()
) -> ProxyServer:
    """tinyproxy on a free port: CONNECT to any port unless ``connect_ports`` limits them."""
    port = free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "Allow 127.0.0.1",
        "LogLevel Info",
        "MaxClients 20",
    ]
    if is_root():  # tinyproxy drops privileges when started as root
        lines += ["User nobody", "Group nogroup"]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    lines += [f"ConnectPort {p}" for p in connect_ports]
    config = directory / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    executable = require_program("tinyproxy")
    return ProxyServer([executable, "-d", "-c", str(config)], port, "Starting main loop")


def danted(
    directory: Path, *, username_auth: bool = False, blocked_port: int | None = None
) -> ProxyServer:
    """danted (SOCKS5) on a free port, with or without user/password authentication."""
    port = free_port()
    method = "username" if username_auth else "none"
    lines = [
        "logoutput: stderr",
        f"internal: 127.0.0.1 port = {port}",
        "external: 127.0.0.1",
        "clientmethod: none",
        f"socksmethod: {method}",
    ]
    if is_root():
        lines += ["user.privileged: root", "user.unprivileged: nobody"]
    lines.append("client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }")
    if blocked_port is not None:
        lines.append(f"socks block {{ from: 0.0.0.0/0 to: 0.0.0.0/0 port = {blocked_port} }}")
    lines.append("socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }")
    config = directory / f"danted-{port}.conf"
    config.write_text("\n".join(lines) + "\n")
    executable = require_program("danted")
    pid_file = directory / f"danted-{port}.pid"
    return ProxyServer(
        [executable, "-f", str(config), "-N", "1", "-p", str(pid_file)], port, "running"
    )


def ensure_socks_user() -> None:
    """Create the system user the SOCKS5 auth tests log in as; skip unless root (fail in CI).

    danted checks user names and passwords against the system's users, so the
    test needs one; only root can make it.
    """
    if not is_root():
        hint = "the socks5 user/password test creates a system user, which needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{hint} (CI=true: the proxy tests must run here)")
        pytest.skip(hint)
    exists = subprocess.run(["id", SOCKS_USER], capture_output=True, check=False).returncode == 0
    if not exists:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SOCKS_USER],
            check=True,
            capture_output=True,
        )
    subprocess.run(["chpasswd"], input=f"{SOCKS_USER}:{SOCKS_PASSWORD}", text=True, check=True)
