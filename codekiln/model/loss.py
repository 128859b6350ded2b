"""Cross-entropy of the output projection, computed in row chunks without the full logits.

The language-model head turns N = B x T hidden states into N x V logits, with V the
vocabulary (49,152 for StarCoder). Materialising them in float32, then their log-softmax
and its gradient, costs 3 x N x V x 4 bytes (2.4 GB for a 2 x 2,048-token micro-batch at
StarCoder's vocabulary) and, on a CPU, more time than the projection's matmul itself.

`linear_cross_entropy` never holds more than `chunk` rows of logits: for each chunk it
computes the logits, their log-sum-exp, the loss, and at once the gradient of the loss with
respect to the logits (softmax minus one-hot), which it folds straight into the gradients
of the hidden states and of the weight. The backward pass only scales those by the
incoming gradient. This is the "fused linear cross-entropy" of Liger-Kernel and of
Apple's Cut Cross-Entropy paper, written with plain PyTorch ops.

Precision: the matmuls run in the autocast dtype when autocast is on (bfloat16 on AMX CPUs
and GPUs), the softmax and the loss in float32, the weight gradient accumulates in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def chunk_rows(vocab_size: int, weight_grad: bool = True) -> int:
    """Rows of logits per chunk. Measured on a 2-core Sapphire Rapids (forward and backward,
    both precisions): small chunks keep the softmax passes in cache, and 256 rows was as
    fast as any size for an 8K vocabulary; at StarCoder's 49K, 512 rows gave the weight
    gradient's matmul (whose inner dimension is the chunk's rows) enough work to run ~20%
    faster in bfloat16. A frozen head has no weight gradient, so it takes the small chunks.

    >>> chunk_rows(49152), chunk_rows(8192), chunk_rows(49152, weight_grad=False)
    (512, 256, 256)
    """
    return 512 if weight_grad and vocab_size >= 32768 else 256


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, labels: Tensor, chunk: int) -> Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = torch.promote_types(x.dtype, weight.dtype)
        # A frozen head (LoRA, or a frozen embedding) needs no weight gradient: skipping it
        # saves a third of the head's work and a (V, C) float32 buffer.
        needs_x, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)  # (V, C)
            h = x.to(dtype)  # (N, C)
            valid = labels != IGNORE_INDEX  # (N,)
            count = valid.sum().clamp(min=1)
            total = torch.zeros((), dtype=torch.float32, device=x.device)
            grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device) if needs_x else None
            grad_w = None
            if needs_w:
                grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                logits = (h[rows] @ w.t()).float()  # (n, V)
                target = labels[rows].clamp(min=0)
                keep = valid[rows]
                # One fused pass for the log-probabilities (logsumexp, then subtracting and
                # exponentiating, would read and write the chunk three more times).
                logp = torch.log_softmax(logits, dim=-1)  # (n, V)
                del logits
                picked = logp.gather(1, target[:, None]).squeeze(1)  # (n,)
                total -= (picked * keep).sum()
                if not (needs_x or needs_w):
                    continue
                # d(mean loss)/d(logits) = (softmax - one_hot) / count on kept rows, else 0.
                grad = logp.exp_()
                grad.scatter_add_(1, target[:, None], -torch.ones_like(picked[:, None]))
                grad.mul_((keep / count).to(grad.dtype)[:, None])
                grad = grad.to(dtype)
                if needs_x:
                    grad_x[rows] = grad @ w
                if needs_w:
                    if dtype == torch.float32:
                        grad_w.addmm_(grad.t(), h[rows])  # in place: no (V, C) temporary
                    else:  # a bfloat16 product added into float32: no float32 temporary
                        grad_w.add_(grad.t() @ h[rows])
        ctx.save_for_backward(
            grad_x if needs_x else None,
            grad_w.to(weight.dtype) if needs_w else None,
        )
        ctx.used = False
        return total / count

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        # The gradients were computed in the forward pass and are scaled in place here, so
        # a second backward through the same graph (retain_graph) would scale them twice.
        if ctx.used:
            raise RuntimeError("linear_cross_entropy's backward can run only once")
        ctx.used = True
        grad_x, grad_w = ctx.saved_tensors
        if grad_x is not None:
            grad_x = grad_x.mul_(grad_output.to(grad_x.dtype))
        if grad_w is not None:
            grad_w = grad_w.mul_(grad_output.to(grad_w.dtype))
        return grad_x, grad_w, None, None


def linear_cross_entropy(
    x: Tensor, weight: Tensor, labels: Tensor, chunk: int | None = None
) -> Tensor:
    """Mean cross-entropy of `x @ weight.T` against `labels` over labels != -100 (0 when
    none), without materialising all the logits (`chunk` rows at a time; None: `chunk_rows`).

    x is (N, C) hidden states, weight (V, C), labels (N,) already shifted.

    >>> x, w = torch.zeros(2, 3), torch.zeros(4, 3)  # uniform over 4 tokens: log 4 each
    >>> round(linear_cross_entropy(x, w, torch.tensor([1, -100])).item(), 4)
    1.3863
    """
    if chunk is None:
        chunk = chunk_rows(weight.shape[0], weight.requires_grad)
    return _LinearCrossEntropy.apply(x, weight, labels, chunk)
