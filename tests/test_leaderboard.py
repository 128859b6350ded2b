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
from typer.testing import CliRunner

from codekiln.cli import app
from codekiln.errors import UserError
from codekiln.evaluate.harness import model_info
from codekiln.evaluate.leaderboard import build_leaderboard, display_name
from codekiln.evaluate.published import PUBLISHED

SCORES = {
    "alpha": {"humaneval": 0.30, "humaneval-infill-single": 0.50, "multiple-js": 0.10},
    "beta": {"humaneval": 0.20, "humaneval-infill-single": 0.60},
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
    assert board["tasks"] == ["humaneval", "humaneval-infill-single", "multiple-js"]
    models = {m["name"]: m for m in board["models"]}
    assert models["alpha"]["average"] == pytest.approx(0.3)
    assert models["gamma"]["average"] == pytest.approx(0.3)
    # humaneval: alpha beats both (1), beta ties gamma (0.5 each); infill: beta beats alpha;
    # js: gamma beats alpha.
    assert models["alpha"]["win_rate"] == pytest.approx((1 + 0 + 0) / 3)
    assert models["beta"]["win_rate"] == pytest.approx((0.25 + 1) / 2)
    assert models["gamma"]["win_rate"] == pytest.approx((0.25 + 1) / 2)
    link = models["beta"]["results"]["humaneval-infill-single"]
    assert json.loads((site / link).read_text())["generation"] == {"temperature": 0.2}
    page = index.read_text()
    assert "50.0%" in page and "5.0M" in page and "<svg" in page
    with pytest.raises(UserError, match="does not exist"):
        build_leaderboard([tmp_path / "missing"], site)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a codekiln results.json"):
        build_leaderboard([tmp_path / "bad.json"], site)


def write_result(folder: Path, task: str, score: float, model: dict | None = None) -> Path:
    """A results.json for `task` in `folder` (created), with `model` as its model facts."""
    folder.mkdir(parents=True, exist_ok=True)
    result = {"task": task, "metrics": {"pass@1": score}}
    if model is not None:
        result["model"] = model
    (folder / "results.json").write_text(json.dumps(result))
    return folder / "results.json"


def test_published_rows_appear_only_with_the_flag(tmp_path):
    write_result(tmp_path / "r/mine/humaneval", "humaneval", 0.34, {"name": "mine"})
    write_result(tmp_path / "r/mine/multiple-lua", "multiple-lua", 0.05, {"name": "mine"})
    plain = build_leaderboard([tmp_path / "r"], tmp_path / "plain")
    board = json.loads((tmp_path / "plain/leaderboard.json").read_text())
    assert [m["name"] for m in board["models"]] == ["mine"]
    assert board["ranked_by"] == "average"
    page = plain.read_text()
    assert 'class="published"' not in page and "Published rows" not in page

    index = build_leaderboard([tmp_path / "r"], tmp_path / "site", with_published=True)
    board = json.loads((tmp_path / "site/leaderboard.json").read_text())
    # Only the user's tasks are columns; published numbers on other tasks stay out.
    assert board["tasks"] == ["humaneval", "multiple-lua"]
    models = {m["name"]: m for m in board["models"]}
    expected = {
        "StarCoder",
        "StarCoderBase",
        "SantaCoder",
        "tiny_starcoder_py",
        "StarCoder2-3B",
        "StarCoder2-7B",
        "StarCoder2-15B",
        "Code Llama 7B",
    }
    assert set(models) == expected | {"mine"}
    assert not models["mine"]["published"] and "sources" not in models["mine"]
    assert models["StarCoder"]["scores"] == {"humaneval": 0.336, "multiple-lua": 0.2389}
    assert models["tiny_starcoder_py"]["scores"] == {"humaneval": 0.0784}
    assert models["StarCoder2-3B"]["parameters"] == 3e9
    for model in expected:
        assert models[model]["published"]
        for task in models[model]["scores"]:
            source = models[model]["sources"][task]
            assert source["url"].startswith("https://") and source["source"]
            assert source["metric"].startswith("pass@1") and source["sampling"]

    # Each published cell names its source: a reference into the list under the table,
    # which gives the citation, the metric and the sampling.
    page = index.read_text()
    table = Table()
    table.feed(page)
    rows = {row[0].split(" published")[0]: row for row in table.rows}
    assert rows["mine"][0] == "mine" and rows["StarCoder"][0] == "StarCoder published"
    assert rows["StarCoder"][-2].startswith("33.6%[")
    assert rows["tiny_starcoder_py"][-2].startswith("7.84%[")  # the digits the card printed
    reference = rows["tiny_starcoder_py"][-2].split("[")[1].rstrip("]")
    assert (
        f'<li id="src-{reference}"><a href="https://huggingface.co/bigcode/tiny_starcoder_py"'
        in (page)
    )
    assert page.count('<tr data-model="StarCoder2-15B" class="published">') == 1
    assert '<tr data-model="mine">' in page
    for item in PUBLISHED:
        if item.task in board["tasks"]:
            assert item.source.url in page and item.sampling in page


def test_the_users_model_is_ranked_among_published_rows_by_the_first_task(tmp_path):
    # mine: 34% on HumanEval sits between StarCoder (33.6%) and StarCoder2-7B (35.4%), even
    # though its average over two tasks is lower than theirs would be.
    write_result(tmp_path / "r/mine/humaneval", "humaneval", 0.34, {"name": "mine"})
    write_result(tmp_path / "r/mine/multiple-lua", "multiple-lua", 0.01, {"name": "mine"})
    index = build_leaderboard([tmp_path / "r"], tmp_path / "site", with_published=True)
    board = json.loads((tmp_path / "site/leaderboard.json").read_text())
    assert board["ranked_by"] == "humaneval"
    order = [m["name"] for m in board["models"]]
    assert order[:4] == ["StarCoder2-15B", "StarCoder2-7B", "mine", "StarCoder"]
    assert order[-1] == "tiny_starcoder_py"
    humaneval = [m["scores"]["humaneval"] for m in board["models"]]
    assert humaneval == sorted(humaneval, reverse=True)
    table = Table()
    table.feed(index.read_text())
    assert [row[0].split(" published")[0] for row in table.rows] == order
    assert "ranked by pass@1 on humaneval" in index.read_text()


def test_columns_follow_humaneval_then_infilling_then_multiple(tmp_path):
    tasks = ["multiple-sh", "humaneval-infill-quick", "multiple-cpp", "humaneval-infill-multi"]
    tasks += ["humaneval-plus", "humaneval-infill-random-light", "humaneval"]
    tasks += ["humaneval-infill-random", "humaneval-infill-single"]
    for task in tasks:
        write_result(tmp_path / "r" / task, task, 0.1, {"name": "m"})
    build_leaderboard([tmp_path / "r"], tmp_path / "site")
    assert json.loads((tmp_path / "site/leaderboard.json").read_text())["tasks"] == [
        "humaneval",
        "humaneval-plus",
        "humaneval-infill-single",
        "humaneval-infill-multi",
        "humaneval-infill-random",
        "humaneval-infill-random-light",
        "humaneval-infill-quick",
        "multiple-cpp",
        "multiple-sh",
    ]


def test_published_table_is_well_formed():
    """Each number is a fraction on a task codekiln runs, once per model and task, with a
    citation; infilling has none (the papers' FIM numbers are exact match, not pass@1)."""
    tasks = {"humaneval", "humaneval-plus"} | {
        f"multiple-{lang}"
        for lang in ("js", "ts", "cpp", "java", "rs", "go", "php", "rb", "lua", "pl", "sh")
    }
    seen = set()
    for item in PUBLISHED:
        assert item.task in tasks, item
        assert 0 < item.pass_at_1 < 1, item
        assert (item.model, item.task) not in seen, item
        seen.add((item.model, item.task))
        assert item.source.url.startswith("https://") and item.source.citation
    assert {item.model for item in PUBLISHED} == {
        "StarCoder",
        "StarCoderBase",
        "SantaCoder",
        "tiny_starcoder_py",
        "StarCoder2-3B",
        "StarCoder2-7B",
        "StarCoder2-15B",
        "Code Llama 7B",
    }


def test_names_come_from_the_model_folder_or_name_never_a_generic_folder(tmp_path):
    assert display_name(tmp_path / "runs/demo/train/model") == "demo"
    assert display_name(tmp_path / "checkpoints/santacoder") == "santacoder"
    hub = tmp_path / "hub/models--bigcode--starcoder2-3b/snapshots/0123abcd"
    assert display_name(hub) == "bigcode/starcoder2-3b"
    # A workspace's eval folder with no model facts: the workspace, not "eval".
    write_result(tmp_path / "ws/eval/humaneval", "humaneval", 0.1)
    # An old results.json that recorded the generic "model": its model folder's name.
    old = {"name": "model", "path": str(tmp_path / "runs/demo/train/model")}
    write_result(tmp_path / "old/humaneval", "humaneval", 0.2, old)
    # A scored samples file recorded the file's name.
    write_result(tmp_path / "scored/out/humaneval", "humaneval", 0.3, {"name": "gen.jsonl"})
    site = tmp_path / "site"
    build_leaderboard([tmp_path / "ws", tmp_path / "old", tmp_path / "scored"], site)
    names = {m["name"] for m in json.loads((site / "leaderboard.json").read_text())["models"]}
    assert names == {"ws", "demo", "scored"}

    build_leaderboard([tmp_path / "ws"], site, name="my-model")
    board = json.loads((site / "leaderboard.json").read_text())
    assert [m["name"] for m in board["models"]] == ["my-model"]
    with pytest.raises(UserError, match="--name names one model, but the results hold 3"):
        build_leaderboard([tmp_path / "ws", tmp_path / "old", tmp_path / "scored"], site, name="x")


def test_model_info_names_a_folder_by_name_or_its_folder(tmp_path):
    folder = tmp_path / "runs/demo/train/model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt_bigcode"}))
    backend = object()
    assert model_info(folder, backend)["name"] == "demo"
    assert model_info(folder, backend, name="demo-v2")["name"] == "demo-v2"
    assert model_info(backend, backend, name="served")["name"] == "served"


