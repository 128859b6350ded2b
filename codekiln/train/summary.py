"""What `codekiln train` and `codekiln memory` print: a run's outcome, a memory plan."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_train_summary(console: Console, result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} already holds this finished run; nothing to do.")
    val = f", validation loss {result.val_loss:.3f}" if result.val_loss is not None else ""
    console.print(
        f"train: {result.steps:,} steps, {result.tokens:,} tokens, "
        f"final loss {result.final_loss:.3f}{val}"
    )
    outputs = [f"checkpoints and metrics: {result.out_dir}"]
    if result.model_dir is not None:
        outputs.append(f"model: {result.model_dir}")
    if result.adapter_dir is not None:
        outputs.append(f"adapter (peft): {result.adapter_dir}")
    console.print("  ".join(outputs))


def print_memory_plan(
    console: Console, cfg, nproc: int, plan: dict, device_gib: float | None
) -> None:
    gib = 1 << 30
    cut, model = plan["layout"], plan["model_config"]
    mode = "fsdp" if cut.fsdp else ("ddp" if cut.dp > 1 else "replicated")
    console.print(
        f"{plan['params'] / 1e9:,.2f}B parameters ({model.n_layer} layers, width "
        f"{model.n_embd}) on {nproc:,} processes: pp {cut.pp} x dp {cut.dp} ({mode}) x tp "
        f"{cut.tp}; micro-batch {cfg.batch_size} x {cfg.seq_len} tokens, grad_accum "
        f"{cfg.grad_accum}, {plan['dtype']} compute, activation checkpointing "
        f"{'on' if cfg.activation_checkpointing else 'off'}"
    )
    table = Table(title="one rank at its peak (GiB)")
    table.add_column("weights", justify="right")
    table.add_column("gradients", justify="right")
    table.add_column("AdamW", justify="right")
    table.add_column("activations", justify="right")
    table.add_column("start-up", justify="right")
    table.add_column("peak", justify="right")
    table.add_row(
        *(
            f"{plan[key] / gib:,.2f}"
            for key in ("weights", "gradients", "optimizer", "activations", "startup", "peak")
        )
    )
    console.print(table)
    if device_gib is not None:
        fits = plan["peak"] <= device_gib * gib
        advice = ["lower batch_size", "add ranks (or raise tp_size, pp_size)"]
        if not cfg.activation_checkpointing:
            advice.insert(0, "set activation_checkpointing=true")
        if plan["layout"].pp > 1 and cfg.pp_schedule == "gpipe":
            advice.insert(0, "use pp_schedule=1f1b (GPipe keeps every micro-batch)")
        console.print(
            f"{'fits' if fits else 'does not fit'} a {device_gib:g} GiB device"
            + ("" if fits else ": " + ", ".join(advice))
        )
