"""Headless Chromium driven over the DevTools protocol, standard library only.

Chromium is started with `--remote-debugging-pipe`: it reads protocol commands from file
descriptor 3 and writes responses and events to 4, each message JSON ending with a NUL
byte, so no WebSocket client is needed. One page (a target attached in flat mode) per
`Browser`. Also a small PNG decoder, to look at screenshots without an imaging library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    message = (
        "chromium is missing: apt-get install chromium (Debian's package; .ci/run installs it)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class DevToolsError(AssertionError):
    pass


class Browser:
    """A headless Chromium with one page; `call` sends a command to that page."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 1400) -> None:
        self._profile = profile
        self._log = profile.with_name(profile.name + ".log")  # Chromium's stderr
        self._size = (width, height)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition(self._lock)
        self.events: list[dict[str, Any]] = []
        self._session = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Browser:
        commands_read, self._commands = os.pipe()
        self._replies_fd, replies_write = os.pipe()
        # Above 4, so that moving them to 3 and 4 in the child cannot clobber one another.
        for low in (commands_read, replies_write):
            high = fcntl.fcntl(low, fcntl.F_DUPFD, 10)
            os.close(low)
            if low == commands_read:
                commands_read = high
            else:
                replies_write = high
        width, height = self._size
        args = [
            chromium_binary(),
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--window-size={width},{height}",
            f"--user-data-dir={self._profile}",
            "about:blank",
        ]
        # The pipe ends go to descriptors 3 and 4 of the child, where Chromium looks.
        move = (
            "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); "
            "os.dup2(b, 4); os.execvp(sys.argv[3], sys.argv[3:])"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", move, str(commands_read), str(replies_write), *args],
            pass_fds=(commands_read, replies_write),
            stdout=subprocess.DEVNULL,
            stderr=self._log.open("wb"),
        )
        os.close(commands_read)
        os.close(replies_write)
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, browser=True
        )
        self._session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(DevToolsError, OSError):  # closing anyway
            self.call("Browser.close", browser=True, timeout=5)
        os.close(self._commands)
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                data = os.read(self._replies_fd, 1 << 16)
            except OSError:
                data = b""
            if not data:
                os.close(self._replies_fd)
                with self._arrived:
                    self._arrived.notify_all()
                return
            buffer += data
            *messages, buffer = buffer.split(b"\0")
            with self._arrived:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._arrived.notify_all()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        browser: bool = False,
        timeout: float = 30,
    ) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._arrived:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or (self._process is not None and self._process.poll() is not None):
                    log = self._log.read_text(errors="replace")[-3000:]
                    raise DevToolsError(f"no answer to {method} within {timeout} s:\n{log}")
                self._arrived.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise DevToolsError(f"{expression[:200]!r} threw: {description}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                page = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(
                    f"timed out waiting for {what or expression}; the page says:\n{page}"
                )
            time.sleep(0.1)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", what=f"{url} to load")

    def screenshot(self, scale: float = 1) -> bytes:
        """A PNG of the viewport, `scale` times its size."""
        width, height = self._size
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
        shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip})
        return base64.b64decode(shot["data"])

    def console_errors(self) -> list[str]:
        """Exceptions thrown in the page and console.error calls so far."""
        found = []
        for event in list(self.events):
            if event.get("method") == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details["text"])
            elif (
                event.get("method") == "Runtime.consoleAPICalled"
                and event["params"]["type"] == "error"
            ):
                found.append(" ".join(str(a.get("value", "")) for a in event["params"]["args"]))
        return found


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) bytes of each row of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), "only 8-bit, non-interlaced PNGs"
    assert colour in (2, 6), "only RGB and RGBA PNGs"
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up = previous[x]
            corner = previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def distinct_colours(data: bytes, sample_every: int = 2) -> int:
    """How many distinct colours a PNG has (every n-th row and column)."""
    width, _, rows = png_pixels(data)
    step = len(rows[0]) // width
    colours = set()
    for row in rows[::sample_every]:
        for x in range(0, width, sample_every):
            colours.add(row[x * step : x * step + 3])
    return len(colours)
