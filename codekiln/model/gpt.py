"""CodeGPT: StarCoder's decoder (GPTBigCode) and its rotary variant (StarCoder2), one device.

Pre-LayerNorm blocks (x + attn(ln_1(x)), then x + mlp(ln_2(x))), a final ln_f, and an output
projection that is the token embedding itself. Attention uses one fused q/k/v projection laid
out [Q | K | V] with n_kv_heads key/value heads (one under multi-query attention) and runs
through `scaled_dot_product_attention`, which is FlashAttention on a GPU. Parallelism,
compilation and activation checkpointing are applied from `codekiln.train`.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig
from codekiln.model.loss import linear_cross_entropy


class KVCache:
    """The keys and values of the tokens seen so far, per layer, for incremental decoding.

    Each layer holds (B, n_kv_heads, S, head_dim) keys and values: under multi-query attention
    that is one head, n_head times less memory than multi-head attention needs. With a
    `capacity` the storage is allocated once and decoding writes in place; without one it
    grows by doubling, so decoding N tokens one by one copies O(N) in all. `expand` copies a
    one-row cache (a prompt) to n rows (its samples); `keep` drops rows (finished samples).
    For inference only.
    """

    def __init__(self, n_layer: int, capacity: int | None = None):
        self.capacity = capacity
        self._keys: list[Tensor | None] = [None] * n_layer
        self._values: list[Tensor | None] = [None] * n_layer
        self._lengths = [0] * n_layer

    @property
    def length(self) -> int:
        """Tokens cached. The model fills layers in order, so layer 0 says it."""
        return self._lengths[0]

    def update(self, layer: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Append (B, n_kv_heads, T, head_dim) keys and values; return all of the layer's."""
        start = self._lengths[layer]
        end = start + keys.shape[2]
        cached_k, cached_v = self._keys[layer], self._values[layer]
        if cached_k is None or end > cached_k.shape[2]:
            if self.capacity is not None and end > self.capacity:
                raise ValueError(f"a KV cache of {self.capacity} tokens cannot hold {end}")
            capacity = self.capacity or max(end, 2 * start, 16)
            grown_k = keys.new_empty(*keys.shape[:2], capacity, keys.shape[3])
            grown_v = values.new_empty(*values.shape[:2], capacity, values.shape[3])
            if cached_k is not None:
                grown_k[:, :, :start] = cached_k[:, :, :start]
                grown_v[:, :, :start] = cached_v[:, :, :start]
            cached_k, cached_v = self._keys[layer], self._values[layer] = grown_k, grown_v
        # narrow, not slicing: a decode step makes two of these calls a layer, and
        # Python's indexing costs several times more than the copy itself.
        cached_k.narrow(2, start, end - start).copy_(keys)
        cached_v.narrow(2, start, end - start).copy_(values)
        self._lengths[layer] = end
        return cached_k.narrow(2, 0, end), cached_v.narrow(2, 0, end)

    def get(self, layer: int) -> tuple[Tensor, Tensor]:
        """The layer's cached keys and values, (B, n_kv_heads, S, head_dim) each."""
        end = self._lengths[layer]
        return self._keys[layer][:, :, :end], self._values[layer][:, :, :end]

    def crop(self, length: int) -> None:
        """Forget every token from position `length` on (e.g. to retry from a prefix)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of {self.length} tokens to {length}")
        self._lengths = [min(n, length) for n in self._lengths]

    def expand(self, rows: int) -> None:
        """Copy the cache's single row to `rows` rows."""
        self._apply(lambda t: t.expand(rows, -1, -1, -1).contiguous())

    def keep(self, rows: Tensor) -> None:
        """Keep only the given rows (int64 indices), in that order."""
        self._apply(lambda t: t.index_select(0, rows))

    def _apply(self, fn) -> None:
        self._keys = [None if t is None else fn(t) for t in self._keys]
        self._values = [None if t is None else fn(t) for t in self._values]