def test_eval_records_the_folder_name_or_name(tmp_path):
    """`codekiln eval` names a run workspace's model after the workspace, or `--name`."""
    from test_generate import export, write_tokenizer

    folder = export(tmp_path / "demo/train/model", write_tokenizer(tmp_path / "tokenizer"))
    runner = CliRunner()
    args = ["eval", str(folder), "--tasks", "humaneval", "--limit", "1", "--greedy", "-q"]
    args += ["--max-new-tokens", "2", "--generate-only"]
    for extra, expected in (([], "demo"), (["--name", "demo-v2"], "demo-v2")):
        out = tmp_path / f"out-{expected}"
        result = runner.invoke(app, [*args, *extra, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "manifest.json").read_text())["model"]["name"] == expected


def test_leaderboard_command_flags(tmp_path):
    write_result(tmp_path / "ws/eval/humaneval", "humaneval", 0.2, {"name": "model"})
    runner = CliRunner()
    args = ["leaderboard", str(tmp_path / "ws"), "-o", str(tmp_path / "site")]
    result = runner.invoke(app, [*args, "--with-published", "--name", "tiny-run"])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "site/leaderboard.json").read_text())
    names = [m["name"] for m in board["models"]]
    assert "tiny-run" in names and "StarCoder2-15B" in names
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "site/leaderboard.json").read_text())
    assert [m["name"] for m in board["models"]] == ["ws"]


def test_docs_commands_use_real_options():
    """docs/leaderboard.md's commands name options the commands have."""
    text = (Path(__file__).parent.parent / "docs" / "leaderboard.md").read_text()
    block = text.split("```console\n", 1)[1].split("```", 1)[0]
    runner = CliRunner()
    for line in block.splitlines():
        words = line.split("#")[0].split()
        usage = runner.invoke(app, [words[1], "--help"], terminal_width=200).output
        for word in words[2:]:
            if word.startswith("--"):
                assert word in usage, f"docs use {word} that `codekiln {words[1]}` lacks"


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


@pytest.mark.slow
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


@pytest.mark.slow
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
