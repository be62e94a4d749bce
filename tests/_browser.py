"""Headless Chromium driven over the DevTools protocol (tornado's websocket client, no extra
package): load a page, read its text including Bokeh's shadow DOM, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

__all__ = ["Chromium", "find_chromium"]

# Every visible text node, shadow roots included (Bokeh renders its widgets inside shadow DOM).
_DEEP_TEXT = """(() => {
  const out = [];
  const skip = new Set(["STYLE", "SCRIPT", "NOSCRIPT", "TEMPLATE"]);
  const walk = (n) => {
    if (n.nodeType === 3) out.push(n.textContent);
    if (n.nodeType === 1 && skip.has(n.tagName)) return;
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) walk(c);
  };
  walk(document.body);
  return out.join(" ");
})()"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """One headless browser process showing ``url``; close it with `close` (or ``with``)."""

    def __init__(self, url: str, width: int = 1400, height: int = 1100, timeout: float = 30.0):
        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("no chromium on PATH")
        self.profile = tempfile.mkdtemp(prefix="asip-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ids = itertools.count(1)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                           timeout=5))
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    self.ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium shows no page target")
            time.sleep(0.2)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, params: dict | None = None, timeout: float = 20.0) -> dict:
        async def go() -> dict:
            from tornado.websocket import websocket_connect

            conn = await asyncio.wait_for(websocket_connect(self.ws_url), timeout)
            try:
                msg_id = next(self._ids)
                await conn.write_message(json.dumps({"id": msg_id, "method": method,
                                                     "params": params or {}}))
                while True:
                    raw = await asyncio.wait_for(conn.read_message(), timeout)
                    if raw is None:
                        raise RuntimeError("DevTools connection closed")
                    reply = json.loads(raw)
                    if reply.get("id") == msg_id:
                        if "error" in reply:
                            raise RuntimeError(f"{method}: {reply['error']}")
                        return reply["result"]
            finally:
                conn.close()

        return asyncio.run(go())

    def text(self) -> str:
        """All text on the page, shadow DOM included."""
        result = self._call("Runtime.evaluate", {"expression": _DEEP_TEXT, "returnByValue": True})
        return result["result"].get("value") or ""

    def wait_for_text(self, predicate, timeout: float = 30.0, every: float = 0.5) -> str:
        """Poll the page's text until ``predicate(text)``; returns the text (or the last seen)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(every)
        return text

    def screenshot(self, path: str) -> None:
        data = self._call("Page.captureScreenshot", {"format": "png"})["data"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
