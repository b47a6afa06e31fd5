"""Cross-fitting folds by problem, shared by every source that trains a model on what it labels
(``implicit``, the ``consensus`` verifier, ``mcts``'s critics): a model trained on folds other than
``k`` labels fold ``k`` only, so no trajectory is labelled by a model that saw its own outcome, and
all samples of a problem sit in one fold so none leaks through a sibling."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def assign_problem_folds(problem_ids: Sequence[str], n_folds: int, seed: int, who: str = "the models") -> dict[str, int]:
    """Each distinct problem's fold: problems shuffled (``seed``) and dealt round-robin."""
    if n_folds < 2:
        raise ValueError(f"cross-fitting needs n_folds >= 2, not {n_folds}")
    problems = list(dict.fromkeys(problem_ids))
    if len(problems) < n_folds:
        raise ValueError(
            f"{who} are cross-fitted over n_folds={n_folds} folds of problems, so a label() call needs at least "
            f"{n_folds} distinct problems; got {len(problems)}. Label more problems per call (a larger shard).")
    order = np.random.default_rng(seed).permutation(len(problems))
    return {problems[j]: r % n_folds for r, j in enumerate(order)}


def trajectory_folds(trajectories: Sequence, n_folds: int, seed: int, who: str = "the models") -> list[int]:
    """Each trajectory's fold: its problem's (:func:`assign_problem_folds`)."""
    fold_of = assign_problem_folds([t.problem.id for t in trajectories], n_folds, seed, who)
    return [fold_of[t.problem.id] for t in trajectories]
