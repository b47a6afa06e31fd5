"""``tree_grpo``: Tree-GRPO (Ji et al. 2025, "Tree Search for LLM Agent Reinforcement Learning",
arXiv 2509.21240).

Rollouts are trees. Each problem grows ``m_trees`` (M) independent chains; then, for
``l_rounds`` (L) rounds, each tree picks ``n_branches`` (N) of its nodes (a leaf and a step
boundary of it, uniformly) and samples a fresh continuation from that prefix. Every leaf is a
complete solution with an outcome reward R. Two group-relative advantages are summed (their eq. 8):

    Â_intra(H) = (R(H) - mean_{leaves of H's tree} R) / std_{tree}
    Â_inter(H) = (R(H) - mean_{all leaves of the problem} R) / std_{problem}
    Â(H)       = Â_intra(H) + Â_inter(H)

A step shared by several leaves (the trunk above a branch point) is one node of the tree; its
tokens are trained once, credited with the mean advantage of the leaves below it — the
tree-structured credit that turns outcome rewards into step-level signal. Tokens written by one
leaf alone carry that leaf's advantage. The budget counts leaves, so the method samples as many
complete solutions as GRPO's groups (``M × (1 + L × N) == group_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.policies.base import Prefix
from selfprm.rl.advantages import tree_advantages
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, TrainResult, outcome_rewards, pad_token_values
from selfprm.rl.rollout import Rollout, token_segments
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method


@dataclass
class TreeGRPOConfig(GRPOConfig):
    """Tree-GRPO's sampling on top of GRPO's settings; the names are the paper's (and the ``tree``
    label source's) M, L, N.

    Parameters:
        m_trees: M, independent trees per problem.
        l_rounds: L, expansion rounds.
        n_branches: N, nodes each tree branches from per round.
    """

    m_trees: int = 2
    l_rounds: int = 1
    n_branches: int = 3


def node_credit(leaf_nodes: Sequence[Sequence], leaf_adv: Sequence[float]) -> dict:
    """Mean advantage of the leaves below each node (a node below a leaf is any node on its path)."""
    acc: dict = {}
    for nodes, a in zip(leaf_nodes, leaf_adv):
        for n in dict.fromkeys(nodes):
            s, k = acc.get(n, (0.0, 0))
            acc[n] = (s + a, k + 1)
    return {n: s / k for n, (s, k) in acc.items()}


class TreeGRPOMethod:
    name = "tree_grpo"

    def __init__(self, config: TreeGRPOConfig | None = None):
        self.config = config or TreeGRPOConfig()
        c = self.config
        leaves = c.m_trees * (1 + c.l_rounds * c.n_branches)
        if leaves != c.group_size:
            raise ValueError(f"m_trees × (1 + l_rounds × n_branches) = {leaves} leaves, but group_size is {c.group_size}")

    def rollouts(self, trainer: GRPOTrainer, problems: list[Problem], step: int) -> list[Rollout]:
        c, rng = self.config, trainer.rng
        roots = trainer.sample([Prefix(p, []) for p in problems], c.m_trees, step)
        leaves: list[Rollout] = []
        # origin[j] of a leaf: which generation wrote its step j (a node is (origin, j))
        for i, r in enumerate(roots):
            r.meta.update(problem=r.group, tree=i % c.m_trees, origins=[("g", i)] * len(r.trajectory.steps),
                          own=("g", i))
            leaves.append(r)
        n_gen = len(roots)
        for _ in range(c.l_rounds):
            picks = []
            for pi in range(len(problems)):
                for t in range(c.m_trees):
                    pool = [l for l in leaves if l.meta["problem"] == pi and l.meta["tree"] == t]
                    for _ in range(c.n_branches):
                        leaf = pool[int(rng.integers(len(pool)))]
                        n = len(leaf.trajectory.steps)
                        cut = int(rng.integers(1, n)) if n >= 2 else 0  # keep 1..n-1 steps of the trunk
                        picks.append((leaf, cut))
            new = trainer.sample([Prefix(l.trajectory.problem, l.trajectory.steps[:cut]) for l, cut in picks], 1, step,
                                 groups=[l.group for l, _ in picks])
            for (leaf, cut), r in zip(picks, new):
                gid = ("g", n_gen)
                n_gen += 1
                n_new = len(r.trajectory.steps) - cut
                r.meta.update(problem=leaf.meta["problem"], tree=leaf.meta["tree"],
                              origins=leaf.meta["origins"][:cut] + [gid] * n_new, own=gid)
                leaves.append(r)
        return leaves

    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c = self.config
        adv = tree_advantages(outcome_rewards(rollouts), [r.meta["tree"] for r in rollouts],
                              [r.meta["problem"] for r in rollouts], c.eps)
        nodes = [[(r.meta["problem"], r.meta["tree"], o, j) for j, o in enumerate(r.meta["origins"])] for r in rollouts]
        credit = node_credit(nodes, adv)
        seen: set = set()
        rows = []
        for r, a, ns in zip(rollouts, adv, nodes):
            seg = token_segments(trainer.tokenizer, r.completion_ids, trainer.domain.step_separator)
            row, mask = [], []
            for s in seg:
                node = ns[s] if 0 <= s < len(ns) else None
                if node is None:  # answer line and leftovers: this leaf's own tokens
                    row.append(a)
                    mask.append(True)
                else:
                    row.append(credit[node])
                    # a shared node's tokens are trained once, in the first leaf that holds them
                    mask.append(node not in seen)
            for node in ns:
                seen.add(node)
            r.train_mask = mask
            rows.append(row)
        return rollouts, pad_token_values(rows)


def train_tree_grpo(model, tokenizer, domain, config: TreeGRPOConfig, train_problems: Sequence[Problem],
                    eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, TreeGRPOMethod(config)).train(train_problems, eval_problems, progress)


register_method("tree_grpo", MethodSpec(TreeGRPOConfig, lambda c, prm: TreeGRPOMethod(c)))
