"""`DecodeStep`: one new token per row through a CodeGPT with a KV cache, in fewer calls.

Decoding a token of a small model is a few hundred small operations, and on a CPU the
Python around each (nn.Module calls, views, the cache's slicing) costs as much as the int8
matrix products themselves. This step computes what `CodeGPT.forward` computes for
(B, 1) input ids in eval mode, with the same operations in the same order (so float32
logits are bitwise the same), but reads every block's weights from a list built once and
calls the kernels directly: an int8 layer (codekiln.generate.int8) becomes one call to
fbgemm's operator, a float one `F.linear`.

Both decode loops use it: `CodekilnBackend`'s (a `KVCache`) and the server's running batch
(a `RaggedKVCache` with per-row positions and a (B, 1, 1, S) mask).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codekiln.errors import UserError
from codekiln.generate.int8 import REDUCE_RANGE, Int8Linear, _linear_dynamic
from codekiln.model.gpt import CodeGPT, apply_rotary, rotary_tables

Linear = tuple[Callable[..., Tensor], tuple]  # fn(x, *args) computes the layer


class DecodeStep:
    """`step(input_ids, cache, position_ids=None, attn_mask=None)` -> float32 logits (B, V)
    for (B, 1) input ids, as `model(input_ids, kv_cache=cache, position_ids=...,
    attn_mask=...)[0][:, -1]`.

    The weights are read when the step is built: the Parameter objects, so in-place
    updates are seen, but swapped modules are not (build a new step).
    """

    def __init__(self, model: CodeGPT) -> None:
        config = model.config
        self.model = model
        self.n_positions = config.n_positions
        self.window = config.sliding_window
        self.rotary = model.wpe is None
        self.head_dim = config.head_dim
        self.rope_theta = config.rope_theta
        self.shape = (config.n_embd,)
        self.eps = config.layer_norm_epsilon
        self.wte = model.wte.weight
        self.wpe = None if model.wpe is None else model.wpe.weight
        self.gelu = "tanh" if config.activation == "gelu_tanh" else "none"
        self.layers = []
        for block in model.blocks:
            attn = block.attn
            self.layers.append(
                (
                    block.ln_1.weight,
                    block.ln_1.bias,
                    _linear(attn.c_attn),
                    _linear(attn.c_proj),
                    block.ln_2.weight,
                    block.ln_2.bias,
                    _linear(block.mlp.c_fc),
                    _linear(block.mlp.c_proj),
                    attn.n_head,
                    attn.n_kv_heads,
                )
            )
        self.ln_f = (model.ln_f.weight, model.ln_f.bias)
        head = model.output_head
        self.head = (F.linear, (model.head_weight,)) if head is None else _linear(head)

    def __call__(
        self,
        input_ids: Tensor,
        cache,
        position_ids: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        B = input_ids.shape[0]
        past = cache.length
        if position_ids is None and self.window is not None and past + 1 > self.window:
            # A sliding window cuts the keys with a mask that forward builds (rare: such
            # models are long-context ones); the lean path is for everything else.
            logits, _ = self.model(input_ids, kv_cache=cache)
            return logits[:, -1]
        last = int(position_ids.max()) + 1 if position_ids is not None else past + 1
        if last > self.n_positions:
            raise UserError(
                f"positions up to {last - 1} exceed the model's context of "
                f"{self.n_positions} tokens: shorten the input"
            )
        x = F.embedding(input_ids, self.wte)  # (B, 1, C)
        if x.dtype != self.ln_f[0].dtype:
            x = x.to(self.ln_f[0].dtype)
        rope = None
        if not self.rotary:
            if position_ids is None:
                x = x + self.wpe.narrow(0, past, 1)
            else:
                x = x + F.embedding(position_ids, self.wpe)
        else:
            positions = position_ids
            if positions is None:
                positions = torch.arange(past, past + 1, device=input_ids.device)
            rope = rotary_tables(positions, self.head_dim, self.rope_theta)
        shape, eps, hd = self.shape, self.eps, self.head_dim
        for layer, (w1, b1, qkv, proj, w2, b2, fc, out, H, KV) in enumerate(self.layers):
            h = torch.layer_norm(x, shape, w1, b1, eps)  # F.layer_norm's kernel, no wrapper
            h = qkv[0](h, *qkv[1])  # (B, 1, H * hd + 2 * KV * hd)
            q, k, v = h.split_with_sizes((H * hd, KV * hd, KV * hd), dim=-1)
            k = k.view(B, KV, 1, hd)
            v = v.view(B, KV, 1, hd)
            if rope is not None:
                q = apply_rotary(q.view(B, H, 1, hd), *rope)
                k = apply_rotary(k, *rope)
            k, v = cache.update(layer, k, v)  # (B, KV, S, hd)
            S = k.shape[2]
            # forward's one-query attention (gpt._one_query_attention) as batched matrix
            # products over B * KV groups of H / KV query heads: the same kernel calls.
            q = q.reshape(B * KV, H // KV, hd)
            scores = torch.bmm(q, k.reshape(B * KV, S, hd).transpose(1, 2)) * hd**-0.5
            if attn_mask is not None:  # (B, 1, 1, S)
                scores = scores.view(B, KV, H // KV, S).masked_fill(~attn_mask, float("-inf"))
            if scores.dtype == torch.float32:
                weights = torch.softmax(scores, dim=-1)
            else:
                weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
            weights = weights.reshape(B * KV, H // KV, S)
            h = torch.bmm(weights, v.reshape(B * KV, S, hd)).view(B, 1, H * hd)
            x = x + proj[0](h, *proj[1])
            h = torch.layer_norm(x, shape, w2, b2, eps)
            h = F.gelu(fc[0](h, *fc[1]), approximate=self.gelu)
            x = x + out[0](h, *out[1])
        x = F.layer_norm(x, shape, *self.ln_f, eps)
        logits = self.head[0](x, *self.head[1])  # (B, 1, V)
        return logits.float()[:, -1]


def _linear(module: nn.Module) -> Linear:
    """The kernel and arguments that compute `module(x)` as fn(x, *args)."""
    if type(module) is nn.Linear:
        return F.linear, (module.weight, module.bias)
    if type(module) is Int8Linear:
        return _linear_dynamic, (module._packed, REDUCE_RANGE)
    return module, ()
