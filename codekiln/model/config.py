"""The model's shape: one dataclass, the presets BigCode trained, and analytic counts.

Nothing here imports torch, so configs can be read, validated and sized without it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from codekiln.errors import UserError

POSITIONS = ("learned", "rotary")
# The MLP's GELU: "gelu_tanh", the tanh approximation (StarCoder, StarCoder2), or "gelu", exact.
ACTIVATIONS = ("gelu_tanh", "gelu")


@dataclass
class ModelConfig:
    """A StarCoder-style decoder. Defaults are tiny_starcoder_py's widths at GPT-2 small's depth.

    >>> config = ModelConfig(n_embd=256, n_head=4)
    >>> config.head_dim, config.inner_dim, config.kv_dim
    (64, 1024, 64)
    """

    vocab_size: int = 49152
    n_positions: int = 8192  # context length
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_kv_heads: int = 1  # 1: multi-query (StarCoder); n_head: multi-head; else grouped-query
    n_inner: int | None = None  # None -> 4 * n_embd
    activation: str = "gelu_tanh"  # "gelu_tanh" (StarCoder, StarCoder2) | "gelu" (exact, erf)
    position: str = "learned"  # "learned" (StarCoder) | "rotary" (StarCoder2)
    rope_theta: float = 10000.0
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # on the residual branches (attention and MLP outputs)
    attn_dropout: float | None = None  # on the attention weights; None -> dropout
    embd_dropout: float | None = None  # on the embeddings; None -> dropout
    init_std: float | None = None  # None -> 1/sqrt(n_embd), as BigCode trained
    # Attention to the last sliding_window positions only (StarCoder2: 4,096 of a 16,384
    # context); None: every earlier position.
    sliding_window: int | None = None
    tie_embeddings: bool = True  # the output projection is the token embedding
    bias: bool = True  # biases on the linear layers (StarCoder2's use_bias)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_kv_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise UserError(
                f"model config: n_embd {self.n_embd} must be divisible by n_head {self.n_head} "
                "(each head gets n_embd / n_head channels)"
            )
        if self.n_kv_heads > self.n_head or self.n_head % self.n_kv_heads:
            raise UserError(
                f"model config: n_kv_heads {self.n_kv_heads} must divide n_head {self.n_head} "
                "(1 for multi-query attention, n_head for multi-head)"
            )
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner < 1):
            raise UserError(
                f"model config: n_inner must be a positive integer or None (4 * n_embd), "
                f"got {self.n_inner!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise UserError(
                f"model config: activation must be one of {', '.join(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if self.position not in POSITIONS:
            raise UserError(
                f"model config: position must be one of {', '.join(POSITIONS)}, "
                f"got {self.position!r}"
            )
        if self.position == "rotary" and self.head_dim % 2:
            raise UserError(
                f"model config: rotary positions need an even head size, got "
                f"n_embd / n_head = {self.head_dim}"
            )
        if not self.rope_theta > 0:
            raise UserError(f"model config: rope_theta must be positive, got {self.rope_theta}")
        if not self.layer_norm_epsilon > 0:
            raise UserError(
                f"model config: layer_norm_epsilon must be positive, got {self.layer_norm_epsilon}"
            )
        for name in ("dropout", "attn_dropout", "embd_dropout"):
            value = getattr(self, name)
            if value is None and name != "dropout":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise UserError(f"model config: {name} must be in [0, 1), got {value!r}")
        if self.sliding_window is not None and (
            isinstance(self.sliding_window, bool)
            or not isinstance(self.sliding_window, int)
            or self.sliding_window < 1
        ):
            raise UserError(
                "model config: sliding_window must be a positive number of positions or None "
                f"(attend to the whole context), got {self.sliding_window!r}"
            )
        for name in ("tie_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"model config: {name} must be true or false")
        if self.init_std is not None and not self.init_std > 0:
            raise UserError(
                f"model config: init_std must be positive or None (1/sqrt(n_embd)), "
                f"got {self.init_std}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_dim(self) -> int:
        """Width of the keys (and of the values): n_kv_heads heads of head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def attention_dropout(self) -> float:
        return self.dropout if self.attn_dropout is None else self.attn_dropout

    @property
    def embedding_dropout(self) -> float:
        return self.dropout if self.embd_dropout is None else self.embd_dropout

    @property
    def std(self) -> float:
        """The initialisation std: init_std, or 1/sqrt(n_embd) (Megatron's 0.01275 for 15B)."""
        return self.init_std if self.init_std is not None else 1 / math.sqrt(self.n_embd)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Shapes from the released configs (bigcode/tiny_starcoder_py, starcoderbase-1b, starcoder):