def rotary_tables(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin, (T, head_dim) each for (T,) positions or (B, 1, T, head_dim) for (B, T)
    ones, for rotating pairs (i, i + head_dim/2) of channels.

    The half-split pairing (not even/odd) is GPT-NeoX's, which StarCoder2 uses. Angles are
    computed in float32 whatever the autocast dtype: bf16 positions would collide.
    """
    inv_freq = 1.0 / theta ** (
        torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.float()[..., None] * inv_freq  # (..., T, head_dim/2)
    angles = torch.cat((angles, angles), dim=-1)  # (..., T, head_dim)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B, 1, T, head_dim): one table per row, shared by heads
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, T, head_dim) by the angles of its positions."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout as a call only when it does something: decoding a token makes ~10 fewer
    calls per step than with nn.Dropout modules."""
    return F.dropout(x, p, training=True) if p and training else x


_NORMS = ("ln_1", "ln_2", "ln_f")


def initial_value(config: ModelConfig, name: str, shape: tuple[int, ...], seed: int) -> Tensor:
    """The float32 initial value of CodeGPT's parameter `name`: normal(0, std) weights and
    embeddings, zero biases, unit LayerNorm scales; the two projections that write into the
    residual stream (attn and MLP c_proj) get std / sqrt(2 * n_layer), so the stream's
    variance does not grow with depth.

    Each parameter's values come from a generator of its own, seeded by (seed, name), not from
    one stream through the whole model: so a rank that holds a shard of a parameter can make
    that parameter alone (train/materialise.py) and keep the rows or columns it holds, and
    the sharded model starts from exactly the weights one process would.

    >>> config = ModelConfig(n_embd=8, n_head=2, n_layer=1, vocab_size=16)
    >>> a = initial_value(config, "blocks.0.mlp.c_fc.weight", (32, 8), seed=1)
    >>> torch.equal(a, initial_value(config, "blocks.0.mlp.c_fc.weight", (32, 8), seed=1))
    True
    >>> initial_value(config, "ln_f.weight", (8,), seed=1).tolist() == [1.0] * 8
    True
    """
    module, _, leaf = name.rpartition(".")
    if module.rpartition(".")[2] in _NORMS:
        fill = 1.0 if leaf == "weight" else 0.0
        return torch.full(shape, fill, dtype=torch.float32)
    if leaf == "bias":
        return torch.zeros(shape, dtype=torch.float32)
    std = config.std
    if module.endswith("c_proj"):
        std = std / math.sqrt(2 * config.n_layer)
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    return torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.attn_dropout = config.attention_dropout
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * config.kv_dim, config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, config.bias)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None,
        kv_cache: KVCache | None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """mask: True where a query may see a key, (T, S) or (B, 1, T, S); None is plain
        causal attention (see `attention_mask`)."""
        B, T, _ = x.shape
        # Widths from the head counts, not from C: under tensor parallelism a rank holds
        # n_head / tp query heads and its c_attn yields only theirs (train/tensor_parallel.py).
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_heads * self.head_dim
        q, k, v = self.c_attn(x).split((q_dim, kv_dim, kv_dim), dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, KV, T, hd)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, KV, T, hd)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)  # (B, KV, S, hd), S = past + T
        if T == 1 and not self.training and (mask is None or mask.dim() == 4):
            # One new token per row (decoding), seeing every cached key or, in a running
            # batch, those its row's (B, 1, 1, S) mask allows.
            return self.c_proj(_one_query_attention(q, k, v, mask))  # (B, 1, H * hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=mask is None and k.shape[2] == T and T > 1,
            enable_gqa=self.n_kv_heads != self.n_head,
        )  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, q_dim)
        return _dropout(self.c_proj(y), self.dropout, self.training)


