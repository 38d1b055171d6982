"""The chat page in a real browser: headless Chromium, driven by Playwright.

The demo (chat server, page and bots) runs as users run it, in a subprocess; the browser
loads the page over HTTP, joins the room over a WebSocket (its ``Origin`` admitted by the
server's handshake policy), sends a command and sees the bot's answer appear.

Needs Debian's ``chromium`` (``scripts/system-deps`` installs it; else
``sudo apt-get install chromium``) and Playwright for Python (``pip install playwright``,
the ``browser`` extra): the PyPI wheel carries its driver, and the browser is the system's,
so nothing is downloaded. Without them the test skips, except in CI (``CI=true``), where it
fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 30  # seconds, for the demo to start; the page's own waits are in milliseconds
WAIT_MS = 15_000


def missing_requirement() -> str | None:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return "chromium is not installed: run scripts/system-deps or apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            "playwright is not installed: pip install -e '.[browser]' (or pip install playwright)"
        )
    return None


def require_browser() -> None:
    """Skip the test without Chromium or Playwright; fail it instead under ``CI=true``."""
    missing = missing_requirement()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, so the browser test must run, but {missing}")
        pytest.skip(missing)


@pytest.fixture
def page_url() -> Iterator[str]:
    """Start the demo and yield the page's URL from its output (or skip, see above)."""
    require_browser()
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "transport.apps", "demo", "--seed", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:  # the demo prints it within a second or so
            match = re.match(r"web page: +open (\S+) in a browser", line)
            if match:
                yield match.group(1)
                break
        else:
            raise AssertionError(f"the demo ended without a page url: {process.communicate()}")
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
            process.stdout.close()
            assert process.stderr is not None
            process.stderr.close()


def browser_page() -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_chat_page_joins_a_room_and_shows_a_bots_reply(page_url: str) -> None:
    from playwright.sync_api import expect

    for page in browser_page():
        page.goto(page_url)
        page.fill("#name", "carol")
        page.fill("#room", "lobby")
        page.click("#join")
        expect(page.locator("#status")).to_contain_text("as carol, in lobby", timeout=WAIT_MS)
        # The server answers the join with the member list; the greeter welcomes us.
        expect(page.locator("#log .members").first).to_contain_text("carol", timeout=WAIT_MS)
        expect(page.locator("#log")).to_contain_text("welcome, carol!", timeout=WAIT_MS)
        page.fill("#text", "/roll 6")
        page.click("#send")
        expect(page.locator("#log")).to_contain_text("carol: /roll 6", timeout=WAIT_MS)
        reply = page.locator("#log .message", has_text=re.compile(r"carol rolled [1-6] \(d6\)"))
        expect(reply).to_have_count(1, timeout=WAIT_MS)
        assert reply.locator(".name").inner_text() == "commands"
