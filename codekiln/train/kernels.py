"""Which attention kernel a CUDA run gets, checked before training starts.

The model calls `F.scaled_dot_product_attention`, which picks FlashAttention on a GPU when it
can and otherwise falls back, silently, to the memory-efficient kernel or to the math kernel
(which materialises the (T, T) scores: at 8,192 tokens, gigabytes per layer and several times
slower). `flash_attention_problem` says why flash would not run: a mask the model must pass
(a sliding window shorter than the sequence, packed instruction pairs), or what SDPA itself
reports when it is asked for the flash kernel alone (`torch.nn.attention.sdpa_kernel`) on
tensors of the model's head counts, head_dim and compute dtype (e.g. float32, or a head_dim
over 256). On CPU there is no flash kernel to ask for: None.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from codekiln.model.config import ModelConfig


def mask_problem(config: ModelConfig, seq_len: int, packed: bool = False) -> str | None:
    """Why the model's attention takes an explicit mask at `seq_len` (flash takes none).

    >>> from codekiln.model.config import preset
    >>> mask_problem(preset("small"), 8192) is None
    True
    >>> mask_problem(preset("small", sliding_window=4096), 8192)
    'sliding_window 4096 < seq_len 8192 makes attention take a banded mask'
    """
    window = config.sliding_window
    if window is not None and seq_len > window:
        return f"sliding_window {window} < seq_len {seq_len} makes attention take a banded mask"
    if packed:
        return "packed instruction pairs attend through a block mask"
    return None


def flash_attention_problem(
    config: ModelConfig,
    seq_len: int,
    dtype: torch.dtype,
    device: torch.device,
    packed: bool = False,
) -> str | None:
    """Why SDPA's flash kernel will not run this model's training attention on `device`,
    in one line; None when it will, and on a device that is not CUDA."""
    if device.type != "cuda":
        return None
    masked = mask_problem(config, seq_len, packed)
    if masked is not None:
        return f"{masked}, which the flash kernel does not take"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    T = min(seq_len, 256)  # the kernel's constraints are on shapes and dtype, not length
    shape = (1, config.n_head, T, config.head_dim)
    q = torch.randn(shape, device=device, dtype=dtype)
    k, v = (torch.randn(1, config.n_kv_heads, T, config.head_dim, device=device, dtype=dtype),) * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, enable_gqa=config.n_kv_heads != config.n_head
                )
            return None
        except RuntimeError as error:
            # SDPA explains each refusal in a warning ("Flash attention requires ...").
            reasons = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message)]
            detail = "; ".join(reasons) or str(error).strip().splitlines()[0]
            name = str(dtype).removeprefix("torch.")
            return f"head_dim {config.head_dim}, {name}: {detail}"
