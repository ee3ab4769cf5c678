"""The HTML report in a real browser: headless Chromium, driven over the DevTools protocol.

Chromium (Debian's ``chromium``; .ci/run installs it) talks the Chrome DevTools Protocol over a
pipe (``--remote-debugging-pipe``: commands in on fd 3, replies and events out on fd 4, each a
JSON message ending in a NUL byte), so no WebDriver and no port are needed. The test opens a
report built from tiny inputs and checks what only a browser shows: no console errors, every
image decoded, no request leaving the file, a page that fits 1,280 pixels. Without a browser it
skips, with the reason; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from report_inputs import report_inputs

from segpipe.report import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={WIDTH},900",
    "--remote-debugging-pipe",
]
TIMEOUT = 20.0  # seconds for any one reply or event


def find_browser() -> str:
    """The Chromium executable (``SEGPIPE_CHROMIUM`` or the first of BROWSERS on PATH); skips
    where there is none, fails in CI."""
    names = [os.environ["SEGPIPE_CHROMIUM"]] if os.environ.get("SEGPIPE_CHROMIUM") else BROWSERS
    found = next(filter(None, map(shutil.which, names)), None)
    if found:
        return found
    reason = f"no Chromium on PATH ({', '.join(names)}); apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(f"CI must have a browser: {reason}")
    pytest.skip(reason)


class DevTools:
    """A minimal Chrome DevTools Protocol client over Chromium's debugging pipe."""

    def __init__(self, executable: str, profile: Path, log: Path):
        to_browser, self._commands = map(_above_4, os.pipe())
        self._replies, from_browser = map(_above_4, os.pipe())
        self.log = log
        # The browser expects the pipe on fds 3 and 4; a Python trampoline puts them there (a
        # POSIX shell's redirections take single-digit fds only).
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                "os.execv(sys.argv[3], sys.argv[3:])",
                str(to_browser),
                str(from_browser),
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),  # a file: a pipe nobody reads would block the browser
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with open(self._replies, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._messages.put(json.loads(message))
        self._messages.put(None)  # the browser closed the pipe

    def _next(self, deadline: float) -> dict:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("no message from the browser in time") from None
        if message is None:
            raise RuntimeError(f"the browser exited: {self.log.read_text()[-2000:]}")
        return message

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._next(deadline))
        return next(e for e in self.events if e.get("method") == method)

    def evaluate(self, session: str, expression: str):
        result = self.send(
            "Runtime.evaluate",
            session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._commands)


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4 (close-on-exec, as Python's own fds are), so that
    moving one pipe end to fd 3 or 4 cannot overwrite the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


@pytest.fixture
def browser(tmp_path):
    executable = find_browser()
    devtools = DevTools(executable, tmp_path / "profile", tmp_path / "chromium.log")
    yield devtools
    devtools.close()


def test_report_in_headless_chromium(tmp_path, browser):
    report = tmp_path / "report" / "report.html"
    build_report(report, tmp_path / "report" / "figures", **report_inputs(tmp_path))
    url = report.resolve().as_uri()

    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        browser.send(f"{domain}.enable", session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=WIDTH,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.send("Page.navigate", session, url=url)
    browser.wait_for("Page.loadEventFired")

    # Every image decoded (a broken data: URI fails decode()) and has a size.
    images = browser.evaluate(
        session,
        """Promise.all(Array.from(document.images, img => img.decode().then(
            () => [img.src.slice(0, 30), img.naturalWidth, ""],
            err => [img.src.slice(0, 30), img.naturalWidth, String(err)])))""",
    )
    assert images, "the report shows images"
    broken = [img for img in images if img[1] <= 0 or img[2]]
    assert not broken, broken

    # Nothing but the file itself was loaded: data: URIs are not fetched, anything else is.
    loaded = browser.evaluate(
        session, "performance.getEntries().map(e => e.name).filter(n => n.includes(':'))"
    )
    requested = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    outside = [u for u in [*loaded, *requested] if not u.startswith("data:") and u != url]
    assert not outside, outside

    # Readable at 1,280 pixels: no horizontal scrolling of the page.
    width = browser.evaluate(session, "document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide at a {WIDTH} px window"

    # No console errors or uncaught exceptions (WebDriver's SEVERE log entries).
    errors = [
        e["params"]
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors

    height = browser.evaluate(session, "document.documentElement.scrollHeight")
    shot = browser.send(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": WIDTH, "height": min(height, 8000), "scale": 1},
    )
    png = tmp_path / "report.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
