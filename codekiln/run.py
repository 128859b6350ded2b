"""The main job: every stage, in one workspace, on the given sources (default: the stdlib).

Stages are chained through files on disk only; each later issue adds its stage here.

    workspace/curated/    curate: shards, ledger, report
    workspace/tokenizer/  tokenizer: a Hugging Face tokenizer folder, fertility report
    workspace/tokens/     pack: train/valid token shards
    workspace/train/      train: checkpoints, metrics.jsonl, loss.png, model/ (HF format)
    workspace/eval/       evaluate: HumanEval and infilling generations, verdicts, pass@1
    workspace/leaderboard/ the evaluation as a leaderboard page (add other models' results)
    workspace/attribution/ attribution: Bloom-filter index of the curated data, for serving
    workspace/report.html the funnel, loss curve, pass@1, samples and leaderboard, and a link
                          to every stage's outputs (codekiln/pages/workspace.py)
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln.config import load_config
from codekiln.curate.config import CurateConfig
from codekiln.curate.pipeline import CurateResult, curate
from codekiln.curate.sources import Source, resolve_sources, stdlib_source
from codekiln.manifest import package_versions, write_manifest
from codekiln.progress import PhaseProgress

# The main job's settings for a CPU demo: a small vocabulary (StarCoder's is 49,152), a larger
# validation share (the stdlib has few repositories), and the tiny model for a bounded time, so
# the whole job stays well under 15 minutes on 2 cores.
RUN_DEFAULTS = {
    "tokenizer": ["vocab_size=8192", "sample_bytes=50000000"],
    "pack": ["valid_fraction=0.05"],
    "train": ["model=tiny", "max_steps=1200", "max_minutes=8", "eval_every=200"],
    # Greedy pass@1 with short completions: a minutes-trained model writes little of use, and
    # the 1,033 single-line holes are scored as generated (not cut at a newline), so 64 new
    # tokens keep the evaluation to a few minutes on 2 cores.
    "eval": ["tasks=humaneval,humaneval-infill-single", "greedy=true", "max_new_tokens=64"],
    "attribution": [],
}


@dataclass
class RunResult:
    workspace: Path
    curate: CurateResult
    tokenizer: Any
    pack: Any
    train: Any
    evaluation: dict[str, Any]
    attribution: Any
    report_path: Path


def run_pipeline(
    workspace: str | Path,
    sources: list[str] | None = None,
    curate_config: CurateConfig | None = None,
    config_file: str | Path | None = None,
    sets: dict[str, list[str]] | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    allow_code_execution: bool = False,
) -> RunResult:
    """Curate `sources` (or the running Python's standard library), train a tokenizer on the
    result, pack it into token shards, train a model and evaluate it, all under `workspace`.
    The model's code runs (in the sandbox) only with `allow_code_execution`; without it the
    evaluation stops at writing the generations."""
    from codekiln.evaluate.config import EvalConfig
    from codekiln.evaluate.harness import evaluate
    from codekiln.pack.pack import PackConfig, pack
    from codekiln.tokenizer.train import TokenizerConfig, train_tokenizer
    from codekiln.train.config import TrainConfig
    from codekiln.train.loop import train

    sets = sets or {}
    workspace = Path(workspace)
    started = time.time()
    resolved: list[Source] = resolve_sources(sources) if sources else [stdlib_source()]

    # Validate every stage's settings before the first stage spends any time.
    def stage_config(cls: type, name: str, extra: tuple[str, ...] = ()) -> Any:
        given = sets.get(name, [])
        defaults = RUN_DEFAULTS[name] + list(extra)
        if any(s.startswith("max_length_generation=") for s in given):
            # the user picked the harness's length rule: ours would collide with it
            defaults = [d for d in defaults if not d.startswith("max_new_tokens=")]
        return load_config(cls, name, config_file, defaults + given)

    tokenizer_config = stage_config(TokenizerConfig, "tokenizer")
    pack_config = stage_config(PackConfig, "pack")
    train_config = dataclasses.replace(
        stage_config(TrainConfig, "train"), tokenizer=str(workspace / "tokenizer")
    )
    eval_config = stage_config(EvalConfig, "eval")
    workspace.mkdir(parents=True, exist_ok=True)
    curated = curate(
        resolved,
        workspace / "curated",
        curate_config,
        workers=workers,
        force=force,
        progress=progress,
        executor=executor,
        ray_address=ray_address,
    )
    tokenizer = train_tokenizer(
        workspace / "curated", workspace / "tokenizer", tokenizer_config, force=force
    )
    packed = pack(
        workspace / "curated",
        workspace / "tokenizer",
        workspace / "tokens",
        pack_config,
        workers=workers,
        force=force,
        progress=progress,
    )
    trained = train(
        workspace / "tokens", workspace / "train", train_config, resume=not force, progress=progress
    )
    if force:
        shutil.rmtree(workspace / "eval", ignore_errors=True)
    with PhaseProgress(enabled=progress) as bars:
        evaluation = evaluate(
            trained.model_dir,
            workspace / "eval",
            eval_config,
            allow_code_execution=allow_code_execution,
            generate_only=not allow_code_execution,
            progress=bars,
        )
    if allow_code_execution:
        from codekiln.evaluate.leaderboard import build_leaderboard

        build_leaderboard([workspace / "eval"], workspace / "leaderboard")
    from codekiln.attribution import AttributionConfig, build_index

    attribution_config = stage_config(AttributionConfig, "attribution")
    attribution = build_index(
        workspace / "curated",
        workspace / "attribution",
        attribution_config,
        workers=workers,
        force=force,
        progress=progress,
    )
    from codekiln.pages.workspace import write_workspace_report

    report_path = write_workspace_report(workspace)
    write_manifest(
        workspace,
        "run",
        sources=[s.describe() for s in resolved],
        stages={
            "curate": "curated",
            "tokenizer": "tokenizer",
            "pack": "tokens",
            "train": "train",
            "eval": "eval",
            "attribution": "attribution",
        },
        versions=package_versions("pyarrow", "numpy", "tokenizers"),
        timings={"total_s": round(time.time() - started, 3)},
    )
    return RunResult(
        workspace, curated, tokenizer, packed, trained, evaluation, attribution, report_path
    )
