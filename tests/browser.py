"""A real headless Chromium, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4), so
tests need no driver package and no network port.

``render(path)`` loads a local page, waits for its load event and returns
the screenshot of the whole page (PNG bytes), the boxes of its
``img.plot`` elements in page pixels, and every URL the page requested.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Optional

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find() -> Optional[str]:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _above(fd: int, low: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return moved


class _Pipe:
    def __init__(self, binary: str, profile: str):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # moved to 10 and above first, so that placing them on 3 and 4 cannot clobber one with the other
        to_child, from_child = (_above(fd, 10) for fd in (to_child, from_child))

        def place():  # in the browser's process, before exec: the protocol reads fd 3 and writes fd 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--force-device-scale-factor=1",
             "--user-data-dir=" + profile, "about:blank"],
            pass_fds=(3, 4), preexec_fn=place, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next = 0
        self.events = []

    def _message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.time()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: Optional[str] = None, timeout: float = 30.0, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError("%s: %s" % (method, answer["error"]))
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.time() + timeout
        while True:
            event = self._message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


_BOXES = """JSON.stringify(Array.from(document.querySelectorAll('img.plot')).map(function (img) {
  var r = img.getBoundingClientRect();
  return {plot: img.dataset.plot, x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
          height: r.height, loaded: img.complete && img.naturalWidth > 0};
}))"""


def render(binary: str, page: str, width: int = 1200) -> dict:
    profile = tempfile.mkdtemp(prefix="lintorch-chromium-")
    browser = _Pipe(binary, profile)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call("Network.enable", session)
        browser.call("Page.enable", session)
        browser.call("Emulation.setDeviceMetricsOverride", session, width=width, height=900, deviceScaleFactor=1,
                     mobile=False)
        url = "file://" + os.path.abspath(page)
        browser.call("Page.navigate", session, url=url)
        browser.wait_event("Page.loadEventFired")
        boxes = json.loads(browser.call("Runtime.evaluate", session, expression=_BOXES,
                                        returnByValue=True)["result"]["value"])
        height = browser.call("Runtime.evaluate", session, expression="document.documentElement.scrollHeight",
                              returnByValue=True)["result"]["value"]
        shot = browser.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        requests = [e["params"]["request"]["url"] for e in browser.events
                    if e.get("method") == "Network.requestWillBeSent"]
        return {"png": base64.b64decode(shot["data"]), "boxes": boxes, "requests": requests, "url": url,
                "height": height}
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
