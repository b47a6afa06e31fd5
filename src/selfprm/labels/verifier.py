"""A learned verifier judge: an outcome-supervised value model, cross-fitted, that names first errors.

Consensus filtering (:mod:`selfprm.labels.consensus`) needs a second opinion on where a solution
first goes wrong that is a *different kind of signal* from Monte Carlo rollouts. This one is
learned from the only free signal there is, final-answer outcomes, and reads no rollouts.

**The model.** An outcome-supervised verifier in the sense of Cobbe et al., *Training Verifiers to
Solve Math Word Problems* (arXiv 2110.14168: a token-level verifier that predicts, at every token of a
solution, whether the solution will end right, trained on final-answer correctness only) and
Uesato et al., *Solving math word problems with process- and outcome-based feedback* (arXiv
2211.14275: the ORM, outcome labels broadcast to every step, read at each step as a value of
the prefix). It is a :class:`~selfprm.prm.model.ProcessRewardModel` (a linear head on a causal
LM, one forward scores every step) on a *copy of the policy's own weights*, trained with BCE on
the outcome broadcast to every step prefix::

    L = - Σ_i [ o · log V_i + (1 - o) · log(1 - V_i) ] / n,   V_i = σ(w · h_{t_i} + b),   o = 1[answer right]

With a causal backbone ``V_i`` sees only steps ``1..i``, so it estimates the value of the prefix,
``V_i ≈ P(the solution ends right | steps 1..i)``: flat while the steps are sound, falling at the
step that dooms the solution (Uesato et al. found their ORM's step scores agreed with human step
labels more often, 85%, than with the outcome labels it was trained on, 77%).

**Its first error.** The judge names the first step whose prefix value falls below a threshold,

    fe = min { i : V_i < τ }        (-1 when there is none),

and ``τ`` is tuned on free signal only: on the model's own training fold, ``τ`` maximises the
balanced accuracy with which ``min_i V_i ≥ τ`` predicts the outcome (so "the judge names an error"
and "the judge expects a wrong answer" are the same event), the midpoint of the best run of
candidates on ties. ``threshold=`` fixes ``τ`` instead.

**Cross-fitting.** A verifier that has seen a solution's outcome would only repeat it. The
problems (not trajectories: samples of one problem share most of their steps) are split into
``n_folds`` folds; model ``k`` is trained on every fold but ``k`` and judges fold ``k`` only, so no
trajectory is judged by a model trained on it (nor on its problem). ``fold_`` (the fold of each
trajectory, which is also the model that judged it) and ``trained_on_`` (the problem ids of each
model's training folds) record it.

**Cost.** ``token_passes_`` per trajectory: ``2 · epochs · n`` for each model it trains (forward +
backward over its ``n`` token positions, as :func:`~selfprm.prm.train.train_prm` counts them),
``n`` for each in-sample scoring that tunes ``τ``, and ``n`` for being judged. No policy tokens.

**Measured** (the demo's SFT'd width-128, 2-layer Llama policy, its 800 sampled arith solutions,
31% with a wrong answer; exact oracle first errors; default settings): on the solutions with an
error the verifier names the first one exactly for 32% (outcome broadcast, "step 0 if the answer is
wrong": 9%), and it flags 32% of the sound ones (outcome broadcast: 3%); without the surprise
features (8 epochs) it names 7%. As the judge of ``consensus`` against hard MC labels (4 rollouts, themselves
84% right) on the 240 solutions of the train split, the kept 53% were 90% right. Training and judging
1000 solutions of ~54 tokens took 6.5 s of one CPU core per epoch plus ~2 s (both folds).

Deviations: Qwen's judge (arXiv 2501.07301) is a large instruction-tuned LLM (Qwen2.5-72B-Instruct)
prompted to critique each step; this is a small model trained for the purpose, initialised from
the policy, and its errors correlate with the policy's own blind spots more than a stronger judge's
would. Cobbe et al. train the verifier on many samples per problem (100) and jointly with the
LM objective; here a few epochs of BCE only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np
import torch

from selfprm.labels.critics import build_critic
from selfprm.labels.folds import trajectory_folds
from selfprm.types import StepLabels, Trajectory


@dataclass
class VerifierConfig:
    """How the outcome-supervised verifier is fitted and read.

    Parameters:
        epochs: passes over each model's training folds.
        batch_size: trajectories per optimizer step.
        lr: learning rate of the backbone (a copy of the policy's weights).
        head_lr: learning rate of the value head.
        surprise_features: the head also reads the policy LM's token log-probs (see prm/model.py).
        n_folds: cross-fitting folds (of problems); one model per fold, each judging its own fold.
        threshold: a fixed ``τ``; None tunes it on each model's training fold (the module doc).
        max_length: tokens per solution; longer ones are cut from the left.
        seed: fold split, head init and batch order.
    """

    epochs: int = 6
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float = 5e-2
    surprise_features: bool = True
    n_folds: int = 2
    threshold: float | None = None
    max_length: int = 512
    seed: int = 0


def first_below(values: Sequence[float], tau: float) -> int:
    """Index of the first value below ``tau`` (NaN, a step cut off by truncation, never is); -1 if none."""
    for i, v in enumerate(values):
        if not math.isnan(v) and v < tau:
            return i
    return -1


def tune_outcome_threshold(min_values: Sequence[float], outcomes: Sequence[bool]) -> float:
    """The ``τ`` at which ``min_value ≥ τ`` best predicts ``outcome`` (balanced accuracy).

    Candidates are 0, 1 and the midpoints between consecutive distinct values; of the best ones
    (ties) the middle one is taken, so a clean gap between the classes is split down the middle.
    A class that is absent drops out of the balanced accuracy.
    """
    v = np.asarray(min_values, dtype=float)
    y = np.asarray(outcomes, dtype=bool)
    u = np.unique(v[~np.isnan(v)])
    cands = np.concatenate([[0.0], (u[1:] + u[:-1]) / 2 if len(u) > 1 else [], [1.0]])
    pos, neg = y.sum(), (~y).sum()
    scores = []
    for tau in cands:
        ok = v >= tau  # NaN (nothing scored) is never flagged: compares False, so count it as ok
        ok |= np.isnan(v)
        parts = []
        if pos:
            parts.append((ok & y).sum() / pos)
        if neg:
            parts.append((~ok & ~y).sum() / neg)
        scores.append(np.mean(parts) if parts else 0.0)
    scores = np.asarray(scores)
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(cands[best[len(best) // 2]])


class OutcomeVerifier:
    """The cross-fitted outcome-supervised verifier of the module doc, on a copy of ``policy.model``.

    ``policy`` must carry a causal LM (an :class:`~selfprm.policies.hf.HFPolicy`: ``.model``,
    ``.tokenizer``, ``.domain``); its weights are never changed. Configure with a
    :class:`VerifierConfig` or its fields as keywords.

    After :meth:`first_errors` (all None before): ``fold_`` (per trajectory: its fold, the index
    of the model that judged it), ``trained_on_`` (per model: the problem ids it trained on),
    ``values_`` (per trajectory: the judging model's prefix values ``V_i``), ``thresholds_`` (per
    model: its ``τ``), ``token_passes_`` (per trajectory, see the module doc), ``losses_`` (per
    model: its training losses) and ``seconds_`` (wall time of the call).
    """

    def __init__(self, policy: Any, config: VerifierConfig | None = None, **overrides: Any):
        if policy is None or getattr(policy, "model", None) is None or getattr(policy, "tokenizer", None) is None:
            raise TypeError("the verifier judge starts from the policy's causal LM: it needs a policy with .model "
                            f"and .tokenizer (an HFPolicy); got {type(policy).__name__}")
        known = {f.name for f in fields(VerifierConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown verifier settings {unknown}; choose from {sorted(known)}")
        self.policy = policy
        self.config = replace(config or VerifierConfig(), **overrides)
        if self.config.n_folds < 2:
            raise ValueError(f"cross-fitting needs n_folds >= 2, not {self.config.n_folds}")
        self.fold_: list[int] | None = None
        self.trained_on_: list[frozenset[str]] | None = None
        self.values_: list[list[float]] | None = None
        self.thresholds_: list[float] | None = None
        self.token_passes_: list[int] | None = None
        self.losses_: list[list[float]] | None = None
        self.seconds_: float | None = None

    @property
    def token_passes(self) -> int:
        """Token positions through the verifier models in the last call (0 before the first)."""
        return sum(self.token_passes_ or [])

    # ------------------------------------------------------------------ folds
    def assign_folds(self, trajectories: Sequence[Trajectory]) -> list[int]:
        """Each trajectory's fold: problems are shuffled (``seed``) and dealt round-robin."""
        return trajectory_folds(trajectories, self.config.n_folds, self.config.seed, "the verifier's models")

    # ------------------------------------------------------------------ the call
    def first_errors(self, trajectories: Sequence[Trajectory], *, progress: bool = False) -> list[int]:
        """The judge's first-error index of each trajectory (-1: no error), cross-fitted."""
        from selfprm.prm.model import PRMConfig
        from selfprm.prm.train import PRMTrainConfig, train_prm

        c = self.config
        t0 = time.perf_counter()
        trajectories = list(trajectories)
        folds = self.assign_folds(trajectories)
        model_src = self.policy.model
        sep = getattr(getattr(self.policy, "domain", None), "step_separator", "\n")
        pcfg = PRMConfig(step_separator=sep, max_length=c.max_length, surprise_features=c.surprise_features)
        tcfg = PRMTrainConfig(loss="bce", epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, head_lr=c.head_lr,
                              seed=c.seed)
        device = next(model_src.parameters()).device
        n = len(trajectories)
        passes = [0] * n
        values: list[list[float]] = [[] for _ in range(n)]
        fe = [-1] * n
        trained_on, thresholds, losses = [], [], []
        was_training = model_src.training
        for k in range(c.n_folds):
            train_idx = [i for i in range(n) if folds[i] != k and trajectories[i].outcome is not None
                         and trajectories[i].steps]
            judge_idx = [i for i in range(n) if folds[i] == k and trajectories[i].steps]
            if not train_idx:
                raise ValueError(f"fold {k}'s verifier has nothing to train on: no trajectory outside the fold "
                                 "has steps and a known outcome")
            with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
                torch.manual_seed(c.seed * 1_000_003 + k)
                prm = build_critic(self.policy, pcfg, c.seed * 1_000_003 + k)
                data = []
                for i in train_idx:  # the outcome broadcast to every step prefix
                    t = trajectories[i]
                    data.append((t, StepLabels([float(bool(t.outcome))] * len(t.steps), source="outcome")))
                hist = train_prm(prm, data, replace(tcfg, seed=c.seed * 1_000_003 + k), progress=progress,
                                 desc=f"verifier {k + 1}/{c.n_folds}")
            if k == 0:
                lengths = self._lengths(prm, trajectories)  # the same encoding for every fold's model
            for i in train_idx:
                passes[i] += 2 * c.epochs * lengths[i]
            if c.threshold is None:
                own = prm.score_trajectories([trajectories[i] for i in train_idx])
                for i in train_idx:
                    passes[i] += lengths[i]
                tau = tune_outcome_threshold([np.nanmin(v) if not all(map(math.isnan, v)) else math.nan for v in own],
                                             [bool(trajectories[i].outcome) for i in train_idx])
            else:
                tau = float(c.threshold)
            scored = prm.score_trajectories([trajectories[i] for i in judge_idx])
            for i, v in zip(judge_idx, scored):
                passes[i] += lengths[i]
                values[i] = v
                fe[i] = first_below(v, tau)
            trained_on.append(frozenset(trajectories[i].problem.id for i in train_idx))
            thresholds.append(tau)
            losses.append(list(hist.loss))
            del prm  # one copy of the backbone alive at a time
        model_src.train(was_training)
        self.fold_, self.trained_on_, self.values_ = folds, trained_on, values
        self.thresholds_, self.token_passes_, self.losses_ = thresholds, passes, losses
        self.seconds_ = time.perf_counter() - t0
        return fe

    @staticmethod
    def _lengths(prm, trajectories: Sequence[Trajectory], chunk: int = 256) -> list[int]:
        """Token positions of each trajectory as the PRM encodes it (after any truncation)."""
        out = []
        for s in range(0, len(trajectories), chunk):
            part = trajectories[s:s + chunk]
            b = prm.encode([t.problem.prompt for t in part], [t.steps for t in part])
            out.extend(int(x) for x in b.attention_mask.sum(1))
        return out
