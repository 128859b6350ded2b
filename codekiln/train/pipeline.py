"""Pipeline parallelism: CodeGPT cut into stages that run one after another on different
ranks, with `torch.distributed.pipelining` running the schedule.

The blocks are divided evenly into `pp_size x stages per rank` stages (`stage_layers`); the
first stage also holds the embeddings (wte, wpe), the last the final norm ln_f, the output
projection and the chunked loss (`linear_cross_entropy`), so no (B, T, V) logits ever cross
a rank boundary. Stage s runs on pipeline rank s % pp_size (torch's "loop" order): one stage
per rank under GPipe and 1F1B, two under interleaved 1F1B.

A stage (`StageModule`) keeps the model's own submodules under the model's own names: its
blocks sit in a ModuleDict keyed by layer number, so its state dict holds `blocks.5.attn...`
for exactly the layers it runs, and sharded checkpoints (each rank its own keys) and the
meta-device start see the model's names. Under interleaved 1F1B the rank's two stages share
their submodules with one `StageModule` that holds both (the module the optimizer and the
state dicts see; never run itself).

Tied embeddings (StarCoder): the last stage needs the output projection, which is the
token embedding. It holds its own copy as `wte.weight`, the same name and the same value as
the first stage's, so a state dict sees one parameter that two stages happen to replicate,
as tensor parallelism replicates the LayerNorms: sharded checkpoints store it once and load
it into both, and a per-parameter seeded initialisation gives both the same values. After
the backward pass the two gradients are summed between the first and the last stage
(Megatron-LM's way), so both copies take the same AdamW step and stay equal; the gradient
norm counts the weight once. An untied head (`lm_head`) simply lives on the last stage.

One optimizer step feeds the rank's grad_accum micro-batches to the schedule as its
micro-batches. Each micro-batch's loss is its mean over its targets and the schedule divides
the gradients by their number, so the loss is the mean over micro-batches of each one's
mean, as `step.optimizer_step` computes without stages. Gradients are clipped by the global
norm: each stage's norm (over its tensor- and data-parallel shards) squared, summed over the
pipeline ranks.

Validation runs forward only, one batch at a time through the stages with plain
point-to-point sends over the pipeline group, not through the schedule: the schedule's
buffers are fixed to the training micro-batch's shape, and validation batches may differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from codekiln.errors import UserError
from codekiln.model.gpt import _dropout, attention_mask, rotary_tables
from codekiln.model.loss import linear_cross_entropy
from codekiln.train.config import PP_STAGES_PER_RANK


def stage_layers(n_layer: int, stages: int) -> list[range]:
    """The blocks of each of `stages` stages: equal, consecutive runs of layers.

    >>> stage_layers(8, 4)
    [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    """
    if n_layer % stages:
        raise UserError(
            f"pipeline parallelism needs n_layer divisible by its {stages} stages, got "
            f"{n_layer}: change pp_size or pp_schedule (interleaved1f1b has "
            f"{PP_STAGES_PER_RANK['interleaved1f1b']} stages per rank)"
        )
    size = n_layer // stages
    return [range(i * size, (i + 1) * size) for i in range(stages)]


class StageModule(nn.Module):
    """The part of a CodeGPT that some stage(s) run, under the model's own names: the
    embeddings when it holds the first stage, blocks.N for each layer N it holds, and ln_f
    with the head (and `wte` as the tied head) when it holds the last.

    `forward` runs one stage: token ids (first stage) or the residual stream (B, T, C) in;
    the residual stream out, or, on the last stage, the mean loss with `labels` and float32
    logits (B, T, V) without. Other keyword arguments are ignored: the schedule hands the
    last rank's `labels` to each of its stages.
    """

    def __init__(self, model: nn.Module, layers: Iterable[int], first: bool, last: bool):
        super().__init__()
        self.config = model.config
        self.first, self.last = first, last
        tied = model.lm_head is None
        self.wte = model.wte if first or (last and tied) else None
        self.wpe = model.wpe if first else None
        self.blocks = nn.ModuleDict({str(i): model.blocks[i] for i in layers})
        self.ln_f = model.ln_f if last else None
        self.lm_head = model.lm_head if last else None
        self.dropout = model.dropout
        self.autocast = None  # set by `Pipeline`: the run's autocast, entered per stage

    def layer_modules(self) -> list[nn.Module]:
        return list(self.blocks.values())

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, **_) -> torch.Tensor:
        with self.autocast or nullcontext():
            return self._run(x, labels)

    def _run(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        config = self.config
        T = x.shape[1]
        if self.first:
            x = self.wte(x)  # (B, T, C)
            if self.wpe is not None:
                x = x + self.wpe.weight[:T]
            x = _dropout(x, self.dropout, self.training)
        rope = None
        if config.position != "learned":
            positions = torch.arange(T, device=x.device)
            rope = rotary_tables(positions, config.head_dim, config.rope_theta)
        mask = attention_mask(T, 0, config.sliding_window, None, x.device)
        for block in self.blocks.values():
            x = block(x, rope, None, mask)
        if not self.last:
            return x
        x = self.ln_f(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight
        if labels is None:
            return F.linear(x, head).float()  # (B, T, V)
        return linear_cross_entropy(x.flatten(0, 1), head, labels.flatten())


def split(model: nn.Module, pp_rank: int, pp_size: int, schedule: str):
    """(the rank's part, its stages, their stage indices) of `model` (a CodeGPT, on the meta
    device or real) for `schedule`; the part is the one stage under GPipe and 1F1B."""
    per_rank = PP_STAGES_PER_RANK[schedule]
    stages = pp_size * per_rank
    layers = stage_layers(model.config.n_layer, stages)
    indices = list(range(pp_rank, stages, pp_size))
    modules = [StageModule(model, layers[s], s == 0, s == stages - 1) for s in indices]
    if len(modules) == 1:
        return modules[0], modules, indices
    held = [layer for s in indices for layer in layers[s]]
    part = StageModule(model, held, 0 in indices, stages - 1 in indices)
    return part, modules, indices


class Pipeline:
    """A rank's stages and the schedule that runs them; `step` is one optimizer step and
    `validation_losses` the validation loss, as `step.optimizer_step` and
    `validation.validation_loss` are without stages. `modules` are the stages as run:
    wrapped in DDP or sharded by FSDP2."""

    def __init__(
        self,
        part: StageModule,
        modules: list[nn.Module],
        indices: list[int],
        mesh,
        schedule: str,
        device: torch.device,
        autocast=None,
    ):
        self.part = part
        self.modules = modules
        self.indices = indices
        self.schedule_name = schedule
        self.device = device
        self.pp_group = mesh.get_group("pp")
        self.pp_size = mesh.size(0)
        self.num_stages = self.pp_size * PP_STAGES_PER_RANK[schedule]
        self.has_first = 0 in indices
        self.has_last = self.num_stages - 1 in indices
        self.schedule = None
        for module in self._plain_modules():
            module.autocast = autocast
        # The first and the last stage of each (dp, tp) position sum the tied head's
        # gradients; for two pipeline ranks that pair is the pipeline group itself.
        self.tie_group = None
        if part.config.tie_embeddings:
            ranks = mesh.mesh  # (pp, dp, tp) global ranks
            if self.pp_size == 2:
                self.tie_group = self.pp_group
            else:
                pairs = [
                    [int(ranks[0, d, t]), int(ranks[-1, d, t])]
                    for d in range(ranks.shape[1])
                    for t in range(ranks.shape[2])
                ]
                self.tie_group, _ = dist.new_subgroups_by_enumeration(pairs)

    def _plain_modules(self) -> list[StageModule]:
        return [getattr(m, "module", m) for m in self.modules]  # DDP wraps in .module

    def _build_schedule(self, batch_size: int, seq_len: int, count: int) -> None:
        """The PipelineStages and the schedule, for micro-batches of (batch_size, seq_len):
        shapes are given, so no stage runs a trial forward to infer them."""
        from torch.distributed.pipelining import (
            PipelineStage,
            Schedule1F1B,
            ScheduleGPipe,
            ScheduleInterleaved1F1B,
        )

        # requires_grad marks what carries a gradient back (the residual stream does).
        width = self.part.config.n_embd
        hidden = torch.empty(batch_size, seq_len, width, device="meta", requires_grad=True)
        tokens = torch.empty(batch_size, seq_len, dtype=torch.long, device="meta")
        loss = torch.empty((), device="meta", requires_grad=True)
        stages = [
            PipelineStage(
                module,
                index,
                self.num_stages,
                self.device,
                input_args=tokens if index == 0 else hidden,
                output_args=loss if index == self.num_stages - 1 else hidden,
                group=self.pp_group,
            )
            for module, index in zip(self.modules, self.indices, strict=True)
        ]
        # The last stage's forward returns the loss itself (the head and the chunked loss
        # live inside the stage, where FSDP2 has its weights gathered).
        loss_fn = _stage_loss
        if self.schedule_name == "interleaved1f1b":
            self.schedule = ScheduleInterleaved1F1B(stages, count, loss_fn=loss_fn)
        else:
            kind = ScheduleGPipe if self.schedule_name == "gpipe" else Schedule1F1B
            self.schedule = kind(stages[0], count, loss_fn=loss_fn)

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        micro_batches: list,
        lr: float,
        grad_clip: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over `micro_batches` (this replica's, as dicts or (input_ids,
        labels); every rank of the pipeline passes the same): (the mean loss, the global
        gradient norm before clipping), the same on every rank of the replica."""
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro_batches = [
            b if isinstance(b, dict) else {"input_ids": b[0], "labels": b[1]} for b in micro_batches
        ]
        input_ids = torch.cat([b["input_ids"] for b in micro_batches])
        labels = torch.cat([b["labels"] for b in micro_batches])
        if self.schedule is None:
            self._build_schedule(*micro_batches[0]["input_ids"].shape, len(micro_batches))
        args = (input_ids,) if self.has_first else ()
        losses: list[torch.Tensor] = []
        if self.has_last:
            self.schedule.step(
                *args, labels=labels, target=labels, losses=losses, return_outputs=False
            )
            loss = torch.stack([x.detach().float() for x in losses]).mean()
        else:
            self.schedule.step(*args, return_outputs=False)
            loss = torch.zeros((), device=self.device)
        dist.all_reduce(loss, group=self.pp_group)  # only the last stage's is not zero
        self._sum_tied_gradients()
        norm = self._clip(grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss, norm

    def _tied(self) -> torch.Tensor | None:
        """This rank's copy of the tied embedding (as registered: a DTensor under TP and
        FSDP2), when it holds the first or the last stage of a tied model."""
        if self.tie_group is None or not (self.has_first or self.has_last):
            return None
        return self.part.wte._parameters["weight"]

    def _sum_tied_gradients(self) -> None:
        tied = self._tied()
        if tied is None or tied.grad is None:
            return
        grad = tied.grad
        local = grad.to_local() if hasattr(grad, "to_local") else grad
        dist.all_reduce(local, group=self.tie_group)

    def _clip(self, grad_clip: float) -> torch.Tensor:
        """The gradient norm over every stage, each parameter once; clips to `grad_clip`."""
        from codekiln.train.parallel import total_norm

        params = [p for p in self.part.parameters() if p.grad is not None]
        # The last stage's copy of a tied embedding is the first stage's parameter again.
        copy = self._tied() if self.has_last and not self.has_first else None
        grads = [p.grad for p in params if p is not copy]
        if grads:
            norm = total_norm(torch.nn.utils.get_total_norm(grads, 2.0)).float()
        else:
            norm = torch.zeros((), device=self.device)
        squared = norm.square()
        dist.all_reduce(squared, group=self.pp_group)
        norm = squared.sqrt()
        torch.nn.utils.clip_grads_with_norm_(
            params, grad_clip if grad_clip > 0 else float("inf"), norm
        )
        return norm

    @torch.no_grad()
    def validation_losses(
        self, batches: list[dict[str, torch.Tensor]], sizes: torch.Tensor | None
    ) -> tuple[float, float | None]:
        """(mean loss in nats, bits per byte or None) on `batches`, forward only through
        the stages; the last stage's sums are reduced over every rank (as
        `validation.validation_loss`)."""
        from codekiln.train.parallel import all_reduce
        from codekiln.train.validation import add_batch_sums, loss_and_bpb

        # Unwrapped from DDP, which has nothing to do forward only; FSDP2's modules are
        # the stages themselves and gather their weights as they run.
        modules = self._plain_modules()
        by_index = dict(zip(self.indices, modules, strict=True))
        was_training = self.part.training
        for module in (self.part, *modules):
            module.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # nats, targets, ...
        width = self.part.config.n_embd
        for batch in batches:
            input_ids, labels = batch["input_ids"], batch["labels"]
            x = None
            for index in range(self.num_stages):
                if index not in by_index:
                    continue
                if index > 0:
                    x = torch.empty(*input_ids.shape, width, device=self.device)
                    dist.recv(x, group_src=(index - 1) % self.pp_size, group=self.pp_group)
                x = by_index[index](input_ids if index == 0 else x)
                if index < self.num_stages - 1:
                    following = (index + 1) % self.pp_size  # the next stage's rank
                    dist.send(x.contiguous(), group_dst=following, group=self.pp_group)
            if self.has_last:
                add_batch_sums(sums, x, labels, sizes)
        all_reduce(sums)
        for module in (self.part, *modules):
            module.train(was_training)
        return loss_and_bpb(sums, sizes)


def _stage_loss(loss: torch.Tensor, _labels: torch.Tensor) -> torch.Tensor:
    """The schedule's loss function: the last stage already returns the loss."""
    return loss
