"""Cross-time Replay: pick, among the Reasoner's skill sets of every round, the one that balances
easy and hard probes.

Ctx2Skill (Si et al., 2026, arXiv 2604.27660, Sec. 3.3): self-play alone can collapse, the
Challenger drifting to ever more extreme tasks and the Reasoner's skills over-specialising on them.
Each round leaves representative cases: *easy probes* (tasks the Judge passed) and *hard probes*
(tasks it failed). Every skill set ``S_j`` so far is replayed on all probes, and the selected set is

    j* = argmax_j  ( pass_easy(S_j) + pass_hard(S_j) ) / 2           (balanced pass rate)

with ties going to the later set. The guard is *used* in a round when ``j*`` is not the latest
set. Pass rates are the Judge's verdicts (the loop never sees the exact verifier). The equal
weighting of the two rates is this implementation's reading of "best balance"; the paper's
public code was not reachable here (see :mod:`selfprm.selfplay.ctx2skill`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ReplayScore:
    """One skill set's replay: pass rates on the easy and the hard probes."""

    easy: float
    hard: float

    @property
    def balanced(self) -> float:
        return 0.5 * (self.easy + self.hard)


def pass_rate(verdicts: Sequence[bool]) -> float:
    """Share of passes; an empty probe set counts as 0.5 (no evidence either way)."""
    return sum(verdicts) / len(verdicts) if verdicts else 0.5


def select_balanced(scores: Sequence[ReplayScore]) -> int:
    """``j*`` of the module docstring (the latest among equals)."""
    if not scores:
        raise ValueError("replay needs at least one skill set")
    best = max(s.balanced for s in scores)
    return max(j for j, s in enumerate(scores) if s.balanced >= best - 1e-12)
