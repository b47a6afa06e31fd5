"""``mcts``: AlphaLLM's η-MCTS over solution steps; per-step Q-values and sibling preference pairs.

Tian et al., *Toward Self-Improvement of LLMs via Imagination, Searching, and Criticizing*
(AlphaLLM), arXiv 2404.12253, §4.3-4.4; public code YeTianJHU/AlphaLLM (``search/mcts.py``).

A node is an *option*: one solution step (the option ends at the step separator). Every pool
trajectory of a problem is first inserted as a path in the problem's tree (its verified outcome
backed up, no tokens spent), so its steps are nodes and its labels are their Q-values. Then each
simulation

1. **selects** from the root by UCT until it reaches a node that may still grow an option,

       a* = argmax_a  Q(s, a) + c · sqrt(ln N(s) / N(s, a))          (``c_uct``)

2. **expands** it with one policy continuation whose first new step is the new option; the rest
   of the continuation is the fast rollout (below). A step that is the *same state* as a sibling
   (see *State merge*) is merged into it instead of opening a branch, and counts as a try;
3. **evaluates** the new node with AlphaLLM's critics, a weighted sum (the paper's β's; here
   normalised over the critics that gave a number, so that Q stays in [0, 1] and is a label)

       v̂(s) = (β_value · V(s) + β_PRM · PRM(s) + β_ORM · R_outcome) / (β_value + β_PRM + β_ORM)

   - ``V``: a value function, the policy's backbone with a scalar head (a ``ProcessRewardModel``
     read at the node's last step), regressed with soft BCE on Monte Carlo values of prefixes:
     the mean verified outcome of the pool trajectories through each prefix (the policy's own
     samples: the paper's value function is fitted to MC returns of the policy's rollouts).
     Trained before the search.
   - ``PRM``: a process reward model of the same shape, scoring the node's last step, trained
     with soft BCE on the search's own step signal: the Monte Carlo Q of every node of the
     *other* fold's trees after the first ``prm_after`` share of the rounds (the mean verified
     outcome of the pool paths and rollouts through the node — outcomes only, no critic values,
     so no fold's outcomes reach the other fold through a critic). Until it is trained, the
     value is mixed from the other critics.
   - ``R_outcome``: the rollout's verified outcome (the domain checks the answer), standing in
     for the paper's ORM on a fast rollout: the continuation that made the option went on to an
     answer, and that answer is checked exactly.

   ``critics`` picks which are on; ``("outcome",)`` is plain UCT on one rollout (no model
   needed: the only choice for a policy without ``.model``, e.g. a ``SimulatedPolicy``).
4. **backs up** ``v̂`` along the path: ``N += 1``, ``Q = W / N``.

*Cross-fitting.* ``V`` and ``PRM`` are cross-fitted like ``implicit``: the call's problems are
dealt into ``n_folds`` folds (``seed``); model ``k`` trains on every other fold and evaluates only
the nodes of fold ``k``'s trees. A call needs at least ``n_folds`` distinct problems when a trained
critic is on.

*Importance-based adaptive branching* (``branching="importance"``, §4.3). The importance of a
node is how much the choice of option there moves the value,

    I(s) = max_{o} | v([s, o]) − v(s) |,

with ``v`` each node's current value estimate ``Q`` (its critic evaluation, refined by backups),
over the children that have one. The number of options a node may hold grows with it,

    c(s) = max(c_min, min(⌊α · I(s)⌋ + 1, c_max))       (``min_children``, ``branch_alpha``, ``max_children``)

so the expansions go where the step matters. ``branching="spread"`` keeps this module's earlier
rule — ``max_children`` options once the children's Q-values spread (standard deviation ≥
``spread_threshold``), else ``min_children`` — a deviation from the paper, kept for comparison.

*State merge.* Two steps are one state when their *merge keys* are equal. ``merge="canonical"``
(default): all whitespace removed and every integer written without leading zeros, so on arith
``7+5=2``, ``7 + 5 = 2`` and ``07+5=02`` — the same computation writing the same value — are one
state, while ``7+5=3`` (another value) or ``7*5=5`` (another computation) are not. ``"exact"``:
equal up to runs of whitespace. With ``merge_threshold < 1`` a step also merges into a sibling
whose key is at least that similar (``difflib`` ratio; on arith this joins different values, so it
is off by default). The rule is textual on purpose: arith's oracle (``ArithDomain.trace``) is the
ground truth the labels are scored against, so the search does not consult it; as its parser
takes no inner spaces, the oracle calls ``7 + 5 = 2`` invalid while the merge treats it as
``7+5=2``. Pool paths are inserted with the same rule.

*Preference pairs.* :meth:`MCTSLabels.preference_pairs` lists, for every node of the last call's
trees, the sibling pairs whose Q differ by at least ``pair_margin``;
:meth:`MCTSLabels.write_preference_pairs` writes them for TRL's ``DPOTrainer`` in its *standard*
(not conversational) layout, one JSON object a line with exactly ``prompt`` (the problem and the
shared prefix steps, rendered as the policy reads them, ending with the step separator),
``chosen`` (the step with the higher Q) and ``rejected``.

*Cost.* ``policy_tokens`` and ``rollouts`` of a problem's search are split evenly over its
trajectories. ``token_passes`` counts the critics' compute: training (forward + backward over
every sequence of every step, each counted) split evenly over the trajectories of the problems
each model trained on, and scoring forwards of the nodes of a problem's tree, split over its
trajectories. ``critic_token_passes_`` holds the totals.

After a call (None before): ``trees_`` (problem id -> (problem, root)), ``folds_`` (per
trajectory its fold; None when no trained critic is on), ``critics_`` (critic name -> the
:class:`~selfprm.labels.critics.CrossFitCritic`, its models, ``trained_on`` problem sets and
losses), ``critic_token_passes_`` (``value_train``, ``prm_train``, ``scoring``), ``domain_``
(the policy's domain, to render preference prompts).

Not matched from the paper: the critics are tiny copies of the policy trained for a few epochs
on one call's pool, not separately trained large models; the ORM is replaced by the verifier;
one fast rollout per expansion (the expansion's own continuation), not several from a separate
small rollout policy; ``c_min``/``c_max`` are constants, not functions of the depth; state merge
is a text rule, not the paper's clustering with a model-based or edit-distance similarity (whose
public code resamples an expansion up to 5 times until it differs from its siblings; here a
duplicate is merged and counts as a try); the prompts are the pool's, not synthesised.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from selfprm.labels.base import register
from selfprm.labels.critics import CrossFitCritic, fit_cross
from selfprm.labels.folds import assign_problem_folds
from selfprm.policies.base import Policy, Prefix
from selfprm.prm.model import PRMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.types import Problem, StepLabels, Trajectory, atomic_write_text

CRITICS = ("value", "prm", "outcome")
BRANCHING = ("importance", "spread")
MERGE_RULES = ("canonical", "exact")
_INT = re.compile(r"\d+")


# ----------------------------------------------------------------------------- the tree


@dataclass(eq=False)
class Node:
    steps: tuple[str, ...]
    parent: "Node | None" = None
    children: dict[str, "Node"] = field(default_factory=dict)  # by merge key
    visits: int = 0
    total: float = 0.0
    terminal: bool = False  # the solution ended here (an answer, right or wrong)
    tries: int = 0  # expansions asked of this node (a merged duplicate is a try that added no option)
    # verified outcomes alone (pool paths and rollouts through the node): its Monte Carlo estimate
    mc_visits: int = 0
    mc_total: float = 0.0

    @property
    def q(self) -> float:
        return self.total / self.visits if self.visits else 0.0

    @property
    def mc_q(self) -> float:
        return self.mc_total / self.mc_visits if self.mc_visits else 0.0

    @property
    def text(self) -> str:
        """The option's step text (the first written form of a merged state)."""
        return self.steps[-1] if self.steps else ""


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


