"""pass@k: the chance that at least one of k samples passes, estimated without bias from n.

Drawing k of a problem's n samples, c of which pass, misses every passing one with
probability C(n - c, k) / C(n, k); pass@k is one minus that, averaged over problems (Chen et
al. 2021, "Evaluating Large Language Models Trained on Code"). The product form below avoids
the huge binomials.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples of which c pass (k <= n).

    >>> round(pass_at_k(n=10, c=3, k=1), 4)
    0.3
    >>> round(pass_at_k(n=10, c=3, k=5), 4)  # 1 - C(7,5)/C(10,5) = 1 - 21/252
    0.9167
    >>> pass_at_k(n=5, c=0, k=5), pass_at_k(n=5, c=1, k=5)
    (0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_ks(counts: Sequence[tuple[int, int]], ks: Iterable[int] = KS) -> dict[str, float]:
    """Mean pass@k over problems given (n, c) each, for every k that every problem allows.

    >>> pass_at_ks([(2, 1), (2, 0)])
    {'pass@1': 0.25}
    """
    if not counts:
        return {}
    smallest = min(n for n, _ in counts)
    return {
        f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
        for k in ks
        if k <= smallest
    }
