"""The train stage: token shards -> checkpoints, metrics and a Hugging Face model folder.

    DIR/checkpoints/step_N/   every rank's shards (DCP), rng.pt, state.json (checkpoint.py)
    DIR/checkpoints/latest    the name of the newest checkpoint
    DIR/metrics.jsonl         one JSON object per log step, and one per evaluation (metrics.py)
    DIR/loss.png              the loss curves
    DIR/model/                the last checkpoint exported (export.py): config.json,
                              safetensors, tokenizer, README.md (a LoRA run: only with
                              merge, the adapter merged in)
    DIR/adapter/              a LoRA run: adapter_config.json + adapter_model.safetensors
                              (peft's format), its tokenizer and README.md
    DIR/manifest.json         written last: the run finished

This module is the run itself: set-up, the loop of optimizer steps with its logging,
evaluation and checkpoints, and the end of the run. Decisions worth knowing, beyond those of
optim.py (weight decay, the schedule), inputs.py (the vocabulary), memory.py (the fit check),
step.py (one optimizer step, the compute dtype), batches.py (the loader), checkpoint.py
(atomic writes, resuming) and metrics.py (MFU):

- The reported training loss is the mean over the optimizer steps since the previous log row
  of each step's loss (the mean over its micro-batches and ranks).
- Validation runs on one fixed set, the first `eval_sequences` rows of the `valid` split in
  one process's order (no FIM), split over the data-parallel ranks and summed
  (train/validation.py): the same weights give the same val_loss at any world size, and
  curves are comparable across FIM settings. val_bpb is the
  nats of the targets that are not special tokens over ln 2 x their UTF-8 bytes (nanochat's
  bits per byte); it needs the tokenizer.
- Only rank 0 writes files, but for checkpoints, which every rank writes its shards of.
- `max_minutes` bounds one invocation: the run stops after the step that crosses it with a
  checkpoint, an export and a manifest; `--resume` continues it. A run is finished (a re-run
  is a no-op) only when it reached max_steps.
- `--resume` continues with the checkpoint's settings; only run length and cadence may
  change (`resume_config`), and a previous invocation's max_minutes is not applied again.
- A fine-tuning run (init_from) exports with its base's config.json keys and dropouts; a
  LoRA run checkpoints only the adapters (the frozen base is read from init_from again, and
  must be the same files) and exports them in peft's format.
- Instruction tuning (`sft`): the data is prompt/completion pairs (train/sft.py), packed
  several to a row with attention kept inside each pair; the loss is on completions only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from codekiln.errors import UserError
from codekiln.manifest import fingerprint, finished_stage, package_versions, write_manifest
from codekiln.pack.format import read_meta
from codekiln.train.batches import host_tensors, on_device, train_loader
from codekiln.train.checkpoint import (
    CHECKPOINT_VERSION,
    RNG_FILE,
    latest_checkpoint,
    load_rng_states,
    read_checkpoint_state,
    remove_unfinished,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    shard_reader,
    verify_checkpoint,
)
from codekiln.train.config import TrainConfig, TrainResult, resume_config
from codekiln.train.export import (
    base_fingerprint,
    check_checkpoint_model,
    export_checkpoint,
    export_info,
    is_adapter_key,
    run_card,
)
from codekiln.train.inputs import build_model, pack_tokenizer, sft_tokenizer
from codekiln.train.kernels import flash_attention_problem
from codekiln.train.materialise import materialise
from codekiln.train.memory import reuse_freed_memory
from codekiln.train.metrics import (
    TrainProgress,
    append_metrics,
    keep_metrics_through,
    peak_flops,
    plot_losses,
)
from codekiln.train.optim import build_optimizer, lr_at
from codekiln.train.parallel import (
    Distributed,
    all_gather_objects,
    all_reduce,
    barrier,
    data_parallel,
    init_distributed,
    parallelize,
    shutdown,
)
from codekiln.train.prefetch import Prefetcher
from codekiln.train.sft import SftData
from codekiln.train.state_dicts import load_sharded_state, sharded_state
from codekiln.train.step import autocast_context, compute_dtype, optimizer_step
from codekiln.train.validation import token_bytes, validation_batches, validation_loss


def train(
    data: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    changes: dict[str, Any] | None = None,
) -> TrainResult:
    """Train on `data` (a pack directory; with `config.sft`, a JSONL of prompt/completion
    pairs or a curated folder of commits) into `out_dir`; export to `out_dir/model` (and a
    LoRA run's adapter to `out_dir/adapter`).

    Re-running a finished run with the same data and settings does nothing (`skipped`).
    With `resume`, training continues from the newest checkpoint exactly as if it had not
    stopped (a finished run continues to a larger max_steps), with the checkpoint's settings:
    `changes` (the settings this invocation gives) or the differences of `config` from them
    may only be run length and cadence. Under torchrun every process calls this.
    """
    distributed = init_distributed()
    try:
        run = _Run(Path(data), Path(out_dir), config, resume, progress, distributed, changes)
        return run.run()
    finally:
        shutdown(distributed)


class _Run:
    """One invocation of `train`: set-up, the loop, and the end of the run."""

    def __init__(
        self,
        data: Path,
        out_dir: Path,
        config: TrainConfig | None,
        resume: bool,
        progress: bool,
        distributed: Distributed,
        changes: dict[str, Any] | None = None,
    ) -> None:
        self.data = data
        self.out_dir = out_dir
        self.config = config
        self.changes = changes
        self.resume = resume
        self.progress = progress
        self.dist = distributed
        self.root = out_dir / "checkpoints"
        self.metrics_path = out_dir / "metrics.jsonl"

    def run(self) -> TrainResult:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"output path {self.out_dir} is a file; choose a folder")
        checkpoint = latest_checkpoint(self.root)
        state = read_checkpoint_state(checkpoint) if checkpoint and self.resume else None
        if state is not None:
            verify_checkpoint(checkpoint, state)  # the ranks share the hashing
            check_checkpoint_model(checkpoint, state)  # before anything is allocated
        saved = TrainConfig.from_dict(state["config"]) if state else None
        draft = saved or self.config or TrainConfig()
        self.sft = draft.sft
        meta = None
        if not self.sft:
            meta = read_meta(self.data)
            if "train" not in meta.get("splits", {}):
                raise UserError(f"{self.data} has no train split; pack some data into it")
        fim = "none" if self.sft else (meta.get("format") or {}).get("fim", "context")
        self.changed: dict[str, tuple[Any, Any]] = {}
        if saved is not None:
            given = self.changes
            if given is None and self.config is not None:
                # A whole config: what differs, and its time limit (this invocation's).
                given = _differences(saved, self.config.resolved(fim))
                given["max_minutes"] = self.config.max_minutes
            given = given or {}
            self.config, self.changed = resume_config(saved, given)
        else:
            self.config = draft.resolved(fim)
        config = self.config
        self.pairs = None
        if self.sft:
            self.tok = sft_tokenizer(config)
            self.pairs = SftData(
                self.data, self.tok.tokenizer, self.tok.folder, self.tok.fingerprint, config
            )
            meta = self.pairs.meta
        else:
            self.tok = pack_tokenizer(config, self.data, meta)
        self.meta = meta
        finished = finished_stage(self.out_dir, "train")  # UserError: another stage's folder
        if (
            finished is not None
            and finished.get("request") == _request(config, meta)
            and finished.get("steps", 0) >= config.max_steps  # not one stopped by the clock
        ):
            return _result_from_manifest(self.out_dir, finished)
        if not self.resume and (finished is not None or checkpoint is not None):
            raise UserError(
                f"{self.out_dir} already holds a training run"
                + (f" (checkpoint {checkpoint.name})" if checkpoint else "")
                + ": pass --resume to continue it, or choose another output folder"
            )
        if state is not None and config.lora and state.get("base") != base_fingerprint(config):
            raise UserError(
                f"{config.init_from} is not the model this LoRA run started from (its config "
                "or weight files changed since the checkpoint was written): resume with the "
                "same base folder"
            )
        self.tokenizer = self.tok.tokenizer
        device = self.dist.device
        if device.type == "cpu":
            reuse_freed_memory()  # a training step's large buffers are reused, not re-faulted
        self.dtype = compute_dtype(config, device)
        self.autocast = autocast_context(device, self.dtype)
        self._say_resume(state)
        built = build_model(
            config, int(meta["vocab_size"]), state, self.dist, self.dtype, self._say_memory
        )
        self.built = built
        model = built.model
        self.model_config = model.config
        problem = flash_attention_problem(
            model.config, config.seq_len, self.dtype, device, self.sft
        )
        if problem is not None:  # the math kernel: (T, T) scores per head, several times slower
            self._warn(f"attention will not use FlashAttention: {problem}")
        if built.weights is None:
            model.to(device)  # a LoRA run's base, already real
        model.train()
        # Every rank fills its shards from the same seed (or init_from); dropout masks should
        # differ across data-parallel replicas, and agree within a tensor-parallel group.
        self.dp_rank, self.dp_size = data_parallel(
            self.dist, config.parallel, config.tp_size, config.pp_size
        )
        torch.manual_seed(config.seed + self.dp_rank)
        fill = None
        if built.weights is not None:
            fill = functools.partial(
                materialise,
                model_config=self.model_config,
                device=device,
                weights=built.weights,
                seed=config.seed,
                init_from=config.init_from,
            )
        self.model = parallelize(
            model,
            self.dist,
            activation_checkpointing=config.activation_checkpointing,
            compile=config.compiles(device.type),
            parallel=config.parallel,
            tp_size=config.tp_size,
            pp_size=config.pp_size,
            pp_schedule=config.pp_schedule,
            autocast=self.autocast,
            materialise=fill,
        )
        self.optimizer = build_optimizer(self.model, config, device)
        pin = device.type == "cuda"
        loader = train_loader(
            config, self.data, self.tokenizer, self.pairs, self.dp_rank, self.dp_size
        )
        # Its state_dict is the position of the next batch the loop consumes (the thread's
        # own runs ahead), so checkpoints resume exactly.
        self.loader = Prefetcher(loader, config.prefetch, functools.partial(host_tensors, pin=pin))
        rows = validation_batches(
            config, self.data, self.meta, self.pairs, self.dp_rank, self.dp_size
        )
        self.eval_batches = [on_device(host_tensors(batch, pin), device) for batch in rows]
        self.sizes = None
        if self.eval_batches:
            sizes = token_bytes(self.tokenizer, self.model_config.vocab_size)
            self.sizes = torch.from_numpy(sizes).to(device)

        self.step, self.tokens, self.elapsed_before = 0, 0, 0.0
        self.interval = [0.0, 0]  # training loss sum and steps since the last log row
        self.last_loss, self.val_loss = math.nan, None
        if state is not None:
            self._restore(checkpoint, state)
        elif self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.root, ignore_errors=True)
            self.metrics_path.unlink(missing_ok=True)
        if self.dist.is_main:
            (self.out_dir / "manifest.json").unlink(missing_ok=True)  # not finished now
        barrier()
        self.peak = peak_flops(config, device, self.dtype, self._say) if self.dist.is_main else 1.0
        self._loop()
        return self._finish()

    def _say(self, line: str) -> None:
        if self.progress and self.dist.is_main:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(line, markup=False)

    def _warn(self, line: str) -> None:
        """A warning on rank 0's stderr, with or without the progress display."""
        if self.dist.is_main:
            print(f"WARNING: {line}", file=sys.stderr, flush=True)

    def _say_resume(self, state: dict | None) -> None:
        """What a resumed run continues with (the checkpoint's settings, and what changed)."""
        if state is None:
            return
        changes = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in self.changed.items())
        self._say(
            f"resuming from step {state['step']} with the checkpoint's settings"
            + (f"; changed: {changes}" if changes else "")
        )

    def _say_memory(self, memory: dict[str, int]) -> None:
        """The memory estimate, before the model is allocated."""
        gib = 1 << 30
        self._say(
            f"{self.config.kind}: {memory['params'] / 1e6:,.1f}M parameters, "
            f"{memory['trainable'] / 1e6:,.2f}M trained; needs about "
            f"{memory['total'] / gib:,.2f} GiB ({memory['states'] / gib:,.2f} weights and "
            f"optimizer state, {memory['activations'] / gib:,.2f} activations)"
            + (f" of {memory['available'] / gib:,.1f} available" if memory["available"] else "")
        )

    def _restore(self, checkpoint: Path, state: dict[str, Any]) -> None:
        # Each rank reads its own shards of this layout, whatever layout wrote them.
        keep = is_adapter_key if self.config.lora else None  # a LoRA run: the adapters only
        load_sharded_state(self.model, self.optimizer, shard_reader(checkpoint), keep)
        rng_states = load_rng_states(checkpoint)
        self.loader.load_state_dict(state["loader"])
        if len(rng_states) == self.dist.world_size:
            set_rng_state(rng_states[self.dist.rank])
        else:  # another world size: fresh, distinct streams per rank
            seed_everything(self.config.seed + 1_000_003 * state["step"] + self.dp_rank)
        self.step = state["step"]
        self.tokens = state["tokens"]
        self.elapsed_before = state["elapsed"]
        self.interval = list(state["interval"])
        self.last_loss = state.get("last_loss", math.nan)
        self.val_loss = state.get("val_loss")
        if self.dist.is_main:
            remove_unfinished(self.root)
            keep_metrics_through(self.metrics_path, self.step)

    def _loop(self) -> None:
        config, device = self.config, self.dist.device
        tokens_per_step = config.batch_size * config.seq_len * config.grad_accum * self.dp_size
        from codekiln.model.config import flops_per_token

        flops = flops_per_token(self.model_config, config.seq_len)
        batches: Iterator = iter(self.loader)  # the prefetch thread starts here
        started = time.time()
        interval_start, paused, timed_steps = time.time(), 0.0, 0
        interval_loss = torch.tensor(self.interval[0], dtype=torch.float64, device=device)
        interval_steps = self.interval[1]
        last_eval = last_checkpoint = self.step
        bar = TrainProgress(self.progress and self.dist.is_main, config.max_steps, self.step)
        try:
            while self.step < config.max_steps:
                micro = [on_device(next(batches), device) for _ in range(config.grad_accum)]
                lr = lr_at(
                    self.step + 1, config.lr, config.min_lr, config.warmup_steps, config.max_steps
                )
                loss, norm = optimizer_step(
                    self.model,
                    self.optimizer,
                    micro,
                    lr,
                    config.grad_clip,
                    self.autocast,
                    config.fsdp_grad_sync,
                )
                self.step += 1
                self.tokens += tokens_per_step
                interval_loss += loss.double()
                interval_steps += 1
                timed_steps += 1
                stop = self._out_of_time(started)
                if self.step % config.log_every == 0 or self.step == config.max_steps or stop:
                    mean = all_reduce(interval_loss / interval_steps) / self.dist.world_size
                    self.last_loss = mean.item()
                    if not math.isfinite(self.last_loss):
                        raise UserError(
                            f"the training loss is {self.last_loss} at step {self.step}: lower "
                            f"lr (now {config.lr}) or raise warmup_steps, and resume or restart"
                        )
                    seconds = max(time.time() - interval_start - paused, 1e-9)
                    rate = timed_steps * tokens_per_step / seconds
                    self._log(
                        step=self.step,
                        loss=self.last_loss,
                        lr=lr,
                        tokens=self.tokens,
                        tokens_per_s=round(rate, 1),
                        mfu=round(flops * rate / (self.peak * self.dist.world_size), 6),
                        grad_norm=norm.item(),
                        elapsed=round(self.elapsed_before + time.time() - started, 3),
                    )
                    bar.update(self.step, f"loss {self.last_loss:.3f} · {rate:,.0f} tok/s")
                    interval_loss.zero_()
                    interval_steps = 0
                    interval_start, paused, timed_steps = time.time(), 0.0, 0
                else:
                    bar.update(self.step)
                clock = time.time()
                if config.eval_every and self.step % config.eval_every == 0:
                    self._evaluate(started)
                    last_eval = self.step
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self._checkpoint(started, interval_loss, interval_steps)
                    last_checkpoint = self.step
                paused += time.time() - clock
                if stop:
                    break
            if last_eval != self.step or self.val_loss is None:
                self._evaluate(started)
            if last_checkpoint != self.step:
                self._checkpoint(started, interval_loss, interval_steps)
        finally:
            self.loader.close()
            bar.close()
        self.elapsed = self.elapsed_before + time.time() - started

    def _out_of_time(self, started: float) -> bool:
        if self.config.max_minutes is None:
            return False
        late = time.time() - started >= self.config.max_minutes * 60
        flag = torch.tensor([float(late)], device=self.dist.device)
        return bool(all_reduce(flag, "max").item())  # every rank stops at the same step

    def _log(self, **row: Any) -> None:
        if self.dist.is_main:
            append_metrics(self.metrics_path, row)

    def _evaluate(self, started: float) -> None:
        if not self.eval_batches:
            return
        pipeline = getattr(self.model, "pipeline", None)  # stages: forward through them
        if pipeline is not None:
            loss, bpb = pipeline.validation_losses(self.eval_batches, self.sizes)
        else:
            loss, bpb = validation_loss(self.model, self.eval_batches, self.sizes, self.autocast)
        self.val_loss = loss
        row = {"step": self.step, "val_loss": loss, "tokens": self.tokens}
        if bpb is not None:
            row["val_bpb"] = bpb
        row["elapsed"] = round(self.elapsed_before + time.time() - started, 3)
        self._log(**row)

    def _checkpoint(self, started: float, interval_loss: torch.Tensor, steps: int) -> None:
        keep = is_adapter_key if self.config.lora else None  # the frozen base is init_from's
        shards = sharded_state(self.model, self.optimizer, keep)  # this rank's, no gathering
        rng_states = all_gather_objects(rng_state())  # one per rank, small
        state = None
        if self.dist.is_main:
            progress = {
                "steps": self.step,
                "tokens": self.tokens,
                "final_loss": self.last_loss,
                "val_loss": self.val_loss,
            }
            card = run_card(
                self.config,
                self.meta,
                self.data,
                self.sft,
                self.tok.fingerprint,
                progress,
                self.config.batch_size * self.config.grad_accum * self.dp_size,
                self.built.base_config,
            )
            state = {
                "version": CHECKPOINT_VERSION,
                "step": self.step,
                "tokens": self.tokens,
                "elapsed": self.elapsed_before + time.time() - started,
                # The unlogged part of the loss interval, so the next row is the same resumed.
                "interval": [interval_loss.item(), steps],
                "last_loss": self.last_loss,
                "val_loss": self.val_loss,
                "loader": self.loader.state_dict(),
                "world_size": self.dist.world_size,
                "config": self.config.to_dict(),
                "model_config": dataclasses.asdict(self.model_config),
                "base": base_fingerprint(self.config) if self.config.lora else None,
                "export": export_info(self.config, self.built, self.tok.folder, card),
            }
        save_checkpoint(
            self.root,
            self.step,
            shards,
            {RNG_FILE: rng_states},
            state,
            self.config.keep_checkpoints,
        )

    def _finish(self) -> TrainResult:
        config = self.config
        model_dir = self.out_dir / "model"
        adapter_dir = self.out_dir / "adapter" if config.lora else None
        exported = None
        barrier()  # the last checkpoint is complete
        if self.dist.is_main:
            # The export is the last checkpoint's, read back as `codekiln export` reads it:
            # no rank gathers the model, and the two agree by construction.
            checkpoint = latest_checkpoint(self.root)
            exported = export_checkpoint(checkpoint, model_dir, adapter_dir, verify=False)
            plot_losses(self.metrics_path, self.out_dir / "loss.png")
            outputs = {
                "checkpoint": latest_checkpoint(self.root).name,
                "metrics": "metrics.jsonl",
                "plot": "loss.png",
            }
            if exported is not None:
                outputs["model"] = "model"
            if adapter_dir is not None:
                outputs["adapter"] = "adapter"
            write_manifest(
                self.out_dir,
                "train",
                request=_request(config, self.meta),
                config=config.to_dict(),
                model_config=dataclasses.asdict(self.model_config),
                inputs={
                    "data": {"path": str(self.data), "meta": fingerprint(self.meta)},
                    "tokenizer": {
                        "path": str(self.tok.folder),
                        "fingerprint": self.tok.fingerprint,
                    },
                    "init_from": config.init_from,
                },
                outputs=outputs,
                steps=self.step,
                tokens=self.tokens,
                final_loss=self.last_loss,
                val_loss=self.val_loss,
                world_size=self.dist.world_size,
                device=str(self.dist.device.type),
                elapsed_s=round(self.elapsed, 3),
                versions=package_versions("torch", "numpy", "tokenizers", "safetensors"),
            )
        barrier()
        has_model = not config.lora or config.merge
        return TrainResult(
            self.out_dir,
            self.step,
            self.tokens,
            self.last_loss,
            self.val_loss,
            model_dir if has_model else None,
            adapter_dir=adapter_dir,
            resumed_changes=self.changed,
        )


def _result_from_manifest(out_dir: Path, manifest: dict[str, Any]) -> TrainResult:
    return TrainResult(
        out_dir,
        manifest.get("steps", 0),
        manifest.get("tokens", 0),
        manifest.get("final_loss", math.nan),
        manifest.get("val_loss"),
        out_dir / "model",
        skipped=True,
    )


def _request(config: TrainConfig, meta: dict) -> str:
    """What a finished run's manifest must match for a re-run to be a no-op (the time limit
    of one invocation is not part of the run, nor where its tokenizer folder is)."""
    skip = ("max_minutes", "tokenizer")
    settings = {k: v for k, v in config.to_dict().items() if k not in skip}
    return fingerprint({"config": settings, "meta": meta})


def _differences(saved: TrainConfig, given: TrainConfig) -> dict[str, Any]:
    """The settings of `given` that differ from `saved` (what a resume asks to change)."""
    old, new = saved.to_dict(), given.to_dict()
    return {key: value for key, value in new.items() if old.get(key) != value}