def importance(node: Node) -> float:
    """AlphaLLM's I(s) = max over options |v([s, o]) − v(s)|, with v a node's Q; 0 without a visited child."""
    diffs = [abs(ch.q - node.q) for ch in node.children.values() if ch.visits]
    return max(diffs, default=0.0)


def allowed_children(node: Node, c_min: int, c_max: int, alpha: float) -> int:
    """Importance-based branching: c(s) = max(c_min, min(⌊α·I(s)⌋ + 1, c_max))."""
    return max(c_min, min(int(math.floor(alpha * importance(node))) + 1, c_max))


def allowed_children_spread(node: Node, lo: int, hi: int, spread: float) -> int:
    """The earlier rule (a deviation): ``hi`` options where the children's Q-values spread, else ``lo``."""
    qs = [ch.q for ch in node.children.values() if ch.visits]
    return hi if len(qs) >= 2 and float(np.std(qs)) >= spread else lo


def backup(node: Node | None, value: float, outcome: float | None = None) -> None:
    """Add ``value`` (and a verified ``outcome``, when given, to the MC statistics) up to the root."""
    while node is not None:
        node.visits += 1
        node.total += value
        if outcome is not None:
            node.mc_visits += 1
            node.mc_total += outcome
        node = node.parent


def merge_key(step: str, rule: str = "canonical") -> str:
    """The state a step leads to, as text: equal keys are one state (see the module doc)."""
    if rule == "canonical":
        return _INT.sub(lambda m: str(int(m.group())), "".join(step.split()))
    if rule == "exact":
        return " ".join(step.split())
    raise ValueError(f"unknown merge rule {rule!r}; choose from {MERGE_RULES}")


