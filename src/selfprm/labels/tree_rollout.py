"""``tree``: Tree-GRPO's tree rollouts, their leaf advantages turned into step labels.

Ji et al., *Tree Search for LLM Agent Reinforcement Learning* (Tree-GRPO), arXiv 2509.21240;
public code AMAP-ML/Tree-GRPO.

Per problem, ``M`` trees. A tree starts as one full rollout (a chain of step nodes); then ``L``
expansion rounds each pick ``N`` inner nodes at random and branch a new continuation from each,
so the tree grows to ``1 + L·N`` leaves, of which ``K`` are kept. A leaf's reward is its outcome
``R ∈ {0, 1}``; its advantage adds a group normalisation over the leaves of every tree of the
problem (inter-tree) to one over the leaves of its own tree (intra-tree):

    Â_inter(l) = (R_l - mean_{all trees} R) / (std_{all trees} R + ε)
    Â_intra(l) = (R_l - mean_{tree(l)} R)   / (std_{tree(l)} R + ε)
    Â(l)       = Â_intra(l) + Â_inter(l)

A step node's credit is what the leaves below it earn, ``C(n) = mean_{l below n} Â(l)``; the
step label is ``σ(C(n))`` (``label_kind="advantage"``, positive credit -> above 0.5) or the leaves'
mean reward (``label_kind="value"``, a Monte Carlo estimate of the node that shares rollouts).

The pool's trajectories of a problem seed its trees (one each, up to all of them; more trees are
sampled when the pool has fewer than ``M``), so every pool trajectory's steps are tree nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfprm.labels.base import register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import StepLabels, Trajectory


def tree_grpo_advantages(trees: Sequence[Sequence[float]], eps: float = 1e-6) -> list[list[float]]:
    """Â = intra-tree + inter-tree group-normalised reward of every leaf (``trees[t][l]`` = reward):
    the one implementation, :func:`selfprm.rl.advantages.tree_advantages`, that Tree-GRPO's policy
    optimisation also trains with, laid out per tree."""
    from selfprm.rl.advantages import tree_advantages

    flat = [r for tr in trees for r in tr]
    tree_of = [t for t, tr in enumerate(trees) for _ in tr]
    adv = iter(tree_advantages(flat, tree_of, [0] * len(flat), eps))
    return [[next(adv) for _ in tr] for tr in trees]


def node_credit(leaves: Sequence[Sequence[str]], advantages: Sequence[float], prefix: Sequence[str]) -> float:
    """Mean advantage of the leaves whose steps start with ``prefix`` (NaN when none does)."""
    k = len(prefix)
    below = [a for steps, a in zip(leaves, advantages) if len(steps) >= k and list(steps[:k]) == list(prefix)]
    return float(np.mean(below)) if below else math.nan


@register("tree")
@dataclass
class TreeRolloutLabels:
    m_trees: int = 4  # M
    l_rounds: int = 2  # L
    n_branches: int = 2  # N
    k_leaves: int | None = None  # K (None keeps every leaf)
    label_kind: str = "advantage"  # or "value"
    eps: float = 1e-6
    seed: int = 0
    name: str = "tree"
    prm_loss: str = "soft_bce"

    def label_trees(self, trajectories: Sequence[Trajectory], policy: Policy) -> dict[str, list[dict]]:
        """Grow the trees: problem id -> its trees, each ``{"leaves": [Trajectory], "owner": i,
        "cost": [tokens, rollouts]}``; ``leaves[0]`` is the root chain, pool trajectory ``owner``
        when it seeded the tree."""
        rng = np.random.default_rng(self.seed)
        order: dict[str, list[int]] = {}
        for i, t in enumerate(trajectories):
            order.setdefault(t.problem.id, []).append(i)
        problems = {pid: trajectories[ix[0]].problem for pid, ix in order.items()}
        # seeds: the pool's own trajectories; sample the missing roots in one call
        forest: dict[str, list[dict]] = {pid: [{"leaves": [trajectories[i]], "owner": i, "cost": [0, 0]} for i in ix]
                                         for pid, ix in order.items()}
        missing = [(pid, self.m_trees - len(ix)) for pid, ix in order.items() if len(ix) < self.m_trees]
        for need in sorted({n for _, n in missing}):
            pids = [pid for pid, n in missing if n == need]
            for pid, group in zip(pids, policy.sample([problems[pid] for pid in pids], need)):
                for t in group:
                    # a sampled root's cost is the labeling's: charge it to the problem's first trajectory
                    forest[pid].append({"leaves": [t], "owner": order[pid][0], "cost": [t.tokens_generated, 1]})
        for _ in range(self.l_rounds):
            asks: list[tuple[dict, Prefix]] = []
            for pid, trees in forest.items():
                for tree in trees:
                    inner = sorted({tuple(l.steps[:j]) for l in tree["leaves"] for j in range(1, len(l.steps))})
                    if not inner:
                        continue
                    for j in rng.choice(len(inner), size=self.n_branches, replace=len(inner) < self.n_branches):
                        asks.append((tree, Prefix(problems[pid], list(inner[int(j)]))))
            if not asks:
                break
            for (tree, _), group in zip(asks, policy.continue_from([p for _, p in asks], 1)):
                tree["leaves"].append(group[0])
                tree["cost"][0] += group[0].tokens_generated
                tree["cost"][1] += 1
        if self.k_leaves is not None:
            for trees in forest.values():
                for tree in trees:
                    rest = tree["leaves"][1:]
                    keep = rng.permutation(len(rest))[: max(0, self.k_leaves - 1)]
                    tree["leaves"] = tree["leaves"][:1] + [rest[int(j)] for j in sorted(keep)]
        return forest

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("tree labels need a policy to grow the rollout trees")
        if self.label_kind not in ("advantage", "value"):
            raise ValueError(f"label_kind must be 'advantage' or 'value', not {self.label_kind!r}")
        forest = self.label_trees(trajectories, policy)
        out: list[StepLabels | None] = [None] * len(trajectories)
        cost = [[0, 0] for _ in trajectories]
        for trees in forest.values():
            rewards = [[float(bool(l.outcome)) for l in tree["leaves"]] for tree in trees]
            advs = tree_grpo_advantages(rewards, self.eps)
            for tree, adv, rew in zip(trees, advs, rewards):
                cost[tree["owner"]][0] += tree["cost"][0]
                cost[tree["owner"]][1] += tree["cost"][1]
                seed = tree["leaves"][0]
                if seed is not trajectories[tree["owner"]]:
                    continue
                leaves = [l.steps for l in tree["leaves"]]
                values = []
                for j in range(len(seed.steps)):
                    prefix = seed.steps[: j + 1]
                    if self.label_kind == "advantage":
                        values.append(1.0 / (1.0 + math.exp(-node_credit(leaves, adv, prefix))))
                    else:
                        values.append(node_credit(leaves, rew, prefix))
                out[tree["owner"]] = values  # type: ignore[assignment]
        labels: list[StepLabels | None] = []
        for vals, (tok, n) in zip(out, cost):
            labels.append(StepLabels(list(vals), source=self.name, soft=True, policy_tokens=tok, rollouts=n))
        return labels
