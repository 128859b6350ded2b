"""Every HTML page from the one template system: each page from small made-up inputs, and
the workspace report rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codekiln.curate.report import write_html_report
from codekiln.evaluate.leaderboard import build_leaderboard
from codekiln.evaluate.report import write_report
from codekiln.pages import render
from codekiln.pages.workspace import write_workspace_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TASK = "toy"  # not a registered task: samples are shown without their prompts


def bucket(files_in: int, files_kept: int, dropped: dict) -> dict:
    return {
        "files_in": files_in,
        "bytes_in": files_in * 1000,
        "files_kept": files_kept,
        "bytes_kept": files_kept * 900,
        "dropped": dropped,
    }


def curate_report() -> dict:
    dropped = {
        "binary": {"files": 3, "bytes": 3000},
        "exact_duplicate": {"files": 2, "bytes": 2000},
    }
    return {
        "totals": bucket(10, 5, dropped),
        "funnel": [
            {"step": "inputs", "files": 10},
            {"step": "binary", "dropped": 3, "files": 7},
            {"step": "exact_duplicate", "dropped": 2, "files": 5},
        ],
        "languages": {"Python": bucket(8, 5, {"exact_duplicate": {"files": 2, "bytes": 2000}})},
        "sources": {"repo": bucket(10, 5, dropped)},
        "repositories": {
            "count": 1,
            "top": [{"repo": "<evil>/repo", **bucket(10, 5, {"binary": 3, "exact_duplicate": 2})}],
            "other": {**bucket(0, 0, {}), "repositories": 0},
        },
        "steps": {
            "pii": {"files_edited": 1, "items": {"email": 2}, "files": {"email": 1}},
            "near_dedup": {"clusters": 0, "cluster_sizes": []},
            "contaminated": {},
            "licenses": {"MIT": 10},
        },
    }


def test_render_escapes_and_inlines_the_stylesheet():
    page = render("base.html", title="<script>x</script>")
    assert "<title>&lt;script&gt;x&lt;/script&gt;</title>" in page
    assert "<style>" in page and "--accent" in page and "<link" not in page


def test_curate_page():
    page = write_html_report(curate_report(), title="demo")
    assert "<h1>demo</h1>" in page
    assert "10 files (0.01 MB) in;" in page and "50.0% of files" in page
    funnel = page.split('id="funnel"')[1].split("</svg>")[0]
    assert [t for t in re.findall(r">([^<>]+)</text>", funnel)] == [
        "inputs",
        "10",
        "after binary",
        "7  (−3)",
        "after exact_duplicate",
        "5  (−2)",
    ]
    assert "<tr><td>binary</td><td>3</td><td>0.00 MB</td></tr>" in page
    assert "<tr><td>Python</td><td>8</td><td>0.01 MB</td><td>5</td>" in page
    assert "<td>binary 3, exact_duplicate 2</td>" in page  # a repository's drops, as text
    assert "&lt;evil&gt;/repo" in page and "<evil>" not in page
    assert "<tr><td>email</td><td>2</td><td>1</td></tr>" in page
    assert "No file held a benchmark prompt or solution." in page


def write_eval(eval_dir: Path) -> dict:
    """An evaluated toy task: two problems, one sample each passing and one failing each."""
    task_dir = eval_dir / TASK
    task_dir.mkdir(parents=True)
    generations, verdicts = [], []
    for i, status in enumerate(["failed", "passed", "timeout", "passed", "failed"]):
        generations.append({"task_id": f"Toy/{i}", "sample": 0, "completion": f"return {i}"})
        verdicts.append({"task_id": f"Toy/{i}", "sample": 0, "status": status, "detail": "x"})
    for name, rows in (("generations.jsonl", generations), ("verdicts.jsonl", verdicts)):
        (task_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {
        "task": TASK,
        "model": {"name": "demo", "parameters": 1_500_000, "tokens_trained": 2_000_000},
        "metrics": {"pass@1": 0.4},
        "problems": 5,
        "samples_per_problem": 1,
        "outcomes": {"passed": 2, "failed": 2, "timeout": 1, "memory": 0},
        "generation": {"temperature": 0.0},
    }
    (task_dir / "results.json").write_text(json.dumps(result))
    (eval_dir / "manifest.json").write_text(
        json.dumps({"stage": "evaluate", "tasks": {TASK: {"results": f"{TASK}/results.json"}}})
    )
    return result


def test_evaluation_page(tmp_path):
    result = write_eval(tmp_path)
    page = write_report(tmp_path, {TASK: result}).read_text()
    assert "<title>codekiln eval: demo</title>" in page and "Evaluation of demo" in page
    assert "pass@1 40.00%" in page and "passed 2, failed 2, timeout 1" in page
    shown = re.findall(r"<h3>(Toy/\d) <span class=\"(\w+)\">", page)
    assert shown == [("Toy/1", "passed"), ("Toy/3", "passed"), ("Toy/0", "failed")] + [
        ("Toy/2", "timeout"),
        ("Toy/4", "failed"),
    ]
    assert f'<a href="{TASK}/results.json">' in page


def make_workspace(root: Path) -> Path:
    """A made-up finished workspace laid out as `codekiln run` lays it out."""
    ws = root / "demo"

    def write(path: str, value) -> None:
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text(value if isinstance(value, str) else json.dumps(value))

    write("curated/report.json", curate_report())
    write("tokenizer/manifest.json", {"stage": "tokenizer", "vocab_size": 8192})
    write("tokenizer/fertility.json", {"overall": {"chars_per_token": 3.25}})
    splits = {
        "train": {"tokens": 9_000_000, "documents": 90},
        "valid": {"tokens": 1, "documents": 1},
    }
    write("tokens/meta.json", {"splits": splits})
    rows = [{"step": s, "loss": 9 - s / 40} for s in range(10, 210, 10)]
    rows += [{"step": 100, "val_loss": 7.0}, {"step": 200, "val_loss": 5.5}]
    write("train/metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    train = {"stage": "train", "steps": 200, "tokens": 409_600, "final_loss": 4.0, "val_loss": 5.5}
    write("train/manifest.json", train)
    write_eval(ws / "eval")
    build_leaderboard([ws / "eval"], ws / "leaderboard")
    attribution = {"counts": {"distinct_grams": 1234}, "config": {"width": 50}}
    write("attribution/manifest.json", {"stage": "attribution", **attribution, "sizes": {}})
    return ws


def test_workspace_page(tmp_path):
    ws = make_workspace(tmp_path)
    page = write_workspace_report(ws).read_text()
    assert "<title>codekiln run: demo</title>" in page
    assert 'id="funnel"' in page and "after exact_duplicate" in page
    assert 'id="loss"' in page and page.count("<polyline") == 2  # train and validation
    assert "<b>40.0%</b><span>pass@1, toy</span>" in page
    assert "<b>5</b><span>files kept of 10</span>" in page and "<b>9.0M</b>" in page
    passing = page.split('class="passing"')[1].split('class="failing"')[0]
    failing = page.split('class="failing"')[1].split("</div>")[0]
    assert re.findall(r"<h3>(Toy/\d)", passing) == ["Toy/1", "Toy/3"]
    assert re.findall(r"<h3>(Toy/\d)", failing) == ["Toy/0", "Toy/2"]
    board = page.split('id="board"')[1].split("</table>")[0]
    assert '<tr data-model="demo">' in board and "1.5M" in board and "40.0%" in board
    assert f'href="leaderboard/results/demo/{TASK}.json"' in board
    for link in ("curated/report.html", "eval/report.html", "leaderboard/index.html"):
        assert f'href="{link}"' in page
    assert "8,192 tokens; 3.25 characters per token" in page
    assert "200 steps, 409,600 tokens, final loss 4.000, validation loss 5.500" in page
    assert "1,234 grams of 50 characters" in page


def test_workspace_page_of_a_partial_run(tmp_path):
    ws = tmp_path / "early"
    (ws / "curated").mkdir(parents=True)
    (ws / "curated" / "report.json").write_text(json.dumps(curate_report()))
    page = write_workspace_report(ws).read_text()
    assert 'id="funnel"' in page and 'id="loss"' not in page and 'id="board"' not in page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_workspace_page_in_headless_chromium(tmp_path):
    from PIL import Image

    report = write_workspace_report(make_workspace(tmp_path))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    url = report.as_uri()
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    # The pictures are in the rendered document: the funnel's bars and the loss curve's lines.
    assert re.search(r'<svg class="bars" id="funnel"[^>]*>(.|\n)*<rect', dom)
    assert re.search(r'<svg class="line" id="loss"[^>]*>(.|\n)*<polyline', dom)
    shot = tmp_path / "workspace.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colours = {colour for _, colour in image.convert("RGB").getcolors(1280 * 2000)}
    assert len(colours) > 10  # not one colour: the page was drawn
    assert (0x2F, 0x6F, 0xB3) in colours  # the funnel's first bar and the train loss, drawn