def add_child(node: Node, step: str, rule: str = "canonical", merge_threshold: float = 1.0) -> Node:
    """The child for ``step``: a sibling it merges into (same key, or a key at least
    ``merge_threshold`` similar) or a new node."""
    key = merge_key(step, rule)
    if key in node.children:
        return node.children[key]
    if merge_threshold < 1.0:
        for k, ch in node.children.items():
            if difflib.SequenceMatcher(None, k, key).ratio() >= merge_threshold:
                return ch
    ch = Node(node.steps + (step,), parent=node)
    node.children[key] = ch
    return ch


def insert_path(root: Node, steps: Sequence[str], outcome: bool, rule: str = "canonical") -> list[Node]:
    """Insert a known trajectory as a path (states merged by ``rule``) and back up its outcome."""
    node, path = root, []
    for s in steps:
        node = add_child(node, s, rule)
        path.append(node)
    if path:  # an answer with no steps leaves the root open to search
        node.terminal = True
    backup(node, float(bool(outcome)), float(bool(outcome)))
    return path


def combine(scores: dict[str, float | None], weights: dict[str, float]) -> float:
    """AlphaLLM's weighted sum of critic values, normalised over the critics that gave a number."""
    num = den = 0.0
    for name, v in scores.items():
        w = weights.get(name, 0.0)
        if v is None or w <= 0 or math.isnan(v):
            continue
        num += w * v
        den += w
    if den == 0:
        raise ValueError(f"no critic gave a value (scores {scores}, weights {weights})")
    return num / den


def leaf_paths(root: Node) -> list[list[Node]]:
    """Every root-to-leaf path (root excluded), in a fixed order."""
    out, stack = [], [(root, [])]
    while stack:
        node, path = stack.pop()
        if not node.children and path:
            out.append(path)
        for ch in reversed(list(node.children.values())):
            stack.append((ch, path + [ch]))
    return out


def _spread(total: int, n: int) -> list[int]:
    base, extra = divmod(int(total), n)
    return [base + (1 if j < extra else 0) for j in range(n)]


# ----------------------------------------------------------------------------- the source


def _default_critic_model() -> PRMConfig:
    return PRMConfig(max_length=256)


def _default_critic_train() -> PRMTrainConfig:
    return PRMTrainConfig(loss="soft_bce", epochs=3, batch_size=32, lr=1e-3, head_lr=1e-2)


