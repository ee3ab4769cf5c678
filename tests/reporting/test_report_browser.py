"""The HTML report in a real browser: headless Chromium, driven over the DevTools protocol.

Chromium (Debian's ``chromium``; .ci/run installs it) talks the Chrome DevTools Protocol over a
pipe (``--remote-debugging-pipe``: commands in on fd 3, replies and events out on fd 4, each a
JSON message ending in a NUL byte), so no WebDriver and no port are needed. The tests open the
run report and the comparison report, built from tiny inputs (tests/helpers/report_inputs.py), and check
what only a browser shows: no console errors, every image decoded, no request leaving the file, a
page that fits 1,280 pixels, and at 1,400 pixels every table inside its own box (wide ones
scroll there, long values wrap), none past the window's edge; for the comparison also the leaderboard's rows, the selected run's
mark and the galleries' images. Without a browser it
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

from segpipe.reporting.comparison import RunResult, build_comparison
from segpipe.reporting.run_report import ReportInputs, build_report

from helpers.report_inputs import CLASSES, GALLERY_SIZE, make_run, report_inputs, three_runs

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
WIDE_WINDOW = 1400  # a desktop window, where every table must fit or scroll in its own box
# A path without a space to break at: longer than a line of the page.
LONG_PATH = "/scratch/" + "a_very_long_folder_name_without_spaces_" * 8 + "images"
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
# Classes beyond report_inputs' three, for a comparison leaderboard wider than the window.
MORE_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip


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


def check_in_browser(browser: DevTools, html: Path, screenshot: Path) -> str:
    """Open ``html`` in a new tab at WIDTH pixels and check what only a browser shows: every
    image decoded, nothing loaded but the file itself, no horizontal scrolling, no console
    errors; save a screenshot to ``screenshot``. Returns the tab's session, for more checks."""
    url = html.resolve().as_uri()
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
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return session


def check_tables_fit(browser: DevTools, session: str, width: int = WIDE_WINDOW) -> None:
    """At a ``width`` pixel window, the page does not scroll sideways and every table lies in
    its own box (its parent, which scrolls sideways: ``overflow-x`` auto or scroll) whose edges
    are inside the window, so that no column is cut off by the window's edge."""
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    page = browser.evaluate(session, "[document.documentElement.scrollWidth, window.innerWidth]")
    assert page[0] <= page[1] == width, f"the page is {page[0]} px wide at a {width} px window"
    tables = browser.evaluate(
        session,
        """Array.from(document.querySelectorAll("table"), t => {
            const box = t.parentElement, b = box.getBoundingClientRect(),
                  r = t.getBoundingClientRect();
            return {id: t.id, overflow: getComputedStyle(box).overflowX,
                    box: [b.left, b.right], table: [r.left, r.right],
                    scrolls: box.scrollWidth > box.clientWidth}; })""",
    )
    assert tables
    for table in tables:
        (box_left, box_right), (left, right) = table["box"], table["table"]
        assert table["overflow"] in ("auto", "scroll"), table
        assert 0 <= box_left <= left and box_right <= width, table
        assert right <= box_right + 0.5 or table["scrolls"], table


def test_report_in_headless_chromium(tmp_path, browser):
    """The run report, with values longer than a line (a dataset root, a quarantined file)."""
    inputs = report_inputs(tmp_path)
    inputs["config"] = {**inputs["config"], "dataset": {"source": "folder", "root": LONG_PATH}}
    quarantine = tmp_path / "quarantine.csv"
    quarantine.write_text(f"file,problem\n{LONG_PATH}/a.png,not an image file\n")
    report = tmp_path / "report" / "report.html"
    build_report(
        report,
        tmp_path / "report" / "figures",
        ReportInputs(**inputs, quarantine_csv=quarantine),
    )

    session = check_in_browser(browser, report, tmp_path / "report.png")
    check_tables_fit(browser, session)


def _add_classes(runs: list[RunResult], names: list[str]) -> None:
    """Test IoU and Dice of the classes ``names`` added to each run's per_class.csv."""
    for i, run in enumerate(runs):
        with Path(run.test_per_class).open("a") as table:
            for j, name in enumerate(names, start=len(CLASSES)):
                iou = 0.3 + 0.6 * ((i + j) % 7) / 7
                table.write(f"{j},{name},{iou:.4f},{iou + 0.05:.4f},100,{90 + i}\n")


def test_comparison_in_headless_chromium(tmp_path, browser):
    """The comparison of four runs, with a leaderboard of 22 class columns (wider than the
    window: it scrolls inside its own box, the page does not) and an override longer than a
    line."""
    runs = [
        *three_runs(tmp_path),
        make_run(
            tmp_path,
            "long",
            val=0.55,
            test=0.75,
            overrides={
                "data.root": "/scratch/segpipe/data/layouts/oxford_iiit_pet/images_and_trimaps",
                "infer.images": LONG_PATH,
                "train.schedule": {"name": "cosine", "warmup_epochs": 2, "min_lr": 1e-6},
            },
            changes={"img1": 7, "img4": 12, "img6": 2},
            parameters=24_000_000,
        ),
    ]
    _add_classes(runs, MORE_CLASSES)
    out = tmp_path / "compare"
    build_comparison(
        out / "report.html",
        out / "figures",
        out / "leaderboard.csv",
        runs,
        class_names=[*CLASSES, *MORE_CLASSES],
        gallery_size=GALLERY_SIZE,
        n_resamples=500,
    )

    session = check_in_browser(browser, out / "report.html", tmp_path / "compare.png")

    # One leaderboard row per run, ranked by validation mIoU; the selected run's row (only it)
    # is marked: its class, its badge, and a background that the other rows do not have.
    rows = browser.evaluate(
        session,
        """Array.from(document.querySelectorAll("#leaderboard tr"))
            .filter(tr => tr.querySelector("td"))
            .map(tr => [tr.cells[1].querySelector("a").textContent, tr.className,
                        tr.querySelector(".badge") !== null,
                        getComputedStyle(tr.cells[1]).backgroundColor])""",
    )
    assert [row[0] for row in rows] == ["wide", "deep", "base", "long"]
    assert [row[1:3] for row in rows] == [["selected", True]] + [["", False]] * 3
    assert rows[0][3] not in {row[3] for row in rows[1:]}, rows

    # The wide leaderboard scrolls in its own box, narrower than the window.
    board = browser.evaluate(
        session,
        """(() => { const t = document.getElementById("leaderboard");
            return [t.rows[0].cells.length, t.scrollWidth, t.parentElement.clientWidth]; })()""",
    )
    assert board[0] == 5 + len(CLASSES) + len(MORE_CLASSES) + 6, board
    assert board[1] > WIDTH >= board[2], board

    # Every gallery shows its images: GALLERY_SIZE for "deep" and "long", none for "base"
    # (it predicts like "wide"), each decoded to a non-zero natural width.
    galleries = browser.evaluate(
        session,
        """Array.from(document.querySelectorAll("h4.pair"), h => {
            const images = [];
            for (let e = h.nextElementSibling; e && e.tagName !== "H4"; e = e.nextElementSibling)
                images.push(...Array.from(e.querySelectorAll("img.gallery"), i => i.naturalWidth));
            return [h.textContent, images]; })""",
    )
    assert [(title, len(widths)) for title, widths in galleries] == [
        ("deep vs wide", GALLERY_SIZE),
        ("base vs wide", 0),
        ("long vs wide", GALLERY_SIZE),
    ]
    assert all(width > 0 for _, widths in galleries for width in widths), galleries

    check_tables_fit(browser, session)
