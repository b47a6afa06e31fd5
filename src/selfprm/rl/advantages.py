"""Group-relative advantages, pure functions shared by GRPO, Tree-GRPO and the ``tree`` label source.

GRPO (Shao et al. 2024, arXiv 2402.03300): ``Â_i = (r_i - mean_g r) / (std_g r + ε)`` within the
group ``g`` of rollouts of one prompt. Tree-GRPO (Ji et al. 2025, arXiv 2509.21240, eq. 8) sums two
such normalisations of a leaf's outcome reward, over the leaves of its own tree and over every
leaf of the problem:

    Â(l) = Â_intra(l) + Â_inter(l)

Which standard deviation: ``ddof=0`` (the default here) is the population std, what this package
has always used. ``ddof=1`` is what the public Tree-GRPO code runs — verl's
``compute_grpo_outcome_advantage`` (AMAP-ML/Tree-GRPO, ``verl/trainer/ppo/core_algos.py`` lines
111-155) takes ``torch.std``, whose default is the unbiased ``1/(n-1)`` estimate, and gives a group
of a single response mean 0 and std 1 (so its advantage is its reward). Tree-GRPO's policy
optimisation passes ``ddof=1``; callers that do not pass it keep the population std.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def group_normalise(rewards: Sequence[float], groups: Sequence[Any], eps: float = 1e-6,
                    ddof: int = 0) -> list[float]:
    """``(r - mean_g) / (std_g + eps)`` within each group ``g``; a group whose rewards are all
    equal gets 0.

    ``ddof`` is the std's delta degrees of freedom: 0 the population std, 1 the unbiased one
    (``torch.std``'s default, as the reference code), where a one-rollout group has no std and is
    given mean 0, std 1 as verl does (``core_algos.py`` lines 143-148).
    """
    r = np.asarray(rewards, dtype=float)
    out = np.zeros_like(r)
    keys = list(groups)
    for g in dict.fromkeys(keys):
        idx = np.array([i for i, k in enumerate(keys) if k == g])
        vals = r[idx]
        if ddof >= 1 and len(vals) <= ddof:
            out[idx] = vals / (1.0 + eps)
            continue
        std = vals.std(ddof=ddof)
        out[idx] = 0.0 if std < eps else (vals - vals.mean()) / (std + eps)
    return out.tolist()


def tree_advantages(rewards: Sequence[float], trees: Sequence[Any], problems: Sequence[Any],
                    eps: float = 1e-6, ddof: int = 0) -> list[float]:
    """Tree-GRPO's ``Â_intra + Â_inter`` of every leaf: ``trees[i]`` and ``problems[i]`` name the
    tree and the problem of leaf ``i`` (a group with no spread contributes 0). ``ddof=1`` is the
    reference's std (``verl/trainer/ppo/ray_trainer_ts.py`` lines 168-189: the ``tree`` estimator
    calls ``compute_grpo_outcome_advantage`` once by problem ``uid`` and once by ``tree_uid`` and
    adds them); the default 0 keeps the population std the ``tree`` label source was built on."""
    intra = group_normalise(rewards, list(zip(problems, trees)), eps, ddof)
    inter = group_normalise(rewards, list(problems), eps, ddof)
    return [a + b for a, b in zip(intra, inter)]
