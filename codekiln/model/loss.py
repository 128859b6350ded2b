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


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, labels: Tensor, chunk: int) -> Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = torch.promote_types(x.dtype, weight.dtype)
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        with torch.autocast(device, enabled=False):
            w = weight.to(dtype)  # (V, C)
            h = x.to(dtype)  # (N, C)
            valid = labels != IGNORE_INDEX  # (N,)
            count = valid.sum().clamp(min=1)
            total = torch.zeros((), dtype=torch.float32, device=x.device)
            grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device) if needs_grad else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                logits = (h[rows] @ w.t()).float()  # (n, V)
                target = labels[rows].clamp(min=0)
                keep = valid[rows]
                lse = torch.logsumexp(logits, dim=-1)  # (n,)
                picked = logits.gather(1, target[:, None]).squeeze(1)
                total += ((lse - picked) * keep).sum()
                if not needs_grad:
                    continue
                # d(mean loss)/d(logits) = (softmax - one_hot) / count on kept rows, else 0.
                grad = logits.sub_(lse[:, None]).exp_()
                grad.scatter_add_(1, target[:, None], -torch.ones_like(picked[:, None]))
                grad.mul_((keep / count).to(grad.dtype)[:, None])
                grad = grad.to(dtype)
                grad_x[rows] = grad @ w
                grad_w += (grad.t() @ h[rows]).float()
        if needs_grad:
            ctx.save_for_backward(grad_x, grad_w.to(weight.dtype))
        return total / count

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_output, grad_w * grad_output, None, None


def linear_cross_entropy(x: Tensor, weight: Tensor, labels: Tensor, chunk: int = 256) -> Tensor:
    """Mean cross-entropy of `x @ weight.T` against `labels` over labels != -100 (0 when
    none), without materialising all the logits.

    x is (N, C) hidden states, weight (V, C), labels (N,) already shifted.

    >>> x, w = torch.zeros(2, 3), torch.zeros(4, 3)  # uniform over 4 tokens: log 4 each
    >>> round(linear_cross_entropy(x, w, torch.tensor([1, -100])).item(), 4)
    1.3863
    """
    return _LinearCrossEntropy.apply(x, weight, labels, chunk)
