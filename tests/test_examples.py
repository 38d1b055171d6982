"""The examples run as users run them (``python -m ...``) and print what the docs say they print."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parent.parent
# Generous: each run takes well under this; the bound only turns a hang into a failure.
TIMEOUT = 60


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
    return body.decode()


def test_demo_bounded_run_shows_the_room_the_bots_the_feed_and_the_threads() -> None:
    result = run_module("transport.apps", "demo", "--seconds", "4", "--seed", "1")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Where everything listens, on loopback, at ports picked free.
    assert re.search(r"^chat server: listening on ws://127\.0\.0\.1:\d+/$", out, re.MULTILINE)
    assert re.search(
        r"^web page: +open http://127\.0\.0\.1:\d+/\?ws=ws://127\.0\.0\.1:\d+/ in a browser$",
        out,
        re.MULTILINE,
    )
    assert re.search(r"^ticker feed: listening on wss://127\.0\.0\.1:\d+/ ", out, re.MULTILINE)
    assert re.search(
        r"^dashboard: +open http://127\.0\.0\.1:\d+/ in a browser \(metrics at ", out, re.MULTILINE
    )
    assert "running for 4s" in out
    line = r"^\[ *[\d.]+s\] "
    # Everyone joined, over their own WebSocket connection; the greeter and the commands bot.
    for name in ["greeter", "commands", "ticker", "sensors", "alice"]:
        assert re.search(rf"{line}-- {name} joined lobby$", out, re.MULTILINE), name
    assert re.search(rf"{line}greeter: welcome, alice!$", out, re.MULTILINE)
    assert re.search(rf"{line}alice: hi everyone$", out, re.MULTILINE)
    assert re.search(rf"{line}commands: alice rolled [1-6] \(d6\)$", out, re.MULTILINE)
    assert re.search(rf"{line}commands: alice: in lobby: greeter, commands, ", out, re.MULTILINE)
    # The TLS feed's digest, and the reconnect after the feed dropped the connection.
    assert re.search(rf"{line}ticker: ACME \d+\.\d\d \([+-]\d+\.\d\d%\) · ", out, re.MULTILINE)
    assert "(feed reconnected after: closed with 1012 (feed restarting))" in out
    # The two plain OS threads, through tell_from_thread.
    assert re.search(rf"{line}sensors: thermometer: \d+\.\d C$", out, re.MULTILINE)
    assert re.search(rf"{line}sensors: door front open$", out, re.MULTILINE)
    # The orderly end, and the summary.
    assert "-- stopping: the threads first, then the people, then the servers" in out
    assert re.search(rf"{line}-- alice left lobby \(disconnected\)$", out, re.MULTILINE)
    assert re.search(r"^chat connections: 5 accepted, 0 still open$", out, re.MULTILINE)
    assert re.search(r"^feed connections: [2-9] accepted", out, re.MULTILINE)
    assert re.search(r"^room lobby: \d+ events published, 0 dropped, ", out, re.MULTILINE)
    assert re.search(r"^dead letters: \d+ ", out, re.MULTILINE)
    assert "log ERROR" not in out


def test_demo_seed_makes_the_dice_repeatable() -> None:
    def rolls(seed: str) -> list[str]:
        result = run_module("transport.apps", "demo", "--seconds", "2", "--seed", seed)
        assert result.returncode == 0, result.stderr
        return re.findall(r"rolled (\d+ \(d\d+\))", result.stdout)

    first = rolls("5")
    assert first
    second = rolls("5")
    common = min(len(first), len(second))
    assert first[:common] == second[:common]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX-only")
async def test_demo_ends_cleanly_at_ctrl_c() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-W", "error", "-m", "transport.apps", "demo", "--seed", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    output = b""
    with trio.fail_after(TIMEOUT):
        try:
            while b"alice: hi everyone" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, output.decode()
                output += chunk
            # The running demo's own dashboard serves its metrics.
            found = re.search(rb"^dashboard: +open (\S+) in a browser", output, re.MULTILINE)
            assert found is not None, output.decode()
            metrics = await trio.to_thread.run_sync(fetch, found[1].decode() + "metrics")
            open_server = re.search(
                r'^trio_actors_connections_open\{side="server"\} (\S+)$', metrics, re.MULTILINE
            )
            assert open_server is not None, metrics
            assert float(open_server[1]) >= 5  # the five people in the chat, and the feed's
            assert re.search(r'^trio_actors_actors\{state="running"\} [1-9]', metrics, re.MULTILINE)
            process.send_signal(signal.SIGINT)
            while chunk := await process.stdout.receive_some():
                output += chunk
            errors = await process.stderr.receive_some()
            assert await process.wait() == 0, errors.decode()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
    text = output.decode()
    assert "running until Ctrl-C" in text
    assert "-- stopping: the threads first, then the people, then the servers" in text
    assert re.search(r"^dead letters: \d+ ", text, re.MULTILINE)


def test_local_chat_shows_the_conversation_the_crash_and_the_statistics() -> None:
    result = run_module("examples.local_chat", "--seconds", "2", "--seed", "1")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "running for 2s" in out
    # The bots spoke: a tell-driven reply, an ask answered through pipe_to_self, the thread.
    assert "greeter: welcome, alice!" in out
    assert "parrot: hi everyone!" in out
    assert re.search(r"^\[ *[\d.]+s\] dice: alice rolled \d+ on a d6$", out, re.MULTILINE)
    assert re.search(r"^\[ *[\d.]+s\] sensor: -?\d+\.\d C$", out, re.MULTILINE)
    # The crash, with its reason, the dead letter, the runtime's log line, and the room noticing.
    crash = "RuntimeError('the parrot choked on a cracker')"
    assert f"-- /parrot stopped (failed: {crash})" in out
    assert (
        "-- dead letter to /parrot (failed): "
        "Heard(author='alice', text='polly want a cracker?')" in out
    )
    assert "-- log ERROR actors [/parrot]: actor /parrot failed" in out
    assert f"room: parrot left (failed: {crash})" in out
    # The orderly end and the final statistics.
    for name in ["alice", "greeter", "room", "dice"]:
        assert f"-- /{name} stopped (normal)" in out
    assert re.search(r"^actor +processed +high water +capacity +dead letters", out, re.MULTILINE)
    assert re.search(
        rf"^/parrot +\d+ +\d+ +16 +[1-9]\d*  failed: {re.escape(crash)}$", out, re.MULTILINE
    )
    assert re.search(r"^dead letters: \d+ \(.*\bfailed: 1\b.*\)$", out, re.MULTILINE)


def test_acked_delivery_gets_every_reading_once_across_two_drops() -> None:
    result = run_module("examples.acked_delivery")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = out.splitlines()
    assert re.fullmatch(r"server: listening on ws://127\.0\.0\.1:\d+/", lines[0])
    assert lines[1:5] == [
        "server: dropping the connection after reading 30",
        "server: dropping the connection after reading 60",
        "client: sent 100 readings over 3 connections; 100 confirmed, 0 unconfirmed",
        "server: got 100 readings, each once and in order: True",
    ]
    assert re.fullmatch(
        r"\(sent again after a drop: \d+; already read, so dropped: \d+\)", lines[5]
    )


def test_local_chat_seed_makes_the_dice_repeatable() -> None:
    def rolls(seed: str) -> list[str]:
        result = run_module("examples.local_chat", "--seconds", "1", "--seed", seed)
        assert result.returncode == 0, result.stderr
        return re.findall(r"rolled (\d+ on a d\d+)", result.stdout)

    first = rolls("5")
    assert first
    second = rolls("5")
    common = min(len(first), len(second))
    assert first[:common] == second[:common]


TUTORIAL = [
    (
        "step1_first_actor",
        [
            "hello, trio! (1 so far)",
            "hello, akka! (3 so far)",
            "/greeter stops: Normal()",
            "stopped with Normal(); processed 3 messages",
        ],
    ),
    ("step2_first_ask", ["/counter: total = 5"]),
    (
        "step3_threads",
        [
            "meter thread: sent 10 readings; the counter says 55",
            "meter thread: refused: ActorRef.tell_nowait() was called from a thread other",
            "trio thread: total = 55",
            "trio thread: refused: ActorRef.tell_from_thread() of /counter was called",
            "checksum of 'actors' = 652",
        ],
    ),
    (
        "step4_failures",
        [
            "1. actor /account did not answer Audit within 0.05s",
            "2. the ask raised ValueError('cannot withdraw 25 from a balance of 10')",
            "/account stopped: Failed(error=ValueError('cannot withdraw 25 from a balance of 10'))",
            "3. actor /account has stopped (failed with ValueError(",
            "4. dead letter to /account (late reply): 'audit passed'",
            "4. dead letter to /account (failed): Withdraw(amount=25)",
            "by reason: late reply: 1, failed: 1",
        ],
    ),
    (
        "step5_supervision",
        [
            "/counters/counter starts with total 0\n/counters/counter starts with total 0\n",
            "/counters/counter: total = 3",
            "same ref after the restart: True",
            "restarts: 1",
            "dead letter (failed): Explode()",
        ],
    ),
    (
        "step6_first_server",
        [
            "server: /echo/connection-1 echoes 'hello'\nclient: /client received 'hello'\n"
            "server: /echo/connection-1 echoes 'world'\nclient: /client received 'world'\n",
            "/client closed: code 1000, reason 'done', by peer False",
            "/echo/connection-1 closed: code 1000, reason 'done', by peer True",
            "1000 is NORMAL_CLOSURE: failure False, retry False",
            "server: 1 accepted, 0 open",
        ],
    ),
    (
        "step7_supervised_bot",
        [
            "bot: connected (connect #1)\nbot: received 'welcome, connection 1'\n",
            "server: restarting; closing connection 1 with 1012\n"
            "bot: disconnected: code 1012, reason 'restarting', by peer True; reconnecting True\n"
            "bot: connected (connect #2)\nbot: received 'welcome, connection 2'\n",
            "server: connection 2 answers 'ping'\nbot: received 'pong'\n",
            "bot: done after 2 connects",
            "bot stopped: Normal()",
            "server: served 2 connections",
        ],
    ),
]


@pytest.mark.parametrize(("step", "expected"), TUTORIAL, ids=[step for step, _ in TUTORIAL])
def test_tutorial_step_prints_what_the_tutorial_says(step: str, expected: list[str]) -> None:
    result = run_module(f"examples.tutorial.{step}")
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout


def test_every_tutorial_step_is_tested() -> None:
    on_disk = {path.stem for path in (ROOT / "examples" / "tutorial").glob("step*.py")}
    assert on_disk == {step for step, _ in TUTORIAL}


def test_readme_example_is_tutorial_step_2_verbatim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## 30-second example", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "the README's 30-second example has no python code block"
    step2 = (ROOT / "examples" / "tutorial" / "step2_first_ask.py").read_text(encoding="utf-8")
    assert match.group(1) == step2
