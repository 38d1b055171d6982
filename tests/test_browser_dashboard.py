"""The observer's dashboard in a real browser: headless Chromium, driven by Playwright.

The system runs in a thread of this process (``trio.run``); the browser loads the
dashboard over HTTP, the page opens its WebSocket, the tree appears; then a supervised
actor is made to fail (``tell_from_thread``) and its restart shows up on the page.
Same requirements as ``test_browser.py`` (the system's Chromium, Playwright).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import attrs
import pytest
import trio

import actors
import transport.observe
from tests.test_browser import WAIT_MS, browser_page, require_browser

TIMEOUT = 30  # seconds, for the system's thread to start and to stop


@attrs.frozen
class Fail:
    pass


@attrs.define(eq=False)
class Worker(actors.Actor[Fail]):
    @actors.handler
    def fail(self, message: Fail) -> None:
        raise RuntimeError("failed on purpose")


@attrs.frozen
class Running:
    url: str
    worker: actors.ActorRef[Fail]
    token: trio.lowlevel.TrioToken
    stop: trio.CancelScope


async def observed_system(ready: queue.Queue[Running | BaseException]) -> None:
    try:
        async with actors.open_system("browser-test") as system:
            async with transport.observe.open_observer(system, "127.0.0.1", 0) as observer:
                supervisor = await system.spawn(actors.Supervisor(), name="work")
                worker = await actors.start_child(supervisor, actors.ChildSpec("worker", Worker))
                with trio.CancelScope() as stop:
                    token = trio.lowlevel.current_trio_token()
                    ready.put(Running(observer.url, worker, token, stop))
                    await trio.sleep_forever()
    except BaseException as exc:
        ready.put(exc)
        raise


@pytest.fixture
def running() -> Iterator[Running]:
    require_browser()
    ready: queue.Queue[Running | BaseException] = queue.Queue()
    thread = threading.Thread(target=trio.run, args=(observed_system, ready), daemon=True)
    thread.start()
    started = ready.get(timeout=TIMEOUT)
    if isinstance(started, BaseException):
        raise AssertionError("the observed system did not start") from started
    try:
        yield started
    finally:
        trio.from_thread.run_sync(started.stop.cancel, trio_token=started.token)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_the_dashboard_shows_the_tree_and_a_restart_as_it_happens(running: Running) -> None:
    from playwright.sync_api import expect

    for page in browser_page():
        page.goto(running.url)
        expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
        expect(page.locator("#system")).to_have_text("browser-test", timeout=WAIT_MS)
        worker = page.locator('.actor[data-path="/work/worker"]')
        expect(worker).to_contain_text("Worker", timeout=WAIT_MS)
        expect(worker).to_contain_text("running")
        expect(worker.locator(".restarts")).to_have_count(0)
        # The page's own WebSocket is one of the connections it lists.
        expect(page.locator("#connections")).to_contain_text("/observer/connection-")

        running.worker.tell_from_thread(Fail())

        expect(worker.locator(".restarts")).to_have_text("restarts 1", timeout=WAIT_MS)
        expect(page.locator("#events")).to_contain_text("restarted", timeout=WAIT_MS)
        expect(page.locator("#events")).to_contain_text("/work/worker")
        expect(page.locator("#dead-letters")).to_contain_text("failed: Fail()")
        expect(page.locator("#restart-count")).to_have_text("1")
