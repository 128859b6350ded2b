"""Int8 CPU decoding: `quantize_int8(model)` gives every linear layer of a CodeGPT, and its
output head, int8 weights.

The scheme is dynamic int8: weights are rounded once, symmetrically, per output channel
(scale = max |w| / 127 per row); each call rounds its input to 8 bits with a scale taken
from that input, multiplies in int8 with int32 sums (fbgemm's VNNI kernels on x86) and
scales the result back to float32. Decoding a small model is memory-bound, so reading a
quarter of the bytes is most of the win.

Measured on a Xeon with AVX-512 VNNI and AMX, 2 threads, the layer shapes of the `small`
preset: for one token (M = 1) fbgemm's dynamic int8 takes 39-63 us a block layer and 0.9 ms
for the 49,152-row head, against float32's 38-222 us and 5.9 ms. Weight-only int8
(`torch._weight_int8pack_mm`) is as fast on the block layers with bfloat16 activations
but 4.7x slower on the head, 14-30x slower with float32 activations, and 3-28x slower on a
128-token prompt; oneDNN's dynamic kernels take 1.4x fbgemm's time over a token's 81
layers. What limits one token is fbgemm itself: each call costs ~16 us however small the
layer (81 calls, 1.3 ms a token), and with weights streamed from memory rather than cache
the 768- and 896-row layers gain only ~1.1x from a second thread (the 3,072-row ones and
the head 1.6-1.9x), so at 1 thread a token costs ~1.1x CTranslate2's int8 and at 2 threads
1.2-1.4x. `torch._int_mm` (oneDNN, int8 x int8) streams no faster. bench/generate.py holds
the end-to-end figures.

The output head matters: CodeGPT's head is the tied token embedding (V x C), a quarter of
the `small` preset's weights, and it runs once per token like any layer. It gets an
`Int8Linear` of its own through `CodeGPT.output_head`; the float embedding stays for
looking tokens up.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from codekiln.errors import UserError

# Activations are rounded to 7 bits rather than 8 on CPUs without VNNI, as PyTorch's own
# dynamic quantization does for fbgemm: there, pairs of 8-bit products are added into 16
# bits, which full-range activations can overflow. VNNI adds into 32 bits, so 8 bits are
# safe, and they keep more of float32's greedy choices (measured by tests/test_engines.py).
REDUCE_RANGE = not getattr(torch.cpu, "_is_vnni_supported", lambda: False)()

# The C++ operator itself: calling it through torch.ops first walks the arguments in Python
# looking for fake script objects (for tracing), about 6 us a call, half a millisecond a
# token of the `small` preset. The public op where the private handle is gone.
_linear_dynamic = getattr(
    torch.ops.quantized.linear_dynamic.default, "_op", torch.ops.quantized.linear_dynamic
)


class Int8Linear(nn.Module):
    """y = x W^T + b with W held as int8 per output channel (see the module docstring).

    Takes float32 input of any leading shape, (..., in_features) -> (..., out_features).
    Inference only: the packed weights are not parameters and hold no gradient.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self._packed = _pack(weight.detach().float(), None if bias is None else bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        return _linear_dynamic(x, self._packed, REDUCE_RANGE)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: nn.Module) -> nn.Module:
    """The float32 CPU CodeGPT `model`, changed in place for int8 decoding: each nn.Linear
    becomes an `Int8Linear`, and the output head an `Int8Linear` of the head weight.

    An untied `lm_head` keeps its float weight (`head_weight` reads it) but no longer runs.
    """
    if model.wte.weight.device.type != "cpu" or model.wte.weight.dtype != torch.float32:
        raise ValueError("quantize_int8 takes a float32 model on the CPU")
    check_int8_support()
    linears = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) and child is not model.lm_head
    ]
    for parent, name, child in linears:
        setattr(parent, name, Int8Linear(child.weight, child.bias))
    model.output_head = Int8Linear(model.head_weight)
    return model.eval()


def check_int8_support() -> None:
    """UserError unless this PyTorch has fbgemm, the x86 kernels int8 decoding runs on."""
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines:
        raise UserError(
            "int8 decoding needs PyTorch's fbgemm kernels (x86 CPUs), which this build lacks "
            f"(it has: {', '.join(e for e in engines if e != 'none') or 'none'}): "
            "use --dtype float32 or bfloat16"
        )


def _pack(weight: Tensor, bias: Tensor | None):
    """fbgemm's packed form of int8 weights, each row with its own scale (zero point 0)."""
    scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    zero_point = torch.zeros(weight.shape[0], dtype=torch.long)
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        # PyTorch announces quantized tensors' removal; fbgemm's packing still takes one,
        # and the user can do nothing about the message.
        warnings.simplefilter("ignore")
        quantized = torch.quantize_per_channel(weight, scale, zero_point, 0, torch.qint8)
        try:
            # The packed object keeps the engine it was made for; linear_dynamic runs
            # whichever engine that is, so the global setting is restored at once.
            torch.backends.quantized.engine = "fbgemm"
            return torch.ops.quantized.linear_prepack(quantized, bias)
        finally:
            torch.backends.quantized.engine = previous