def _one_query_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(hd)) v for one new token per row: (B, H, 1, hd) queries,
    (B, KV, S, hd) keys and values, and a bool (B, 1, 1, S) mask of the keys each row sees
    (None: all of them) -> (B, 1, H * hd).

    What SDPA computes, in two batched matmuls: each key/value head serves its group of
    H / KV query heads as the rows of one matrix, so nothing is repeated per head. Decoding
    a token runs this once a layer, where SDPA's kernel costs several times more to start.
    """
    B, H, _, hd = q.shape
    KV = k.shape[1]
    q = q.reshape(B, KV, H // KV, hd)  # heads h of group g = h // (H / KV), as enable_gqa
    scores = (q @ k.transpose(-1, -2)) * hd**-0.5  # (B, KV, H / KV, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return (weights @ v).reshape(B, 1, H * hd)


def attention_mask(
    T: int,
    past: int,
    window: int | None,
    segment_ids: Tensor | None,
    device: torch.device,
) -> Tensor | None:
    """Which keys each of T new queries sees, after `past` cached positions: a bool (T, S)
    mask with S = past + T, or (B, 1, T, T) with segments; None where plain causal attention
    (SDPA's is_causal, or one query that sees everything) is already right.

    Query i sits at position past + i and sees key j when j <= past + i, j > past + i -
    window under a sliding window (transformers' rule: the window counts the query itself),
    and, with segment_ids (packed sequences, no cache), only keys of its own segment.

    >>> attention_mask(3, 0, 2, None, torch.device("cpu")).int().tolist()
    [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    """
    S = past + T
    banded = window is not None and S > window
    if segment_ids is None and not banded and (past == 0 or T == 1):
        return None
    query = torch.arange(past, S, device=device)[:, None]  # (T, 1)
    key = torch.arange(S, device=device)[None, :]  # (1, S)
    mask = key <= query
    if banded:
        mask &= key > query - window
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
        mask = (mask & same)[:, None]  # (B, 1, T, T)
    return mask


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.inner_dim, config.bias)
        self.c_proj = nn.Linear(config.inner_dim, config.n_embd, config.bias)
        self.dropout = config.dropout
        # "gelu_tanh" is HF's "gelu_pytorch_tanh", the tanh approximation StarCoder and
        # StarCoder2 use; "gelu" is the exact (erf) GELU some BigCode checkpoints name.
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.c_fc(x), approximate=self.approximate)
        return _dropout(self.c_proj(h), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        kv_cache: KVCache | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, kv_cache, mask)
        return x + self.mlp(self.ln_2(x))


class CodeGPT(nn.Module):
    """The network. A tied output projection is `wte.weight` itself rather than a second
    module sharing it, so the tie survives meta-device construction, `to_empty` and FSDP
    sharding; an untied one (`tie_embeddings=False`) is `lm_head`. Build on the meta device
    and call `init_weights()` after `to_empty` to skip a CPU init.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = (
            nn.Embedding(config.n_positions, config.n_embd)
            if config.position == "learned"
            else None
        )
        self.dropout = config.embedding_dropout
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        )
        # Inference may swap in a module that computes the same logits as the head weight
        # (an int8 copy of it for CPU decoding, codekiln.generate.int8); training never sets it.
        self.output_head: nn.Module | None = None
        if not self.wte.weight.is_meta:  # on meta: to_empty, then init_weights or a load
            self.init_weights()

    @property
    def head_weight(self) -> Tensor:
        """The output projection, (V, C): the token embedding, or the untied head."""
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """Every parameter set to `initial_value(config, name, shape, seed)`; `seed` None
        draws one from torch's global generator, so `torch.manual_seed` still decides it."""
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        for name, param in self.named_parameters():
            param.copy_(initial_value(self.config, name, tuple(param.shape), seed))

    def layer_modules(self) -> list[nn.Module]:
        """The transformer blocks, in order: the units to shard and checkpoint."""
        return list(self.blocks)

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        kv_cache: KVCache | None = None,
        position_offset: int = 0,
        logits_to_keep: int = 0,
        segment_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(logits, None) without labels: logits (B, T, V) in float32. (None, loss) with them.

        labels are already shifted (labels[:, t] is the target after input_ids[:, t]); the
        loss is the mean cross-entropy over labels != -100 (0 when there are none). With a
        kv_cache, input_ids follow the cached tokens and positions continue after them;
        position_offset shifts every position further. logits_to_keep > 0 computes logits
        for the last that many positions only (a prompt's prefill needs one row, not T).

        Packed sequences (instruction tuning): segment_ids (B, T) keep attention inside each
        segment, and position_ids (B, T) give each token its position in its own segment.

        A running batch of sequences of different lengths (codekiln.serve.batching) passes
        position_ids (B, T), a cache that keeps each row's own length, and attn_mask: a bool
        (B, 1, T, S) of the keys each row's queries see (its own tokens, within the sliding
        window), in place of the mask computed from the cache's one length.
        """
        B, T = input_ids.shape
        past = kv_cache.length if kv_cache is not None else 0
        start = position_offset + past
        if position_ids is not None:
            last = int(position_ids.max()) + 1 if position_ids.numel() else 0
        else:
            last = start + T
        if last > self.config.n_positions:
            raise UserError(
                f"positions {start}..{last - 1} exceed the model's context of "
                f"{self.config.n_positions} tokens: shorten the input"
            )
        if segment_ids is not None and kv_cache is not None:
            raise ValueError("segment_ids are for packed training sequences, not a KV cache")
        x = self.wte(input_ids)  # (B, T, C)
        if x.dtype != self.ln_f.weight.dtype:
            # A frozen low-precision embedding (LoRA over a bf16 base) feeds a residual
            # stream in the norms' precision.
            x = x.to(self.ln_f.weight.dtype)
        rope = None
        if self.wpe is not None:
            if position_ids is not None:
                x = x + self.wpe(position_ids)
            else:
                x = x + self.wpe.weight[start : start + T]  # a slice: no index tensor per step
        else:
            if position_ids is None:
                positions = torch.arange(start, start + T, device=input_ids.device)  # (T,)
            else:
                positions = position_ids  # (B, T)
            rope = rotary_tables(positions, self.config.head_dim, self.config.rope_theta)
        if attn_mask is None:
            mask = attention_mask(T, past, self.config.sliding_window, segment_ids, x.device)
        else:
            mask = attn_mask
        x = _dropout(x, self.dropout, self.training)
        for block in self.blocks:
            x = block(x, rope, kv_cache, mask)
        if logits_to_keep and labels is None:
            x = x[:, -logits_to_keep:]
        x = self.ln_f(x)  # (B, T, C)
        if labels is None:
            head = self.output_head
            logits = F.linear(x, self.head_weight) if head is None else head(x)
            return logits.float(), None  # (B, T, V)
        # Training needs only the loss: it is computed chunk by chunk, and the (B, T, V)
        # logits, the largest activation of a small model, are never held at once.
        return None, linear_cross_entropy(x.flatten(0, 1), self.head_weight, labels.flatten())
