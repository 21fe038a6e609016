"""The inspector in a real browser: headless Chromium (Debian's chromium and chromium-driver)
opens the page, sees the diagram, and watches a session go CLOSED -> OPENING -> OPEN -> CLOSING
-> CLOSED as a client opens and closes it. Each step is held by a proxy until the page shows it.

``UPDATE_SCREENSHOT=1`` also writes docs/inspector.png, the screenshot the README shows.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from fsm_session import ParticipantInfo, SessionState, open_session_service
from fsm_session.inspector import open_inspector, render
from fsm_session.testing.proxy import LoopbackProxy

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "inspector.png"
NEEDS = {"chromium": "chromium", "chromedriver": "chromium-driver", "dot": "graphviz"}
WAIT = 20.0  # seconds a page may take to show a step; never reached when all is well


def _browser_or_skip() -> tuple[str, str]:
    missing = sorted(package for binary, package in NEEDS.items() if shutil.which(binary) is None)
    if missing:
        message = f"the browser test needs: apt-get install {' '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(shutil.which("chromium")), str(shutil.which("chromedriver"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


async def _until(driver: Any, what: str, condition: Callable[[Any], object]) -> None:
    """Wait, in a thread, for the page to meet ``condition`` (WebDriverWait polls the page)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def wait() -> None:
        try:
            WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition)
        except TimeoutException:
            pytest.fail(f"the page never showed {what}")

    await trio.to_thread.run_sync(wait)


_NODES = """
return Array.from(document.querySelectorAll('#diagram svg g.node title'), t => t.textContent);
"""
_HIGHLIGHTED = """
const node = document.querySelector('#diagram svg g.node.current title');
return [node ? node.textContent : null, document.getElementById('state').dataset.state];
"""


async def _shows_state(driver: Any, state: SessionState) -> None:
    await _until(
        driver,
        f"{state.name} highlighted",
        lambda d: d.execute_script(_HIGHLIGHTED) == [state.name, state.name],
    )


def _rows(driver: Any) -> list[list[str]]:
    script = """
    return Array.from(document.querySelectorAll('#sessions tbody tr'),
                      row => Array.from(row.cells, cell => cell.textContent));
    """
    rows: list[list[str]] = driver.execute_script(script)
    return rows


async def test_the_page_follows_a_session_through_open_and_close(
    browser: Any, nursery: trio.Nursery, server_url: str, mint: Callable[..., str]
) -> None:
    proxy = LoopbackProxy(server_url)
    url = await proxy.start(nursery)
    with trio.fail_after(120):
        async with open_inspector() as inspector:
            await trio.to_thread.run_sync(browser.get, inspector.url)
            states = [state.name for state in SessionState]
            await _until(
                browser,
                "the diagram's states",
                lambda d: set(states) <= set(d.execute_script(_NODES)),
            )
            await _until(browser, "an empty session list", lambda d: _rows(d) == [])
            token = mint("ada")
            async with open_session_service(
                url, access_token=token, inspector=inspector
            ) as session:
                await _shows_state(browser, SessionState.CLOSED)
                info = ParticipantInfo(name="Ada", external_id="ada")

                proxy.hold("server")  # the open's reply waits in the proxy: OPENING holds
                async with trio.open_nursery() as steps:
                    steps.start_soon(session.open, info)
                    await _shows_state(browser, SessionState.OPENING)
                    proxy.release("server")
                await _shows_state(browser, SessionState.OPEN)
                participant = session.participant
                assert participant is not None
                await _until(
                    browser,
                    "Ada in the session list",
                    lambda d: (
                        [row[:5] for row in _rows(d)]
                        == [["Ada", "ada", "named", "OPEN", "connected"]]
                    ),
                )
                moves = await trio.to_thread.run_sync(
                    browser.execute_script,
                    "return Array.from(document.querySelectorAll('#transitions li'),"
                    " item => item.textContent)",
                )
                assert moves == [
                    "OPENING -> OPEN on opened (R4)",
                    "CLOSED -> OPENING on open (R2 R3 R4)",
                ]
                if os.environ.get("UPDATE_SCREENSHOT") == "1":
                    await trio.to_thread.run_sync(browser.save_screenshot, str(SCREENSHOT))

                proxy.hold("server")  # the logout's reply waits: CLOSING holds
                async with trio.open_nursery() as steps:
                    steps.start_soon(session.close)
                    await _shows_state(browser, SessionState.CLOSING)
                    proxy.release("server")
                await _shows_state(browser, SessionState.CLOSED)
                await _until(
                    browser,
                    "the session CLOSED and not connected in the list",
                    lambda d: [row[3:5] for row in _rows(d)] == [["CLOSED", "not connected"]],
                )
            # The service ended: the page drops it from the list.
            await _until(browser, "the session gone from the list", lambda d: _rows(d) == [])
            page = await trio.to_thread.run_sync(lambda: browser.page_source)
            assert token not in page
    proxy.close()


