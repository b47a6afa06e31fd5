"""``omega``: OmegaPRM's tree search of Monte Carlo estimates, with its binary search for the first error.

Luo et al., *Improve Mathematical Reasoning in Language Models by Automated Process Supervision*
(OmegaPRM), arXiv 2406.06592, §3.2-3.4 and §4.

**Monte Carlo estimate.** From a prefix ``s = x_1..x_m`` the policy writes ``k`` completions;
``MC(s) = Σ_j 1[a_j = a*] / k`` is the share that reach the gold answer.

**Binary search (§3.2).** A rollout ``r = (x_1, ..., x_T)`` whose answer is wrong has a first error.
The search looks at the midpoint ``m``:

    MC(x_{1:m}) > 0  ->  x_1..x_m are sound, the first error lies in x_{m+1}..x_T
    MC(x_{1:m}) = 0  ->  the first error lies in x_1..x_m

so ``T`` steps need ``⌈log2(T + 1)⌉`` estimates instead of Math-Shepherd's ``T`` (``mc``); the
``+1`` is the case of no step error at all (the last line erred). ``threshold`` raises the bar
above 0 where lucky answers are common (a modulo-10 chain reaches the right answer by chance one
time in ten); the paper's rule is ``threshold = 0``.

**The tree (§3.3), ``mode="tree"``, the default.** Every estimated prefix is a state ``s`` with
``MC(s)``, a visit count ``N(s)`` and the completions from it that ended wrong: the rollouts ``r``
that can be searched next. Per problem, OmegaPRM pops the next ``(s, r)`` from the pool of wrong
rollouts of states with ``0 < MC(s) < 1`` by

    Q(s, r) = α^{1 - MC(s)} · β^{len(r) / L}        (prefer near-right states, short rollouts)
    U(s)    = c_puct · sqrt(Σ_i N(s_i)) / (1 + N(s))   (Σ over the problem's states)
    (s, r)* = argmax Q(s, r) + U(s)

binary-searches ``r`` from ``s`` (its steps up to ``s`` are known sound), adds ``N(s) += 1``, and
makes every searched position up to and including the first error a state of the tree (later
midpoints, MC = 0, are measured but not kept, as in the paper). ``len(r)`` is the rollout's
tokens. Here the pool's own trajectories are the root's rollouts (the paper's first step samples
``k`` solutions of the question): the root's ``MC`` is the share of them with the right answer,
each of them is searched first (every one needs labels), each such search counting as a visit of
the root, and then ``extra_searches`` more ``(s, r)`` per problem are picked by ``Q + U``, all
problems batched into the same policy calls. The paper pops one pair at a time and searches it
before the next pop (``searches_per_round = 1``, the default); ``searches_per_round = B`` pops
``B`` per problem (each pop's visit counted in the next one's ``U``, as virtual visits are in
parallel MCTS) and searches them together, a deviation that cuts the sequential policy calls
``B``-fold, which is what a small policy on CPU pays for (small batches).

**Labels.** A step whose prefix is a state of the tree gets the tree's estimate: ``MC(s)``, the
paper's pointwise soft label (its best objective, §3.4 Table 2; ``soft=False`` gives its hard
label ``1[MC(s) > threshold]``). A step the searches skipped over has no estimate; it gets the
binary search's inference (1.0 before the first error, 0.0 from it on) with weight
``inferred_weight`` (1.0: every step is a label, as for ``mc``; 0.0: exactly the paper's data, a
label only where the tree has a state). :meth:`OmegaLabels.records` and
:meth:`OmegaLabels.training_pairs` give every state of the tree (the searches' new branches too),
one soft example per state, as the paper trains.

``mode="binary"`` is the plain binary search, a deviation from the paper: each pool trajectory is
searched once, its labels are the hard inference above, and no tree search runs.

**Right answers.** ``assume_correct_sound`` (same name and meaning in ``mc``): a trajectory whose
final answer is right is labelled sound throughout, 1.0 on every step, at zero cost and without
rollouts. It is consistent with the paper's hard rule (the trajectory is itself a successful
completion of each of its prefixes, so each has MC > 0), and the paper never searches right
answers; but it spends nothing to catch recovered (``redo:``) or lucky errors, which break the
binary search's premise that once a prefix fails every longer one fails too. It is off by default,
on ``mc`` as on ``omega``, so the two compare on equal terms; a study runs each both ways.

**Cost.** ``policy_tokens`` and ``rollouts`` count the completions the estimates asked for; a
prefix estimated once is shared (by every search and every trajectory of its problem) and charged
once, to the trajectory whose search first asked for it; a Q/U search's new prefixes are charged
to the first searched trajectory of its problem. ``token_passes`` stays 0: the policy's own
generation compute is read off the policy by :func:`selfprm.labels.run_label_source`.

**Paper settings.** ``k = 8`` (``n_rollouts``), ``α = 0.5``, ``β = 0.9``, ``L = 500`` tokens,
``c_puct = 0.125`` are the paper's and the defaults (on ``arith``, where a solution is ~35
tokens, ``β^{len(r)/L}`` is ~0.99: the length term barely matters at the paper's ``L``). Its
search limit is 100 searches per question; the default here is ``extra_searches = 16`` Q/U
searches per problem after the pool's own (scaled down for CPU; on ``arith`` the pool of
candidates mostly runs dry before 16), popped one at a time as in the paper
(``searches_per_round = 1``). Not matched: the paper's question filter (32 rollouts per question,
dropping questions with no right or no wrong answer; here every pool trajectory is labelled), and
its step split (16 equal token pieces per solution; here the domain's own steps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from tqdm.auto import tqdm

from selfprm.labels.base import register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import Problem, StepLabels, Trajectory

MODES = ("tree", "binary")


@dataclass
class _State:
    """A node of the OmegaPRM tree: a prefix, its MC estimate, ``N(s)`` and its wrong rollouts.

    ``wrong_rollouts`` holds ``(steps, tokens)`` of each completion from the state whose answer was
    wrong (``steps`` the full step list, ``tokens`` what the completion generated: ``len(r)``);
    ``in_tree`` marks a state the paper keeps (a searched position up to the first error).
    """

    problem: Problem
    steps: tuple[str, ...]
    mc: float
    visits: int = 0
    wrong_rollouts: list[tuple[tuple[str, ...], int]] = field(default_factory=list)
    in_tree: bool = False


class MCEstimator:
    """Monte Carlo estimates of prefixes, each rolled out once and shared: the OmegaPRM tree.

    ``charge(owner)`` returns what the prefixes first asked for by ``owner`` cost, so every token
    is charged to exactly one trajectory.
    """

    def __init__(self, policy: Policy, n_rollouts: int):
        self.policy, self.k = policy, n_rollouts
        self.states: dict[tuple, _State] = {}
        self.by_problem: dict[Any, list[_State]] = {}
        self._cost: dict[Any, list[int]] = {}

    def add_root(self, problem: Problem, mc: float) -> _State:
        """The root of ``problem``'s tree: the empty prefix, estimated (for free) by the pool's samples."""
        st = _State(problem, (), mc, in_tree=True)
        self.states[(problem.id, ())] = st
        self.by_problem.setdefault(problem.id, []).append(st)
        return st

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
                st.wrong_rollouts = [(tuple(r.steps), int(r.tokens_generated)) for r in group if not r.outcome]
                self.states[key] = st
                self.by_problem.setdefault(prob.id, []).append(st)
                cost = self._cost.setdefault(owner, [0, 0])
                cost[0] += sum(int(r.tokens_generated) for r in group)
                cost[1] += self.k
        return [self.states[(prob.id, tuple(steps))].mc for _, prob, steps in requests]

    def keep_searched(self, problem: Problem, steps: Sequence[str], lo: int, first_error: int) -> None:
        """Make the searched positions of ``steps[lo:]`` up to the first error states of the tree."""
        end = len(steps) if first_error == -1 else first_error + 1
        for j in range(lo, end):
            st = self.states.get((problem.id, tuple(steps[: j + 1])))
            if st is not None:
                st.in_tree = True

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
    """OmegaPRM's selection score Q(s, r) + U(s) (§3.3, Eqs. 2-3); ``rollout_len`` is ``len(r)``
    in the unit of ``length_scale`` (tokens, as in the paper)."""
    q = alpha ** (1.0 - state.mc) * beta ** (rollout_len / length_scale)
    u = c_puct * math.sqrt(total_visits) / (1 + state.visits)
    return q + u


def select_rollout(states: Sequence[_State], alpha: float, beta: float, length_scale: float, c_puct: float,
                   searched: set | frozenset = frozenset()) -> tuple[_State, tuple[str, ...], float] | None:
    """The pair ``(s, r) = argmax Q(s, r) + U(s)`` of one problem's tree, and its score; None when
    the pool is empty.

    The pool: the wrong rollouts of the tree's states with ``0 < MC(s) < 1``, less those whose step
    list was already searched (``searched``). ``Σ_i N(s_i)`` is over ``states``. Ties go to the
    first state, then the first rollout, in order.
    """
    total = sum(s.visits for s in states)
    best, best_score = None, -math.inf
    for s in states:
        if not (s.in_tree and 0.0 < s.mc < 1.0):
            continue
        for steps, tokens in s.wrong_rollouts:
            if steps in searched:
                continue
            sc = qu_score(s, tokens, total, alpha, beta, length_scale, c_puct)
            if sc > best_score:
                best, best_score = (s, steps), sc
    return None if best is None else (best[0], best[1], best_score)


@register("omega")
@dataclass
class OmegaLabels:
    """OmegaPRM labels. See the module docstring for each setting; the paper's values are the defaults
    except ``extra_searches`` (the paper searches up to 100 times per question)."""

    n_rollouts: int = 8  # k, completions per MC estimate (paper: 8)
    mode: str = "tree"  # "tree": the paper's Q/U tree search, soft labels; "binary": one plain binary search each
    extra_searches: int = 16  # tree mode: Q/U-selected searches per problem after the pool's own
    searches_per_round: int = 1  # tree mode: pairs popped per problem per batch of policy calls (paper: 1)
    assume_correct_sound: bool = False  # a right-answer trajectory: all 1.0, no rollouts (as in mc)
    soft: bool = True  # tree mode: a state's label is MC(s); False: 1[MC(s) > threshold]
    inferred_weight: float = 1.0  # weight of a label the search inferred without an estimate (0: the paper's data only)
    threshold: float = 0.0  # a midpoint is sound when MC > threshold (the paper: any success)
    alpha: float = 0.5
    beta: float = 0.9
    length_scale: float = 500.0  # L, in tokens of the rollout
    c_puct: float = 0.125
    search_correct: bool | None = None  # deprecated alias: search_correct = not assume_correct_sound
    name: str = "omega"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"omega mode {self.mode!r}: expected one of {MODES}")
        if self.n_rollouts < 1 or self.extra_searches < 0 or self.searches_per_round < 1:
            raise ValueError("omega needs n_rollouts >= 1, extra_searches >= 0 and searches_per_round >= 1")
        if not 0.0 <= self.inferred_weight <= 1.0:
            raise ValueError(f"inferred_weight {self.inferred_weight} is outside [0, 1]")
        if self.search_correct is not None:
            warnings.warn("omega's search_correct is deprecated: use assume_correct_sound=not search_correct",
                          DeprecationWarning, stacklevel=3)
            if self.search_correct and self.assume_correct_sound:
                raise ValueError("search_correct=True contradicts assume_correct_sound=True")
            self.assume_correct_sound = not self.search_correct
            self.search_correct = None
        self.estimator_: MCEstimator | None = None  # the last call's tree of MC estimates
        self.searches_: list[dict[str, Any]] | None = None  # the last call's searches, in order

    @property
    def prm_loss(self) -> str:
        return "soft_bce" if self.mode == "tree" and self.soft else "bce"

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("omega labels need a policy to roll out from the midpoint prefixes")
        tree = self.mode == "tree"
        est = MCEstimator(policy, self.n_rollouts)
        self.estimator_, self.searches_ = est, []
        # the root of each problem's tree: its pool samples are the root's rollouts
        by_problem: dict[Any, list[int]] = {}
        for i, t in enumerate(trajectories):
            if t.outcome is None and not t.truncated:
                raise ValueError(f"trajectory of problem {t.problem.id!r} has no outcome")
            by_problem.setdefault(t.problem.id, []).append(i)
        roots = {pid: est.add_root(trajectories[idx[0]].problem,
                                   sum(bool(trajectories[i].outcome) for i in idx) / len(idx))
                 for pid, idx in by_problem.items()}
        searched: dict[Any, set] = {pid: set() for pid in by_problem}
        jobs, where = [], []
        for i, t in enumerate(trajectories):
            if self.assume_correct_sound and t.outcome:
                continue
            jobs.append((i, t.problem, t.steps, 0))
            where.append(i)
        rounds = math.ceil(self.extra_searches / self.searches_per_round) if tree else 0
        bar = tqdm(total=1 + rounds, desc=f"{self.name} searches",
                   disable=not progress, leave=False)
        fes = binary_search_first_errors(est, jobs, self.threshold)
        first = dict(zip(where, fes))
        for (i, prob, steps, lo), fe in zip(jobs, fes):
            roots[prob.id].visits += 1  # the pair (root, trajectory) was selected
            searched[prob.id].add(tuple(steps))
            est.keep_searched(prob, steps, lo, fe)
            self.searches_.append({"problem_id": prob.id, "phase": "pool", "round": None, "trajectory": i,
                                   "start": lo, "steps": len(steps), "first_error": fe})
        bar.update(1)
        if tree and self.extra_searches:
            owners: dict[Any, int] = {}
            for i in where:
                owners.setdefault(trajectories[i].problem.id, i)
            self._tree_search(est, owners, searched, bar)
        bar.close()
        out: list[StepLabels | None] = []
        for i, t in enumerate(trajectories):
            if i not in first:  # a right answer, taken as sound throughout
                out.append(StepLabels([1.0] * len(t.steps), source=self.name, soft=tree and self.soft))
                continue
            values, weights = self._values(est, t, first[i]) if tree else self._inferred(t, first[i])
            tokens, rollouts = est.charge(i)
            out.append(StepLabels(values, source=self.name, soft=tree and self.soft, policy_tokens=tokens,
                                  rollouts=rollouts, weights=weights))
        return out

    @staticmethod
    def _inferred(t: Trajectory, fe: int) -> tuple[list[float], None]:
        return [1.0 if fe == -1 or j < fe else 0.0 for j in range(len(t.steps))], None

    def _values(self, est: MCEstimator, t: Trajectory, fe: int) -> tuple[list[float], list[float] | None]:
        """The tree's estimate where a step's prefix is a state of it, else the search's inference."""
        values, weights = [], []
        for j in range(len(t.steps)):
            st = est.states.get((t.problem.id, tuple(t.steps[: j + 1])))
            if st is not None and st.in_tree:
                values.append(st.mc if self.soft else float(st.mc > self.threshold))
                weights.append(1.0)
            else:
                values.append(1.0 if fe == -1 or j < fe else 0.0)
                weights.append(self.inferred_weight)
        return values, None if all(w == 1.0 for w in weights) else weights

    def _tree_search(self, est: MCEstimator, owners: dict[Any, int], searched: dict[Any, set], bar) -> None:
        """OmegaPRM's loop (§3.3): per problem pop (s, r) by Q + U, binary-search r from s, keep the
        searched positions up to the first error as states, N(s) += 1; ``extra_searches`` searches
        per problem, or until no problem's pool has a candidate. A round pops
        ``searches_per_round`` pairs per problem one after another (each pop's ``N(s) += 1`` counts
        in the next one's ``U``) and binary-searches them together, with every problem's, in the
        same policy calls. A search's new estimates are charged to the first searched trajectory
        of its problem."""
        left = {pid: self.extra_searches for pid in owners}
        for rnd in range(math.ceil(self.extra_searches / self.searches_per_round)):
            jobs, picked = [], []
            for pid, owner in owners.items():
                for _ in range(min(self.searches_per_round, left[pid])):
                    sel = select_rollout(est.by_problem[pid], self.alpha, self.beta, self.length_scale,
                                         self.c_puct, searched[pid])
                    if sel is None:
                        left[pid] = 0
                        break
                    s, r, score = sel
                    s.visits += 1
                    searched[pid].add(r)
                    left[pid] -= 1
                    jobs.append((owner, s.problem, list(r), len(s.steps)))
                    picked.append((s, score))
            if not jobs:
                break
            fes = binary_search_first_errors(est, jobs, self.threshold)
            for (owner, prob, steps, lo), fe, (s, score) in zip(jobs, fes, picked):
                est.keep_searched(prob, steps, lo, fe)
                self.searches_.append({"problem_id": prob.id, "phase": "qu", "round": rnd, "trajectory": None,
                                       "start": lo, "steps": len(steps), "first_error": fe, "state_mc": s.mc,
                                       "score": score})
            bar.update(1)

    def records(self) -> list[dict[str, Any]]:
        """Every state of the last call's tree but the roots, ``(prefix, MC, N)``, for soft-label training."""
        if self.estimator_ is None:
            return []
        return [{"problem_id": s.problem.id, "prefix": list(s.steps), "mc": s.mc, "visits": s.visits}
                for s in self.estimator_.states.values() if s.in_tree and s.steps]

    def training_pairs(self) -> list[tuple[Trajectory, StepLabels]]:
        """The tree's records as PRM training data (see :func:`records_to_training`)."""
        if self.estimator_ is None:
            return []
        return records_to_training([(s.problem, list(s.steps), s.mc) for s in self.estimator_.states.values()
                                    if s.in_tree and s.steps], self.name)


def records_to_training(records: Sequence[tuple[Problem, list[str], float]],
                        source: str = "omega") -> list[tuple[Trajectory, StepLabels]]:
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
