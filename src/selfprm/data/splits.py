"""Splitting by problem, so no problem is in both the training and the evaluation data.

ProcessBench's gsm8k split holds GSM8K test problems — the same ones as GSM8K's example model
solutions — so a split by record would leak; every split here goes by :func:`problem_key`.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from selfprm.data.records import problem_key
from selfprm.types import Problem, Trajectory


def key_of(item: Trajectory | Problem) -> str:
    problem = item.problem if isinstance(item, Trajectory) else item
    return problem.meta.get("problem_key") or problem_key(problem.prompt)


def in_fold(key: str, fraction: float, seed: int) -> bool:
    """A deterministic coin per problem: True for about ``fraction`` of keys."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def split_by_problem(items: Sequence[Trajectory], fraction: float, seed: int = 0) -> tuple[list[Trajectory], list[Trajectory]]:
    """``(held, rest)``: about ``fraction`` of the *problems* (with all their solutions) in ``held``."""
    held, rest = [], []
    for t in items:
        (held if in_fold(key_of(t), fraction, seed) else rest).append(t)
    return held, rest


def exclude_problems(items: Sequence[Trajectory], keys: Iterable[str]) -> list[Trajectory]:
    """``items`` less those whose problem is among ``keys``."""
    ban = set(keys)
    return [t for t in items if key_of(t) not in ban]
