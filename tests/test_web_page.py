"""The web page at ``/`` in a real browser: headless Chromium driven by
selenium through the system's chromedriver (Debian: ``apt-get install -y
chromium chromium-driver``; .ci/run installs them).  A session made while the
page is open appears without a reload, and its commands, replies, pipelined
batch, finding and message render.  On Linux the test fails when the browser,
its driver or selenium is missing; elsewhere it skips and says which.

Selenium Manager never runs: the driver's path is given (it would download a
browser and a driver otherwise).  ``BADSMTP_SCREENSHOT=PATH`` also saves the
screenshot there, to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Client, serving

INSTALL = "apt-get install -y chromium chromium-driver; pip install -e '.[test]' (selenium)"
# Debian's chromium first; google-chrome is what GitHub's Ubuntu runners carry,
# with a chromedriver of the same version on PATH.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DEADLINE = 10.0  # seconds for anything the page must show; it polls every second


def _missing(what: str) -> None:
    """On Linux a missing browser is a broken setup (.ci/run installs it)."""
    message = f"{what} is not installed ({INSTALL})"
    if sys.platform == "linux":
        pytest.fail(message)
    pytest.skip(message)


def _version(program: str) -> tuple[str, str]:
    """The major version a Chromium or chromedriver binary reports ("" if
    none), and what it said on stderr."""
    done = subprocess.run(
        [program, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    found = re.search(r"(\d+)\.\d+\.\d+", done.stdout)
    return (found.group(1) if found else ""), " ".join(done.stderr.split())


def _major(program: str) -> str:
    return _version(program)[0]


def _chromium() -> tuple[str, str]:
    """chromedriver's path and that of a browser of the same major version."""
    driver = shutil.which("chromedriver")
    if driver is None:
        _missing("chromedriver")
    assert driver is not None
    wanted, said = _version(driver)
    if not wanted:  # Ubuntu's apt packages are wrappers of the chromium snap
        _missing(f"a working chromedriver ({driver} --version: {said or 'no version'})")
    for name in BROWSERS:
        browser = shutil.which(name)
        if browser is not None and _major(browser) == wanted:
            return driver, browser
    _missing(f"a Chromium {wanted} for {driver}")
    raise AssertionError("unreachable")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium on a throwaway profile.  --no-sandbox: Chromium's
    sandbox refuses to run as root, as containers and CI often do;
    --disable-dev-shm-usage: Docker's /dev/shm is 64 MiB by default."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium")
    driver_path, browser_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1300",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, what: str, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, DEADLINE, poll_frequency=0.05).until(condition, what)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


SUBJECT = "Hello <b>Bob</b> & co"


