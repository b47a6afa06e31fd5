"""``mcts``: AlphaLLM's option-level MCTS; per-step Q-values and sibling preference pairs.

Tian et al., *Toward Self-Improvement of LLMs via Imagination, Searching, and Criticizing*
(AlphaLLM), arXiv 2404.12253, §4.2-4.3; public code YeTianJHU/AlphaLLM.

A node is an *option*: one solution step. Each simulation

1. **selects** from the root by UCT until it reaches a node that may still grow a child,

       a* = argmax_a  Q(s, a) + c · sqrt(ln N(s) / N(s, a))

2. **expands** it with one policy continuation whose first new step is the new option; a step
   that nearly duplicates a sibling (text similarity ≥ ``merge_threshold``) is *merged* into
   that sibling instead of opening a new branch (the paper's state merge);
3. **evaluates** the new node with a mix of critics, normalised over the ones present,

       v = (w_v · V(s) + w_r · R_rollout + w_p · PRM(s)) / (w_v + w_r + w_p)

   where ``R_rollout`` is the outcome of the continuation itself (the fast rollout: the
   continuation went on past the option to an answer), ``V`` an optional value estimate
   (``value_fn``) and ``PRM`` the last step's score from an optional process reward model;
4. **backs up** ``v`` along the path: ``N += 1``, ``Q = W / N``.

Branching is adaptive: a node may hold ``min_children`` options, and up to ``max_children`` once
its children's values spread (standard deviation ≥ ``spread_threshold``): where the choice of
step matters, more alternatives are worth paying for.

Every pool trajectory of a problem is inserted as a path in the problem's tree first (its
outcome backed up, no tokens spent), so its steps are nodes; its labels are their Q-values.
:meth:`MCTSLabels.preference_pairs` exports, for every node, sibling pairs whose Q differ by at
least ``pair_margin`` as ``(prefix, better step, worse step)`` for step-level DPO.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from selfprm.labels.base import register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import Problem, StepLabels, Trajectory


@dataclass
class Node:
    steps: tuple[str, ...]
    parent: "Node | None" = None
    children: dict[str, "Node"] = field(default_factory=dict)
    visits: int = 0
    total: float = 0.0
    terminal: bool = False  # the solution ended here (an answer, right or wrong)
    tries: int = 0  # expansions asked of this node (a merged duplicate is a try that added no option)

    @property
    def q(self) -> float:
        return self.total / self.visits if self.visits else 0.0


def uct_child(node: Node, c: float) -> Node:
    """UCT: argmax Q + c·sqrt(ln N(parent) / N(child)); an unvisited child first."""
    best, best_score = None, -math.inf
    log_n = math.log(max(1, node.visits))
    for ch in node.children.values():
        score = math.inf if ch.visits == 0 else ch.q + c * math.sqrt(log_n / ch.visits)
        if score > best_score:
            best, best_score = ch, score
    assert best is not None
    return best


def allowed_children(node: Node, lo: int, hi: int, spread: float) -> int:
    """Adaptive branching: ``hi`` options where the children's values spread, else ``lo``."""
    qs = [ch.q for ch in node.children.values() if ch.visits]
    return hi if len(qs) >= 2 and float(np.std(qs)) >= spread else lo