# all multi-query, learned positions, 8192 tokens of context, 49,152-token vocabulary.
PRESETS: dict[str, ModelConfig] = {
    # The CPU demo: 256 wide with 4 heads of 64 (StarCoder's smaller models' head size), four
    # layers, and the 8,192-token vocabulary `codekiln run` trains; 512 tokens of context keep
    # attention cheap on a laptop. About 5M parameters, 40% of them the embedding.
    "tiny": ModelConfig(vocab_size=8192, n_positions=512, n_embd=256, n_layer=4, n_head=4),
    "small": ModelConfig(n_embd=768, n_layer=20, n_head=12),
    "1b": ModelConfig(n_embd=2048, n_layer=24, n_head=16),
    "15b": ModelConfig(n_embd=6144, n_layer=40, n_head=48),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset's config, with fields replaced (and validated again).

    >>> preset("tiny", position="rotary", n_kv_heads=2).position
    'rotary'
    """
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(
            f"unknown model setting(s) {', '.join(unknown)}; settings: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(PRESETS[name], **overrides)


def num_parameters(config: ModelConfig) -> int:
    """Parameters of CodeGPT(config); a tied input/output embedding counts once.

    Per block: two LayerNorms (2C each), the fused q/k/v projection C x (C + 2 kv_dim) and
    the attention output C x C, the MLP C x I and I x C, each linear with a bias unless
    `bias` is off. An untied output head adds V x C.

    >>> num_parameters(PRESETS["small"])  # tiny_starcoder_py's 164M
    164144128
    """
    c, i, kv = config.n_embd, config.inner_dim, config.kv_dim
    b = 1 if config.bias else 0
    qkv = c * (c + 2 * kv) + b * (c + 2 * kv)
    attn_out = c * c + b * c
    mlp = (c * i + b * i) + (i * c + b * c)
    block = 2 * (2 * c) + qkv + attn_out + mlp
    embeddings = config.vocab_size * c * (1 if config.tie_embeddings else 2)
    if config.position == "learned":
        embeddings += config.n_positions * c
    return embeddings + config.n_layer * block + 2 * c


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) at context length seq_len, for MFU.

        flops = 6 * N + 12 * n_layer * n_embd * seq_len

    N is num_parameters less the learned position table (a lookup, no multiplies); the tied
    embedding stays in N because the output projection is a real V x C matmul. 6N counts a
    multiply-add (2) for the forward and twice that for the backward; 12 * L * C * T is the
    same for the attention scores (Q K^T) and the weighted sum over values, counted over the
    full T x T square as PaLM's MFU does, although causal kernels skip half of it (and a
    sliding window more).

    >>> flops_per_token(PRESETS["tiny"], 512) == 6 * 4_861_952 + 12 * 4 * 256 * 512
    True
    """
    n = num_parameters(config)
    if config.position == "learned":
        n -= config.n_positions * config.n_embd
    if not config.tie_embeddings:  # the input embedding is a lookup; the head is counted
        n -= config.vocab_size * config.n_embd
    return float(6 * n + 12 * config.n_layer * config.n_embd * seq_len)
