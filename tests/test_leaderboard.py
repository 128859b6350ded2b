"""The leaderboard site: numbers, win rate, and sorting in a real (headless) browser."""

from __future__ import annotations

import functools
import html.parser
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codekiln.errors import UserError
from codekiln.evaluate.leaderboard import build_leaderboard

SCORES = {
    "alpha": {"humaneval": 0.30, "humaneval-infill": 0.50, "multiple-js": 0.10},
    "beta": {"humaneval": 0.20, "humaneval-infill": 0.60},
    "gamma": {"humaneval": 0.20, "multiple-js": 0.40},
}


def write_results(root: Path) -> Path:
    for model, tasks in SCORES.items():
        for task, score in tasks.items():
            folder = root / model / task
            folder.mkdir(parents=True)
            result = {
                "task": task,
                "model": {"name": model, "parameters": 5_000_000, "tokens_trained": 1_230_000},
                "metrics": {"pass@1": score},
                "generation": {"temperature": 0.2},
            }
            (folder / "results.json").write_text(json.dumps(result))
    return root


def test_leaderboard_numbers_and_win_rate(tmp_path):
    site = tmp_path / "site"
    index = build_leaderboard([write_results(tmp_path / "results")], site)
    board = json.loads((site / "leaderboard.json").read_text())
    assert board["tasks"] == ["humaneval", "humaneval-infill", "multiple-js"]
    models = {m["name"]: m for m in board["models"]}
    assert models["alpha"]["average"] == pytest.approx(0.3)
    assert models["gamma"]["average"] == pytest.approx(0.3)
    # humaneval: alpha beats both (1), beta ties gamma (0.5 each); infill: beta beats alpha;
    # js: gamma beats alpha.
    assert models["alpha"]["win_rate"] == pytest.approx((1 + 0 + 0) / 3)
    assert models["beta"]["win_rate"] == pytest.approx((0.25 + 1) / 2)
    assert models["gamma"]["win_rate"] == pytest.approx((0.25 + 1) / 2)
    link = models["beta"]["results"]["humaneval-infill"]
    assert json.loads((site / link).read_text())["generation"] == {"temperature": 0.2}
    page = index.read_text()
    assert "50.0%" in page and "5.0M" in page and "<svg" in page
    with pytest.raises(UserError, match="does not exist"):
        build_leaderboard([tmp_path / "missing"], site)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a codekiln results.json"):
        build_leaderboard([tmp_path / "bad.json"], site)


class Table(html.parser.HTMLParser):
    """The board's rows as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell, self._in_body = [], None, False

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served_board(tmp_path):
    """The leaderboard of SCORES, served over HTTP from localhost: its index.html URL."""
    site = tmp_path / "site"
    build_leaderboard([write_results(tmp_path / "results")], site)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/index.html"
    server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_page_renders_and_sorts_in_headless_chromium(served_board, tmp_path):
    url = served_board
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}"]

    def rows(fragment: str) -> list[list[str]]:
        dom = subprocess.run(
            [*flags, "--dump-dom", url + fragment],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        table = Table()
        table.feed(dom)
        return table.rows

    # As served: ranked by average (alpha and gamma tie at 30%: by name), the numbers shown.
    shown = rows("")
    assert [r[0] for r in shown] == ["beta", "alpha", "gamma"]
    assert shown[1][1:] == ["5.0M", "1.2M", "30.0%", "0.33", "30.0%", "50.0%", "10.0%"]
    assert shown[0][-1] == "-"  # beta has no js result
    # Sorted by the browser: infill (column 6) descending, then js (7) ascending.
    assert [r[0] for r in rows("#sort=6&dir=desc")] == ["beta", "alpha", "gamma"]
    assert [r[0] for r in rows("#sort=7&dir=asc")] == ["beta", "alpha", "gamma"]
    assert [r[0] for r in rows("#sort=0&dir=desc")] == ["gamma", "beta", "alpha"]
    shot = tmp_path / "leaderboard.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1000,600", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (its fds 3 and 4, as
    `--remote-debugging-pipe` wants them): no websocket library needed."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        os.dup2(to_child, 200)
        os.dup2(from_child, 201)
        os.close(to_child)
        os.close(from_child)

        def wire() -> None:
            os.dup2(200, 3)
            os.dup2(201, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
            + [f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4, 200, 201),
            preexec_fn=wire,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(200)
        os.close(201)
        self._id, self._buffer, self.session = 0, b"", None

    def send(self, method: str, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        # The new target starts on about:blank: wait for *this* page to finish loading.
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        for _ in range(200):
            if self.evaluate(loaded):
                return
            time.sleep(0.05)
        raise AssertionError(f"{url} did not load")

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_clicking_a_header_sorts_the_table(served_board, tmp_path):
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    order = "Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.dataset.model)"
    try:
        browser.open(served_board)
        assert browser.evaluate(order) == ["beta", "alpha", "gamma"]
        infill = "#board th[data-col='6']"
        browser.click(infill)  # first click: highest first
        assert browser.evaluate(order) == ["beta", "alpha", "gamma"]
        assert browser.evaluate("location.hash") == "#sort=6&dir=desc"
        browser.click(infill)  # again: lowest first (gamma has no infill result)
        assert browser.evaluate(order) == ["gamma", "alpha", "beta"]
        browser.click("#board th[data-col='7']")  # js: alpha 10%, gamma 40%
        assert browser.evaluate(order) == ["gamma", "alpha", "beta"]
        browser.click("#board th[data-col='0']")
        browser.click("#board th[data-col='0']")  # by name, ascending
        assert browser.evaluate(order) == ["alpha", "beta", "gamma"]
    finally:
        browser.close()