def backup(node: Node, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.total += value
        node = node.parent


def _similar(a: str, b: str, threshold: float) -> bool:
    a, b = " ".join(a.split()), " ".join(b.split())
    return a == b or (threshold < 1.0 and difflib.SequenceMatcher(None, a, b).ratio() >= threshold)


def add_child(node: Node, step: str, merge_threshold: float) -> Node:
    """The child for ``step``: an existing near-duplicate sibling (merged) or a new node."""
    if step in node.children:
        return node.children[step]
    for text, ch in node.children.items():
        if _similar(text, step, merge_threshold):
            return ch
    ch = Node(node.steps + (step,), parent=node)
    node.children[step] = ch
    return ch


def insert_path(root: Node, steps: Sequence[str], outcome: bool) -> list[Node]:
    """Insert a known trajectory as a path (exact text, no merging) and back up its outcome."""
    node, path = root, []
    for s in steps:
        if s not in node.children:
            node.children[s] = Node(node.steps + (s,), parent=node)
        node = node.children[s]
        path.append(node)
    node.terminal = True
    backup(node, float(bool(outcome)))
    return path


@register("mcts")
@dataclass
class MCTSLabels:
    n_simulations: int = 8  # per pool trajectory
    c_uct: float = 1.0
    min_children: int = 2
    max_children: int = 4
    spread_threshold: float = 0.2
    merge_threshold: float = 1.0  # 1.0 merges identical steps (modulo spaces) only
    w_value: float = 1.0
    w_rollout: float = 1.0
    w_prm: float = 1.0
    pair_margin: float = 0.3
    prm: Any = None  # a ProcessRewardModel (critic), optional
    value_fn: Callable[[Problem, list[str]], float] | None = None  # a value estimate, optional
    name: str = "mcts"
    prm_loss: str = "soft_bce"

    def __post_init__(self) -> None:
        self.trees_: dict[str, tuple[Problem, Node]] | None = None  # the last call's trees, by problem id

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("mcts labels need a policy to expand the search tree")
        trees: dict[str, tuple[Problem, Node]] = {}
        owner: dict[str, int] = {}
        sims: dict[str, int] = {}
        paths = []
        for i, t in enumerate(trajectories):
            prob, root = trees.setdefault(t.problem.id, (t.problem, Node(())))
            owner.setdefault(t.problem.id, i)
            sims[t.problem.id] = sims.get(t.problem.id, 0) + self.n_simulations
            paths.append(insert_path(root, t.steps, bool(t.outcome)))
        self.trees_ = trees
        cost = [[0, 0] for _ in trajectories]
        rounds = max(sims.values(), default=0)
        for r in tqdm(range(rounds), desc=f"{self.name} simulations", disable=not progress, leave=False):
            # one simulation per tree per round, all expansions in one policy call
            leaves = []
            for pid, (prob, root) in trees.items():
                if r < sims[pid]:
                    leaves.append((pid, prob, self._select(root)))
            asks = [(pid, prob, n) for pid, prob, n in leaves if not n.terminal]
            for pid, prob, n in leaves:
                if n.terminal:  # a finished solution: its value is its outcome again
                    backup(n, n.q)
            if not asks:
                continue
            groups = policy.continue_from([Prefix(prob, list(n.steps)) for _, prob, n in asks], 1)
            new_nodes = []
            for (pid, prob, node), group in zip(asks, groups):
                roll = group[0]
                node.tries += 1
                cost[owner[pid]][0] += roll.tokens_generated
                cost[owner[pid]][1] += 1
                if len(roll.steps) > len(node.steps):
                    child = add_child(node, roll.steps[len(node.steps)], self.merge_threshold)
                    child.terminal = child.terminal or len(roll.steps) == len(child.steps)
                else:  # the continuation answered at once: the node is a finished solution
                    node.terminal, child = True, node
                new_nodes.append((prob, child, float(bool(roll.outcome))))
            for (prob, child, _), v in zip(new_nodes, self._evaluate(new_nodes)):
                backup(child, v)
        out: list[StepLabels | None] = []
        for i, path in enumerate(paths):
            vals = [min(1.0, max(0.0, n.q)) for n in path]
            out.append(StepLabels(vals, source=self.name, soft=True, policy_tokens=cost[i][0], rollouts=cost[i][1]))
        return out

    def _select(self, root: Node) -> Node:
        node = root
        while not node.terminal:
            cap = allowed_children(node, self.min_children, self.max_children, self.spread_threshold)
            if max(len(node.children), node.tries) < cap:
                return node  # may still grow an option (duplicates count, so a sure policy moves on)
            node = uct_child(node, self.c_uct)
        return node

    def _evaluate(self, new_nodes: Sequence[tuple[Problem, Node, float]]) -> list[float]:
        """The mixed critic value of each new node (see the module docstring)."""
        num = [self.w_rollout * r for _, _, r in new_nodes]
        den = self.w_rollout
        if self.value_fn is not None:
            for j, (prob, n, _) in enumerate(new_nodes):
                num[j] += self.w_value * float(self.value_fn(prob, list(n.steps)))
            den += self.w_value
        if self.prm is not None and new_nodes:
            scores = self.prm.score_steps([p.prompt for p, _, _ in new_nodes], [list(n.steps) for _, n, _ in new_nodes])
            for j, sc in enumerate(scores):
                last = sc[-1] if sc and not math.isnan(sc[-1]) else new_nodes[j][2]
                num[j] += self.w_prm * last
            den += self.w_prm
        return [x / den for x in num]

    def preference_pairs(self) -> list[dict[str, Any]]:
        """Sibling pairs of the last call's trees, ``(prefix, chosen, rejected)``, for step-level DPO."""
        out = []
        for prob, root in (self.trees_ or {}).values():
            stack = [root]
            while stack:
                node = stack.pop()
                kids = [(t, ch) for t, ch in node.children.items() if ch.visits]
                stack.extend(node.children.values())
                for a, ca in kids:
                    for b, cb in kids:
                        if ca.q - cb.q >= self.pair_margin:
                            out.append({"problem_id": prob.id, "prompt": prob.prompt, "prefix": list(node.steps),
                                        "chosen": a, "rejected": b, "margin": ca.q - cb.q})
        return out