async def test_with_a_token_the_page_loads_its_diagram_and_feed(browser: Any) -> None:
    token = secrets.token_urlsafe(24)
    with trio.fail_after(60):
        async with open_inspector(token=token) as inspector:
            await trio.to_thread.run_sync(browser.get, f"{inspector.url}?token={token}")
            states = {state.name for state in SessionState}
            await _until(browser, "the diagram", lambda d: states <= set(d.execute_script(_NODES)))
            await _until(
                browser,
                "the live feed",
                lambda d: (
                    d.execute_script("return document.getElementById('feed').dataset.feed")
                    == "live"
                ),
            )
            text = await trio.to_thread.run_sync(
                browser.execute_script, "return document.body.innerText"
            )
            assert token not in text
            # The page's own files and feed carried it in an HttpOnly cookie, out of the
            # script's reach.
            cookie = await trio.to_thread.run_sync(browser.execute_script, "return document.cookie")
            assert cookie == ""
            # Without the token (nor its cookie) the same page is refused.
            await trio.to_thread.run_sync(browser.delete_all_cookies)
            await trio.to_thread.run_sync(browser.get, inspector.url)
            source = await trio.to_thread.run_sync(lambda: browser.page_source)
            assert "an access token is required" in source


async def test_a_page_opened_late_fetches_the_session_s_transitions_and_shows_why_no_diagram(
    browser: Any,
    server_url: str,
    mint: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Snapshots carry no transitions: the page asks for the selected session's own. And
    # without Graphviz the page says how to install it instead of a diagram.
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` for the inspector to find
    render.session_svg.cache_clear()
    try:
        with trio.fail_after(60):
            async with (
                open_inspector() as inspector,
                open_session_service(
                    server_url, access_token=mint("ada"), inspector=inspector
                ) as session,
            ):
                await session.open(ParticipantInfo(name="Ada", external_id="ada"))
                await trio.to_thread.run_sync(browser.get, inspector.url)
                await _until(
                    browser,
                    "the transitions that happened before it opened",
                    lambda d: (
                        d.execute_script(
                            "return Array.from(document.querySelectorAll("
                            "'#transitions li'), item => item.textContent)"
                        )
                        == [
                            "OPENING -> OPEN on opened (R4)",
                            "CLOSED -> OPENING on open (R2 R3 R4)",
                        ]
                    ),
                )
                await _until(
                    browser,
                    "how to install Graphviz in place of the diagram",
                    lambda d: d.execute_script(
                        "return document.getElementById('diagram').textContent"
                    ).startswith("the diagram is not available: Graphviz's `dot`"),
                )
                text = await trio.to_thread.run_sync(
                    browser.execute_script,
                    "return document.getElementById('diagram').textContent",
                )
                assert "apt-get install graphviz" in text
                await session.close()
    finally:
        render.session_svg.cache_clear()