@register("mcts")
@dataclass
class MCTSLabels:
    """η-MCTS with AlphaLLM's critics (see the module doc).

    Parameters:
        n_simulations: simulations per pool trajectory (a problem's tree gets the sum over its trajectories).
        c_uct: UCT exploration constant (AlphaLLM's public script: 1).
        branching: ``importance`` (the paper's c(s) from I(s)) or ``spread`` (the earlier rule, a deviation).
        min_children: c_min, the fewest options a node may hold before UCT descends past it.
        max_children: c_max, the most.
        branch_alpha: α of c(s) = ⌊α·I(s)⌋ + 1 (Q in [0, 1]: I = 0.5 gives 4 at α = 6).
        spread_threshold: ``branching="spread"`` only: the children's Q standard deviation that widens a node.
        merge: ``canonical`` (whitespace and leading zeros ignored) or ``exact`` (runs of whitespace ignored).
        merge_threshold: also merge a step into a sibling whose key is at least this similar (1.0: off).
        critics: which of ``value``, ``prm``, ``outcome`` evaluate a new node.
        beta_value: β_value, weight of the value function V.
        beta_prm: β_PRM, weight of the PRM.
        beta_orm: β_ORM, weight of the verified rollout outcome (the paper's ORM on a fast rollout).
        prm_after: share of the rounds searched before the PRM critic is trained on the trees' Q.
        n_folds: cross-fitting folds of problems for the trained critics.
        critic_model: the critics' shape (a ``PRMConfig``; ``max_length`` is cut to the policy's context).
        critic_train: the critics' training (soft BCE; epochs, batch, learning rates).
        critic_batch_size: sequences per critic scoring forward.
        pair_margin: least Q difference of a preference pair.
        seed: fold split, critic initialisation and batch order.
    """

    n_simulations: int = 8
    c_uct: float = 1.0
    branching: str = "importance"
    min_children: int = 2
    max_children: int = 4
    branch_alpha: float = 6.0
    spread_threshold: float = 0.2
    merge: str = "canonical"
    merge_threshold: float = 1.0
    critics: tuple[str, ...] = CRITICS
    beta_value: float = 1.0
    beta_prm: float = 1.0
    beta_orm: float = 1.0
    prm_after: float = 0.5
    n_folds: int = 2
    critic_model: PRMConfig = field(default_factory=_default_critic_model)
    critic_train: PRMTrainConfig = field(default_factory=_default_critic_train)
    critic_batch_size: int = 64
    pair_margin: float = 0.3
    seed: int = 0
    name: str = "mcts"
    prm_loss: str = "soft_bce"

    def __post_init__(self) -> None:
        self.critics = tuple(self.critics)
        # what the last call fitted (None until the first call)
        self.trees_: dict[str, tuple[Problem, Node]] | None = None  # by problem id
        self.folds_: list[int] | None = None  # per trajectory: its fold (the critics that scored its tree)
        self.critics_: dict[str, CrossFitCritic] | None = None  # "value" / "prm" -> the fitted critic
        self.critic_token_passes_: dict[str, int] | None = None
        self.domain_: Any = None

    def _check(self) -> None:
        unknown = [c for c in self.critics if c not in CRITICS]
        if unknown or not self.critics:
            raise ValueError(f"critics must be a non-empty subset of {CRITICS}, not {self.critics!r}")
        if self.branching not in BRANCHING:
            raise ValueError(f"branching must be one of {BRANCHING}, not {self.branching!r}")
        if self.merge not in MERGE_RULES:
            raise ValueError(f"merge must be one of {MERGE_RULES}, not {self.merge!r}")
        if not 1 <= self.min_children <= self.max_children:
            raise ValueError("need 1 <= min_children <= max_children")

    @property
    def weights(self) -> dict[str, float]:
        w = {"value": self.beta_value, "prm": self.beta_prm, "outcome": self.beta_orm}
        return {k: v for k, v in w.items() if k in self.critics}

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("mcts labels need a policy to expand the search tree")
        self._check()
        trained = [c for c in ("value", "prm") if c in self.critics]
        if trained and (getattr(policy, "model", None) is None or getattr(policy, "tokenizer", None) is None):
            raise TypeError(f"mcts critics {trained} train on a copy of the policy's model: they need a policy with "
                            f".model and .tokenizer (an HFPolicy); got {type(policy).__name__}. For a policy "
                            "without a model pass critics=('outcome',) (plain UCT on the rollout's outcome).")
        trajectories = list(trajectories)
        trees: dict[str, tuple[Problem, Node]] = {}
        members: dict[str, list[int]] = {}
        paths = []
        for i, t in enumerate(trajectories):
            _, root = trees.setdefault(t.problem.id, (t.problem, Node(())))
            members.setdefault(t.problem.id, []).append(i)
            paths.append(insert_path(root, t.steps, bool(t.outcome), self.merge))
        sims = {pid: self.n_simulations * len(ix) for pid, ix in members.items()}
        fold_of = assign_problem_folds(list(trees), self.n_folds, self.seed, "mcts critics") if trained else {}
        self.trees_, self.domain_ = trees, getattr(policy, "domain", None)
        self.folds_ = [fold_of[t.problem.id] for t in trajectories] if trained else None
        critics: dict[str, CrossFitCritic] = {}
        ledger = {"value_train": 0, "prm_train": 0, "scoring": 0}
        train_passes = [0] * len(trajectories)
        prob_passes = {pid: 0 for pid in trees}  # scoring forwards of each tree's nodes
        cost = {pid: [0, 0] for pid in trees}  # policy tokens, rollouts

        def fit(name: str, data) -> None:
            crit = fit_cross(policy, name, data, fold_of, self.n_folds, self.critic_model, self.critic_train,
                             self.seed, self.critic_batch_size, progress)
            critics[name] = crit
            ledger[f"{name}_train"] += sum(crit.train_passes)
            for k, p in enumerate(crit.train_passes):
                owners = [i for pid in trees if pid in crit.trained_on[k] for i in members[pid]]
                for i, share in zip(owners, _spread(p, len(owners))):
                    train_passes[i] += share

        if "value" in trained:
            # V: Monte Carlo values of the pool's prefixes (mean verified outcome through each node)
            fit("value", [(t.problem.id, t, StepLabels([n.mc_q for n in path], "mcts-value", soft=True))
                          for t, path in zip(trajectories, paths) if t.outcome is not None and t.steps])
        self.critics_ = critics
        rounds = max(sims.values(), default=0)
        prm_round = math.ceil(self.prm_after * rounds) if "prm" in trained else None
        for r in tqdm(range(rounds), desc=f"{self.name} simulations", disable=not progress, leave=False):
            if r == prm_round:
                fit("prm", self._prm_data(trees))
            # one simulation per tree per round, all expansions in one policy call
            leaves = [(pid, prob, self._select(root)) for pid, (prob, root) in trees.items() if r < sims[pid]]
            for _, _, n in leaves:
                if n.terminal:  # a finished solution: its value is its value again
                    backup(n, n.q)
            asks = [(pid, prob, n) for pid, prob, n in leaves if not n.terminal]
            if not asks:
                continue
            groups = policy.continue_from([Prefix(prob, list(n.steps)) for _, prob, n in asks], 1)
            new_nodes = []
            for (pid, prob, node), group in zip(asks, groups):
                roll = group[0]
                node.tries += 1
                cost[pid][0] += roll.tokens_generated
                cost[pid][1] += 1
                if len(roll.steps) > len(node.steps):
                    child = add_child(node, roll.steps[len(node.steps)], self.merge, self.merge_threshold)
                    child.terminal = child.terminal or len(roll.steps) == len(child.steps)
                else:  # the continuation answered at once: the node is a finished solution
                    node.terminal, child = True, node
                new_nodes.append((pid, prob, child, float(bool(roll.outcome))))
            values, passes = self._evaluate(new_nodes, critics, fold_of)
            for (pid, _, child, outcome), v, p in zip(new_nodes, values, passes):
                backup(child, v, outcome)
                prob_passes[pid] += p
                ledger["scoring"] += p
        self.critic_token_passes_ = ledger
        out: list[StepLabels | None] = []
        shares: dict[int, tuple[int, int, int]] = {}
        for pid, ix in members.items():
            for i, tok, rol, tp in zip(ix, _spread(cost[pid][0], len(ix)), _spread(cost[pid][1], len(ix)),
                                       _spread(prob_passes[pid], len(ix))):
                shares[i] = (tok, rol, tp)
        for i, path in enumerate(paths):
            tok, rol, tp = shares[i]
            vals = [min(1.0, max(0.0, n.q)) for n in path]
            out.append(StepLabels(vals, source=self.name, soft=True, policy_tokens=tok, rollouts=rol,
                                  token_passes=tp + train_passes[i]))
        return out

    # ------------------------------------------------------------------ pieces
    def _select(self, root: Node) -> Node:
        node = root
        while not node.terminal:
            if self.branching == "importance":
                cap = allowed_children(node, self.min_children, self.max_children, self.branch_alpha)
            else:
                cap = allowed_children_spread(node, self.min_children, self.max_children, self.spread_threshold)
            if max(len(node.children), node.tries) < cap:
                return node  # may still grow an option (duplicates count, so a sure policy moves on)
            node = uct_child(node, self.c_uct)
        return node

    def _prm_data(self, trees: dict[str, tuple[Problem, Node]]) -> list[tuple[str, Trajectory, StepLabels]]:
        """The PRM's training set: every root-to-leaf path of every tree, labelled with the
        nodes' Monte Carlo Q (verified outcomes only); ``fit_cross`` keeps the other folds'."""
        data = []
        for pid, (prob, root) in trees.items():
            for path in leaf_paths(root):
                labs = StepLabels([n.mc_q for n in path], "mcts-prm", soft=True,
                                  weights=[1.0 if n.mc_visits else 0.0 for n in path])
                data.append((pid, Trajectory(prob, list(path[-1].steps)), labs))
        return data

    def _evaluate(self, new_nodes: Sequence[tuple[str, Problem, Node, float]], critics: dict[str, CrossFitCritic],
                  fold_of: dict[str, int]) -> tuple[list[float], list[int]]:
        """The combined critic value of each new node and the critic token positions it cost."""
        scores: list[dict[str, float | None]] = [{} for _ in new_nodes]
        passes = [0] * len(new_nodes)
        for name in ("value", "prm"):
            if name not in critics:
                continue
            got, used = critics[name].score([fold_of[pid] for pid, _, _, _ in new_nodes],
                                            [prob.prompt for _, prob, _, _ in new_nodes],
                                            [n.steps for _, _, n, _ in new_nodes])
            for j, (v, p) in enumerate(zip(got, used)):
                scores[j][name] = v
                passes[j] += p
        if "outcome" in self.critics:
            for j, (_, _, _, outcome) in enumerate(new_nodes):
                scores[j]["outcome"] = outcome
        w = self.weights
        values = []
        for j, (_, _, _, outcome) in enumerate(new_nodes):
            # a node no critic could score (the root, answered at once, with only model critics on)
            has = any(v is not None and not math.isnan(v) and w.get(k, 0) > 0 for k, v in scores[j].items())
            values.append(combine(scores[j], w) if has else outcome)
        return values, passes

    # ------------------------------------------------------------------ preference pairs
    def preference_pairs(self) -> list[dict[str, Any]]:
        """Sibling pairs of the last call's trees whose Q differ by at least ``pair_margin``:
        ``problem_id``, ``prompt`` (the problem's), ``prefix`` (the shared steps), ``chosen`` and
        ``rejected`` (the two steps), their Q-values and ``margin``."""
        out = []
        for prob, root in (self.trees_ or {}).values():
            stack = [root]
            while stack:
                node = stack.pop()
                kids = [ch for ch in node.children.values() if ch.visits]
                stack.extend(node.children.values())
                for a in kids:
                    for b in kids:
                        if a.q - b.q >= self.pair_margin:
                            out.append({"problem_id": prob.id, "prompt": prob.prompt, "prefix": list(node.steps),
                                        "chosen": a.text, "rejected": b.text, "chosen_q": a.q,
                                        "rejected_q": b.q, "margin": a.q - b.q})
        return out

    def render_prompt(self, problem: Problem, prefix: Sequence[str]) -> str:
        """The text the policy continues from: the domain's rendering (prompt, then each step and
        its separator), or the line format when no domain is known."""
        render = getattr(self.domain_, "render", None)
        if render is not None:
            return render(problem, list(prefix))
        return problem.prompt + "\n" + "".join(s + "\n" for s in prefix)

    def write_preference_pairs(self, path: str | Path) -> int:
        """Write :meth:`preference_pairs` as TRL DPO *standard*-format JSONL (``prompt``, ``chosen``,
        ``rejected`` and nothing else), atomically; returns the number of records."""
        if self.trees_ is None:
            raise RuntimeError("mcts has no fitted trees: call label() first")
        lines = [json.dumps({"prompt": self.render_prompt(self.trees_[p["problem_id"]][0], p["prefix"]),
                             "chosen": p["chosen"], "rejected": p["rejected"]}, ensure_ascii=False)
                 for p in self.preference_pairs()]
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        return len(lines)
