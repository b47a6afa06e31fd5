"""``tree_grpo``: Tree-GRPO (Ji et al. 2025, "Tree Search for LLM Agent Reinforcement Learning",
arXiv 2509.21240; public code AMAP-ML/Tree-GRPO).

Rollouts are trees. Each problem grows ``m_trees`` (M) independent chains; then, for
``l_rounds`` (L) rounds, each tree picks ``n_branches`` (N) of its nodes (a leaf and a step
boundary of it, uniformly) and samples a fresh continuation from that prefix. Every leaf is a
complete solution with an outcome reward R. Two group-relative advantages are summed (their eq. 8;
the reference's ``tree`` estimator, ``verl/trainer/ppo/ray_trainer_ts.py`` lines 168-189):

    Â_intra(H) = (R(H) - mean_{leaves of H's tree} R) / (std_{tree} R + ε)
    Â_inter(H) = (R(H) - mean_{all leaves of the problem} R) / (std_{problem} R + ε)
    Â(H)       = Â_intra(H) + Â_inter(H)

``std`` is ``torch.std``'s unbiased estimate in the reference (``core_algos.py`` lines 111-155,
``compute_grpo_outcome_advantage``): ``std_ddof = 1`` by default, 0 for the population std.

How the tree's shared tokens are trained (``trunk_credit``):

* ``"per_leaf"`` (default, the reference): every leaf is one full root-to-leaf response with its
  own advantage on every token (``generation_ts.py`` lines 296-302 start each expansion from its
  node's accumulated ``responses``, line 636 returns each leaf's ``node.responses``, and
  ``tree_node.py`` line 254 on puts the leaf's score on its last token — Tree-GRPO's "base" mode).
  A trunk token shared by k leaves sits in k rows of the batch, so in GRPO's token-mean loss
  (:func:`selfprm.rl.grpo.grpo_loss`)

      L = -1/N Σ_leaves l Σ_{t in l's response} min(ρ_t Â(l), clip(ρ_t) Â(l)),   N = Σ_l |l|,

  its weight is ``Σ_{l below it} Â(l)`` — k times the mean — and N counts it k times.
* ``"mean"`` (a named deviation, this package's earlier behaviour): a shared step is one node,
  trained once (in the first leaf that holds it) with the mean advantage of the leaves below it,
  ``C(n) = mean_{l below n} Â(l)``; tokens written by one leaf alone carry that leaf's advantage.

Kept differences from the reference: branch points are a random leaf cut after 1..n-1 of its
steps (the reference's ``get_expand_node``, ``tree_node.py`` lines 132-143, draws among all inner
nodes, the root included); every leaf is kept (the reference keeps ``K`` per tree,
``sample_leaf``); nodes are reasoning steps, not agent turns. The sample budget counts leaves
(``M × (1 + L × N) == group_size``, as many complete solutions as GRPO's groups); the trainer also
counts the policy tokens the roots and expansions generate (a trunk given to an expansion is not
regenerated, so it is not counted again).
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


TRUNK_CREDIT = ("per_leaf", "mean")


@dataclass
class TreeGRPOConfig(GRPOConfig):
    """Tree-GRPO's sampling on top of GRPO's settings; the names are the paper's (and the ``tree``
    label source's) M, L, N.

    Parameters:
        m_trees: M, independent trees per problem.
        l_rounds: L, expansion rounds.
        n_branches: N, nodes each tree branches from per round.
        trunk_credit: ``"per_leaf"`` (the reference: each leaf a full response with its own
            advantage, a shared trunk trained once per leaf) or ``"mean"`` (the trunk trained
            once with its leaves' mean advantage).
        std_ddof: the advantage's std, 1 unbiased (the reference's ``torch.std``) or 0 population.
    """

    m_trees: int = 2
    l_rounds: int = 1
    n_branches: int = 3
    trunk_credit: str = "per_leaf"
    std_ddof: int = 1

    def __post_init__(self) -> None:
        if self.trunk_credit not in TRUNK_CREDIT:
            raise ValueError(f"trunk_credit {self.trunk_credit!r} is not one of {TRUNK_CREDIT}")


def node_credit(leaf_nodes: Sequence[Sequence], leaf_adv: Sequence[float]) -> dict:
    """Mean advantage of the leaves below each node (a node below a leaf is any node on its path)."""
    acc: dict = {}
    for nodes, a in zip(leaf_nodes, leaf_adv):
        for n in dict.fromkeys(nodes):
            s, k = acc.get(n, (0.0, 0))
            acc[n] = (s + a, k + 1)
    return {n: s / k for n, (s, k) in acc.items()}


def leaf_token_credit(segments: Sequence[Sequence[int]], leaf_nodes: Sequence[Sequence], leaf_adv: Sequence[float],
                      trunk_credit: str = "per_leaf") -> tuple[list[list[float]], list[list[bool]]]:
    """Every leaf's per-token advantage and train mask (see the module docstring).

    ``segments[i][t]`` is the step token ``t`` of leaf ``i`` writes (:func:`token_segments`; an
    index outside the leaf's steps is its answer line or leftovers), ``leaf_nodes[i][j]`` the tree
    node of its step ``j``, ``leaf_adv[i]`` its Â. ``"per_leaf"``: ``Â(l)`` on every token of the
    leaf's response, all trained. ``"mean"``: a node's tokens get ``C(n)`` and are trained in the
    first leaf that holds the node only.
    """
    if trunk_credit == "per_leaf":
        return [[a] * len(seg) for seg, a in zip(segments, leaf_adv)], [[True] * len(seg) for seg in segments]
    if trunk_credit != "mean":
        raise ValueError(f"trunk_credit {trunk_credit!r} is not one of {TRUNK_CREDIT}")
    credit = node_credit(leaf_nodes, leaf_adv)
    seen: set = set()
    rows, masks = [], []
    for seg, ns, a in zip(segments, leaf_nodes, leaf_adv):
        row, mask = [], []
        for s in seg:
            if 0 <= s < len(ns):
                row.append(credit[ns[s]])
                mask.append(ns[s] not in seen)  # a shared node's tokens are trained once
            else:  # answer line and leftovers: this leaf's own tokens
                row.append(a)
                mask.append(True)
        seen.update(ns)
        rows.append(row)
        masks.append(mask)
    return rows, masks


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
                              [r.meta["problem"] for r in rollouts], c.eps, c.std_ddof)
        nodes = [[(r.meta["problem"], r.meta["tree"], o, j) for j, o in enumerate(r.meta["origins"])] for r in rollouts]
        segs = [token_segments(trainer.tokenizer, r.completion_ids, trainer.domain.step_separator)
                if c.trunk_credit == "mean" else [0] * len(r.completion_ids) for r in rollouts]
        rows, masks = leaf_token_credit(segs, nodes, adv, c.trunk_credit)
        for r, mask in zip(rollouts, masks):
            r.train_mask = mask
        return rollouts, pad_token_values(rows)


def train_tree_grpo(model, tokenizer, domain, config: TreeGRPOConfig, train_problems: Sequence[Problem],
                    eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, TreeGRPOMethod(config)).train(train_problems, eval_problems, progress)


register_method("tree_grpo", MethodSpec(TreeGRPOConfig, lambda c, prm: TreeGRPOMethod(c)))
