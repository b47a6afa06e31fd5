"""Group-relative advantages, pure functions shared by GRPO, Tree-GRPO and the ``tree`` label source.

GRPO (Shao et al. 2024, arXiv 2402.03300): ``Â_i = (r_i - mean_g r) / (std_g r + ε)`` within the
group ``g`` of rollouts of one prompt. Tree-GRPO (Ji et al. 2025, arXiv 2509.21240, eq. 8) sums two
such normalisations of a leaf's outcome reward, over the leaves of its own tree and over every
leaf of the problem:

    Â(l) = Â_intra(l) + Â_inter(l)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def group_normalise(rewards: Sequence[float], groups: Sequence[Any], eps: float = 1e-6) -> list[float]:
    """``(r - mean_g) / (std_g + eps)`` within each group ``g`` (population std; a group whose
    rewards are all equal gets 0)."""
    r = np.asarray(rewards, dtype=float)
    out = np.zeros_like(r)
    keys = list(groups)
    for g in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == g])
        vals = r[idx]
        std = vals.std()
        out[idx] = 0.0 if std < eps else (vals - vals.mean()) / (std + eps)
    return out.tolist()


def tree_advantages(rewards: Sequence[float], trees: Sequence[Any], problems: Sequence[Any],
                    eps: float = 1e-6) -> list[float]:
    """Tree-GRPO's ``Â_intra + Â_inter`` of every leaf: ``trees[i]`` and ``problems[i]`` name the
    tree and the problem of leaf ``i`` (population std; a group with no spread contributes 0)."""
    intra = group_normalise(rewards, list(zip(problems, trees)), eps)
    inter = group_normalise(rewards, list(problems), eps)
    return [a + b for a, b in zip(intra, inter)]