def _session_with_a_finding_and_a_message(port: int) -> None:
    """EHLO; MAIL ended by a bare LF (a finding, RFC 5321 §2.3.8); RCPT and
    DATA in one send (a pipelined batch: PIPELINING is advertised); a message;
    QUIT."""
    with Client(port) as client:
        assert client.reply().startswith(b"220 ")
        assert client.command(b"EHLO client.example").startswith(b"250-")
        client.send(b"MAIL FROM:<alice@example.com>\n")
        assert client.reply().startswith(b"250 ")
        client.send(b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
        assert [reply[:4] for reply in client.replies(2)] == [b"250 ", b"354 "]
        client.send(f"Subject: {SUBJECT}\r\n\r\nHi Bob.\r\n.\r\n".encode())
        assert client.reply().startswith(b"250 ")
        assert client.command(b"QUIT").startswith(b"221 ")
        client.read_to_eof()


def _texts(driver: Any, selector: str) -> list[str]:
    return [element.text for element in _css(driver, selector)]


def test_a_session_appears_without_a_reload_and_its_transcript_renders(
    browser: Any, tmp_path: Path
) -> None:
    with serving(ports=[0], http_port=0) as server:
        base = f"http://127.0.0.1:{server.http_port}/"
        browser.get(base)
        _wait(browser, "the first poll", lambda d: _css(d, '#status[data-state="live"]'))
        assert _css(browser, "#session-list [data-session-id]") == []
        browser.execute_script("window.notReloaded = true")

        _session_with_a_finding_and_a_message(server.ports[0])
        server.wait_for_sessions(1)
        (transcript,) = server.sessions
        row = f'#session-list [data-session-id="{transcript.id}"][data-open="false"]'
        _wait(browser, "the session in the list", lambda d: _css(d, row))
        assert browser.execute_script("return window.notReloaded") is True
        (listed,) = _css(browser, row)
        assert _texts(browser, row + " .session-client")[0].startswith("127.0.0.1:")
        assert _texts(browser, row + " .session-listener") == [f"port {server.ports[0]}"]
        assert _texts(browser, row + " .session-role") == ["main"]
        assert listed.get_attribute("data-tls") == "none"
        assert _css(browser, row + ' .findings-badge[data-count="1"]')

        _css(browser, row + " a")[0].click()
        detail = f'#detail [data-session-id="{transcript.id}"]'
        _wait(browser, "the transcript", lambda d: _css(d, detail + " .message-summary"))
        _assert_transcript(browser)
        _assert_finding_and_message(browser, base)
        _screenshot(browser, tmp_path)
        _assert_self_contained(browser, base)


def _assert_self_contained(driver: Any, base: str) -> None:
    """Nothing loaded from elsewhere (no CDN, no font), and no script error."""
    script = "return performance.getEntriesByType('resource').map(entry => entry.name)"
    loaded = driver.execute_script(script)
    assert loaded and all(url.startswith(base) for url in loaded), loaded
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def _assert_transcript(driver: Any) -> None:
    assert _texts(driver, '#events [data-type="command"] .line') == [
        "EHLO client.example",
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<bob@example.com>",
        "DATA",
        "QUIT",
    ]
    codes = [e.get_attribute("data-code") for e in _css(driver, '#events [data-type="reply"]')]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"]
    assert _css(driver, '#events [data-type="content"]')
    # Each event shows when it happened, in seconds since the connection was accepted.
    assert all(re.fullmatch(r"\+\d+\.\d{3} s", at) for at in _texts(driver, "#events .event > .at"))
    (pipelined,) = _css(driver, "#events .batch.pipelined")
    assert pipelined.find_element("css selector", ".pipelined-label").text.startswith(
        "pipelined: RCPT, DATA"
    )
    verbs = pipelined.find_elements("css selector", '[data-type="command"] .line')
    assert [verb.text for verb in verbs] == ["RCPT TO:<bob@example.com>", "DATA"]


def _assert_finding_and_message(driver: Any, base: str) -> None:
    _assert_finding(driver)
    (message,) = _css(driver, "#messages .message[data-message-id]")
    # Shown as text, never parsed as HTML: the client chose it.
    assert message.find_element("css selector", ".message-subject").text == f"“{SUBJECT}”"
    assert _css(driver, "#detail b") == []
    raw = message.find_element("css selector", "a.raw").get_attribute("href")
    assert raw == f"{base}api/v1/message/{message.get_attribute('data-message-id')}/raw"
    with urllib.request.urlopen(raw, timeout=5) as response:
        assert response.read() == f"Subject: {SUBJECT}\r\n\r\nHi Bob.\r\n".encode()


def _assert_finding(driver: Any) -> None:
    """The finding in the session's list, and inline where it happened: with MAIL."""
    (listed,) = _css(driver, '#findings .finding[data-code="bare-lf"]')
    assert listed.get_attribute("data-severity") == "error"
    assert "RFC 5321 §2.3.8" in listed.text
    (inline,) = _css(driver, '#events [data-type="finding"] .finding[data-code="bare-lf"]')
    batch = inline.find_element("xpath", "ancestor::div[contains(@class, 'batch')]")
    lines = batch.find_elements("css selector", '[data-type="command"] .line')
    assert [line.text for line in lines] == ["MAIL FROM:<alice@example.com>"]


def _screenshot(driver: Any, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 10_000
    if os.environ.get("BADSMTP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["BADSMTP_SCREENSHOT"])
