"""``omega``: OmegaPRM's binary search for the first error, and its tree of MC estimates.

Luo et al., *Improve Mathematical Reasoning in Language Models by Automated Process Supervision*
(OmegaPRM), arXiv 2406.06592, §3.2-3.3.

**Binary search.** A rollout ``r = (x_1, ..., x_T)`` whose answer is wrong has a first error. The
Monte Carlo estimate of a prefix is the share of ``k`` completions from it that reach the gold
answer, ``MC(x_{1:m}) = Σ_j 1[a_j = a*] / k``. The search looks at the midpoint ``m``:

    MC(x_{1:m}) > 0  ->  x_1..x_m are sound, the first error lies in x_{m+1}..x_T
    MC(x_{1:m}) = 0  ->  the first error lies in x_1..x_m

(``threshold`` raises the bar above 0 where lucky answers are common: a chain of modulo-10
arithmetic reaches the right answer by chance one time in ten), so ``T`` steps need ``⌈log2(T + 1)⌉`` estimates instead of Math-Shepherd's ``T`` (``mc``). The ``+1``
is the case of no step error at all (every prefix still reaches the answer: the last line erred).
As in the paper, only rollouts with a wrong answer are searched; one with the right answer is
taken as sound throughout. ``search_correct=True`` searches those too, but to little effect: a
right answer's error is a recovered one (``redo:``) or a lucky one, and either breaks the search's
premise that once a prefix fails every longer one fails too, so the midpoints step over it.

**The tree.** Every estimate is a state ``s`` (a prefix) with ``MC(s)`` and a visit count ``N(s)``;
each completion from ``s`` that ends wrong is a rollout ``r`` that can be searched next. OmegaPRM
picks the next ``(s, r)`` by

    Q(s, r) = α^{1 - MC(s)} · β^{len(r) / L}        (prefer states near-right, short rollouts)
    U(s)    = c_puct · sqrt(Σ_i N(s_i)) / (1 + N(s))
    (s, r)* = argmax Q(s, r) + U(s)     over 0 < MC(s) < 1 and wrong rollouts r from s

``extra_searches`` runs that loop after the pool's own searches; :meth:`OmegaLabels.records`
holds every ``(prefix, MC)`` record, and :func:`records_to_training` turns them into soft labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from selfprm.labels.base import register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import Problem, StepLabels, Trajectory


@dataclass
class _State:
    """A node of the OmegaPRM tree: a prefix, its MC estimate and its wrong rollouts."""

    problem: Problem
    steps: tuple[str, ...]
    mc: float
    visits: int = 0
    wrong_rollouts: list[tuple[str, ...]] = field(default_factory=list)  # full step lists


class MCEstimator:
    """Monte Carlo estimates of prefixes, each rolled out once per source and shared.

    ``charge(owner)`` returns what the prefixes first asked for by ``owner`` cost, so every token
    is charged to exactly one trajectory.
    """

    def __init__(self, policy: Policy, n_rollouts: int):
        self.policy, self.k = policy, n_rollouts
        self.states: dict[tuple, _State] = {}
        self._cost: dict[Any, list[int]] = {}

    def estimate(self, requests: Sequence[tuple[Any, Problem, Sequence[str]]]) -> list[float]:
        """MC of each ``(owner, problem, steps)``; new prefixes are rolled out in one policy call."""
        new: dict[tuple, tuple[Any, Problem, tuple[str, ...]]] = {}
        for owner, prob, steps in requests:
            key = (prob.id, tuple(steps))
            if key not in self.states and key not in new:
                new[key] = (owner, prob, tuple(steps))
        if new:
            groups = self.policy.continue_from([Prefix(p, list(s)) for _, p, s in new.values()], self.k)
            for (key, (owner, prob, steps)), group in zip(new.items(), groups):
                wins = sum(bool(r.outcome) for r in group)
                st = _State(prob, steps, wins / self.k)
                st.wrong_rollouts = [tuple(r.steps) for r in group if not r.outcome]
                self.states[key] = st
                cost = self._cost.setdefault(owner, [0, 0])
                cost[0] += sum(r.tokens_generated for r in group)
                cost[1] += self.k
        out = []
        for _, prob, steps in requests:
            st = self.states[(prob.id, tuple(steps))]
            st.visits += 1
            out.append(st.mc)
        return out

    def charge(self, owner: Any) -> tuple[int, int]:
        tokens, rollouts = self._cost.get(owner, (0, 0))
        return tokens, rollouts


def binary_search_first_errors(
    estimator: MCEstimator, jobs: Sequence[tuple[Any, Problem, Sequence[str], int]], threshold: float = 0.0
) -> list[int]:
    """First error of each ``(owner, problem, steps, lo)`` by OmegaPRM's binary search, batched.

    ``steps[:lo]`` is known sound. Returns the index of the first step whose prefix has MC = 0, or
    -1 when every prefix from ``lo`` on still reaches the answer (a prefix counts as sound when
    ``MC > threshold``; the paper's rule is ``threshold = 0``). The invariant: prefixes ending
    before ``lo`` are sound, and the first error lies in ``[lo, hi]`` (``hi = T`` meaning none).
    """
    bounds = [[lo, len(steps)] for _, _, steps, lo in jobs]
    while True:
        active = [i for i, (lo, hi) in enumerate(bounds) if lo < hi]
        if not active:
            break
        mids = {i: (bounds[i][0] + bounds[i][1]) // 2 for i in active}
        # the prefix ending at step ``mid`` (inclusive): is step ``mid`` still sound?
        mcs = estimator.estimate([(jobs[i][0], jobs[i][1], jobs[i][2][: mids[i] + 1]) for i in active])
        for i, mc in zip(active, mcs):
            if mc > threshold:
                bounds[i][0] = mids[i] + 1
            else:
                bounds[i][1] = mids[i]
    return [-1 if lo == len(steps) else lo for (lo, _), (_, _, steps, _) in zip(bounds, jobs)]


def qu_score(state: _State, rollout_len: int, total_visits: int, alpha: float, beta: float, length_scale: float,
             c_puct: float) -> float:
    """OmegaPRM's selection score Q(s, r) + U(s) (§3.3); ``rollout_len`` is in steps."""
    q = alpha ** (1.0 - state.mc) * beta ** (rollout_len / length_scale)
    u = c_puct * math.sqrt(total_visits) / (1 + state.visits)
    return q + u


@register("omega")
@dataclass
class OmegaLabels:
    n_rollouts: int = 8
    search_correct: bool = False  # True: search right answers too (recovered errors, lucky answers)
    threshold: float = 0.0  # a midpoint is sound when MC > threshold (the paper: any success)
    extra_searches: int = 0  # Q/U-selected tree searches per problem after the pool's own
    alpha: float = 0.5
    beta: float = 0.9
    length_scale: float = 20.0  # L, in steps (the paper's 500 is in tokens)
    c_puct: float = 0.125
    name: str = "omega"
    prm_loss: str = "bce"

    def __post_init__(self) -> None:
        self.estimator_: MCEstimator | None = None  # the last call's tree of MC estimates

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("omega labels need a policy to roll out from the midpoint prefixes")
        est = MCEstimator(policy, self.n_rollouts)
        self.estimator_ = est
        jobs, where = [], []
        for i, t in enumerate(trajectories):
            if t.outcome is None and not t.truncated:
                raise ValueError(f"trajectory of problem {t.problem.id!r} has no outcome")
            if self.search_correct or not t.outcome:
                jobs.append((i, t.problem, t.steps, 0))
                where.append(i)
        first = dict(zip(where, binary_search_first_errors(est, jobs, self.threshold)))
        if self.extra_searches:
            self._tree_search(est, trajectories)
        out: list[StepLabels | None] = []
        for i, t in enumerate(trajectories):
            fe = first.get(i, -1)
            values = [1.0 if fe == -1 or j < fe else 0.0 for j in range(len(t.steps))]
            tokens, rollouts = est.charge(i)
            out.append(StepLabels(values, source=self.name, policy_tokens=tokens, rollouts=rollouts))
        return out

    def _tree_search(self, est: MCEstimator, trajectories: Sequence[Trajectory]) -> None:
        """OmegaPRM's loop: pick (s, r) by Q + U per problem, binary-search r from s, repeat.

        The cost of these searches is charged to the problem's first trajectory.
        """
        owner_of = {}
        for i, t in enumerate(trajectories):
            owner_of.setdefault(t.problem.id, i)
        searched: set[tuple] = set()
        for _ in range(self.extra_searches):
            jobs = []
            for pid, owner in owner_of.items():
                states = [s for s in est.states.values() if s.problem.id == pid]
                total = sum(s.visits for s in states)
                best, best_score = None, -math.inf
                for s in states:
                    if not 0 < s.mc < 1:
                        continue
                    for r in s.wrong_rollouts:
                        if (pid, r) in searched:
                            continue
                        sc = qu_score(s, len(r) - len(s.steps), total, self.alpha, self.beta, self.length_scale, self.c_puct)
                        if sc > best_score:
                            best, best_score = (s, r), sc
                if best is not None:
                    s, r = best
                    searched.add((pid, r))
                    jobs.append((owner, s.problem, list(r), len(s.steps)))
            if not jobs:
                break
            binary_search_first_errors(est, jobs, self.threshold)

    def records(self) -> list[dict[str, Any]]:
        """Every ``(prefix, MC)`` state of the last call's tree, for soft-label training."""
        if self.estimator_ is None:
            return []
        return [{"problem_id": s.problem.id, "prefix": list(s.steps), "mc": s.mc, "visits": s.visits}
                for s in self.estimator_.states.values()]

    def training_pairs(self) -> list[tuple[Trajectory, StepLabels]]:
        """The tree's records as PRM training data (see :func:`records_to_training`)."""
        if self.estimator_ is None:
            return []
        return records_to_training([(s.problem, list(s.steps), s.mc) for s in self.estimator_.states.values()],
                                   self.name)


def records_to_training(records: Sequence[tuple[Problem, list[str], float]], source: str = "omega") -> list[tuple[Trajectory, StepLabels]]:
    """Each ``(problem, prefix, MC)`` as a trajectory whose last step carries the soft label MC.

    The earlier steps get weight 0: their own records label them, so nothing is counted twice.
    """
    out = []
    for prob, steps, mc in records:
        if not steps:
            continue
        traj = Trajectory(problem=prob, steps=list(steps))
        w = [0.0] * (len(steps) - 1) + [1.0]
        out.append((traj, StepLabels([0.0] * (len(steps) - 1) + [float(mc)], source=source, soft=True, weights=w)))
    return out
