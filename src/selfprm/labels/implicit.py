"""``implicit``: the implicit PRM — step rewards from an outcome model's log-likelihood ratio.

Yuan et al., *Free Process Rewards without Process Labels*, arXiv 2412.01981 (public code
PRIME-RL/ImplicitPRM); PRIME, arXiv 2502.01456 (PRIME-RL/PRIME), trains the same model online.

**The model.** An outcome reward model is parameterised as a log-likelihood ratio of two causal LMs,

    r_θ(y) = β · log πθ(y) / π_ref(y) = β · Σ_t log πθ(y_t | y_<t) / π_ref(y_t | y_<t),

summed over the solution's tokens (the prompt is masked, as in the paper's CE trainer), and
trained with cross-entropy on outcome labels only (the paper's ``L_CE``),

    L = -[ l · log σ(r_θ(y)) + (1 - l) · log(1 - σ(r_θ(y))) ],     l = 1[answer correct].

πθ starts as a copy of the policy's weights; π_ref is the frozen policy (its weights are never
changed).

**Step rewards.** The partial sums are a Q-function for free: with

    q_t = β Σ_{tokens i up to the end of step t} log πθ(y_i|y_<i) / π_ref(y_i|y_<i),   q_0 = 0,

the process reward of step ``t`` is ``r_t = q_t - q_{t-1}``, the β·log-ratio summed over the step's
own tokens (PRIME's ``compute_implicit_reward``; the paper's "single" reward approach). The
final-answer line and ``<eos>`` are counted in the last step, as in the paper (where the answer
is part of the last step), so ``q_T = r_θ(y)`` and ``Σ_t r_t = r_θ(y)``. Labels in [0, 1]:

- ``label_kind="step"`` (default): ``σ(r_t)`` — the step's own reward; above 1/2 when the step
  raised the implied chance of success. Soft labels: ``prm_loss="soft_bce"``.
- ``label_kind="q"``: ``σ(q_t)`` — the implied chance that the solution ends right from there.
  This is what the demo used to run (a deviation from the step rewards of the method; it is
  also what the paper's ProcessBench script thresholds, its "accumulative" approach).

**Cross-fitting.** A model that has seen a trajectory's outcome would only repeat it in that
trajectory's labels. The problems of one ``label()`` call (not trajectories: samples of a problem
share most of their text) are shuffled (``seed``) and dealt round-robin into ``n_folds`` folds;
model ``k`` is trained on every fold but ``k`` and labels fold ``k`` only, so no trajectory is
labelled by a model that trained on it or on its problem. A call with fewer distinct problems
than ``n_folds`` raises ``ValueError`` (there is no held-out model for it); give it more problems
per call. Training is seeded: fold split, batch order and each fold's torch RNG come from ``seed``.

**Cost.** No policy tokens are generated. ``token_passes`` on each :class:`StepLabels` counts the
token positions (padding not counted) that went through a model for these labels:

- π_ref forward over the trajectory, once (its log-probs are cached and reused by training and
  scoring): ``n`` to the trajectory;
- training model ``k``: forward + backward of πθ over every sampled sequence at every step,
  ``2 · Σ_steps Σ_batch n``, split evenly over the trajectories model ``k`` trained on;
- scoring: πθ forward over the trajectory by its fold's model: ``n`` to the trajectory.

With ``n_folds=2`` and a batch that holds a model's whole training set, the total is
``(2 · train_steps + 2) · Σ n``.

After a call (all None before): ``models_`` (the fitted πθ of each fold), ``folds_`` (per
trajectory: its fold, the index of the model that labelled it), ``trained_on_`` (per model: the
problem ids it trained on), ``losses_`` (per model: the loss at every step), ``train_seconds_``
(training wall time, all folds).

Not matched from the paper: the paper trains on a large separate set (UltraInteract rollouts)
and labels held-out solutions; here each fold's model is trained on the other folds of the call.
Its training runs ``train_steps`` small AdamW steps from the policy's weights with batches drawn
without replacement, not one epoch at lr 5e-7 of an 8B model.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfprm.labels.base import register
from selfprm.labels.folds import trajectory_folds
from selfprm.lm_logprobs import next_token_logprobs, pad_right
from selfprm.policies.base import Policy
from selfprm.types import StepLabels, Trajectory

LABEL_KINDS = ("step", "q")


def sigmoid(x: float) -> float:
    """σ(x) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def step_rewards(q: Sequence[float]) -> list[float]:
    """``r_t = q_t - q_{t-1}`` with ``q_0 = 0``: the process reward of each step from the partial sums."""
    return [a - b for a, b in zip(q, [0.0] + list(q[:-1]))]


def encode_with_step_ends(tokenizer, domain, traj: Trajectory) -> tuple[list[int], int, list[int]]:
    """``<bos> prompt steps answer <eos>`` token ids, where the solution starts, and the index of
    each step's last token. Segments are encoded one by one so step boundaries are exact."""
    tok = tokenizer
    ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + \
        tok(domain.render(traj.problem), add_special_tokens=False)["input_ids"]
    start = len(ids)
    ends = []
    for s in traj.steps:
        ids += tok(s + domain.step_separator, add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    if traj.final_answer is not None and hasattr(domain, "render_answer"):
        ids += tok(domain.render_answer(traj.final_answer), add_special_tokens=False)["input_ids"]
        if tok.eos_token_id is not None:
            ids.append(tok.eos_token_id)
    return ids, start, ends


def token_log_ratios(model, ref, batch_ids: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """``log πθ(y_t|y_<t) - log π_ref(y_t|y_<t)`` at every position t ≥ 1 (``[B, W-1]``; 0 on padding)."""
    ids, mask = pad_right(batch_ids, pad_id, device)
    with torch.no_grad():
        ref_lp = next_token_logprobs(ref, ids, mask)
    return (next_token_logprobs(model, ids, mask) - ref_lp) * mask[:, 1:]


def assign_folds(trajectories: Sequence[Trajectory], n_folds: int, seed: int) -> list[int]:
    """Each trajectory's fold: its problem's, with problems shuffled (``seed``) and dealt round-robin."""
    return trajectory_folds(trajectories, n_folds, seed, "implicit labels")


def spread(total: int, n: int) -> list[int]:
    """``total`` split into ``n`` integer shares that differ by at most 1 and sum to ``total``."""
    base, extra = divmod(int(total), n)
    return [base + (1 if j < extra else 0) for j in range(n)]


@register("implicit")
@dataclass
class ImplicitPRMLabels:
    """The cross-fitted implicit PRM of the module doc.

    Parameters:
        beta: β of ``r_θ = β log πθ/π_ref`` (the paper's and PRIME's 0.05).
        train_steps: optimizer steps for each fold's model.
        batch_size: trajectories per step (drawn without replacement, reshuffled each pass).
        lr: AdamW learning rate of πθ.
        label_kind: ``"step"`` (``σ(r_t)``, the method's step rewards) or ``"q"`` (``σ(q_t)``).
        n_folds: cross-fitting folds of problems; one model per fold, labelling its own fold only.
        seed: fold split, batch order and each model's torch RNG.
        score_batch_size: trajectories per forward when caching π_ref and scoring.
    """

    beta: float = 0.05
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 5e-4
    label_kind: str = "step"
    n_folds: int = 2
    seed: int = 0
    score_batch_size: int = 64
    name: str = "implicit"
    prm_loss: str = "soft_bce"

    def __post_init__(self) -> None:
        # what the last call fitted (None until the first call)
        self.models_: list | None = None  # πθ of each fold
        self.folds_: list[int] | None = None  # per trajectory: its fold = the model that labelled it
        self.trained_on_: list[frozenset[str]] | None = None  # per model: problem ids it trained on
        self.losses_: list[list[float]] | None = None  # per model: the outcome loss at every step
        self.train_seconds_: float | None = None  # training wall time, all folds

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None or getattr(policy, "model", None) is None or getattr(policy, "tokenizer", None) is None:
            raise TypeError("implicit labels need a policy with a causal LM: .model and .tokenizer "
                            f"(an HFPolicy); got {type(policy).__name__}")
        if self.label_kind not in LABEL_KINDS:
            raise ValueError(f"label_kind must be one of {LABEL_KINDS}, not {self.label_kind!r}")
        trajectories = list(trajectories)
        folds = assign_folds(trajectories, self.n_folds, self.seed)
        tok, domain = policy.tokenizer, policy.domain
        pad_id = tok.pad_token_id
        ref = policy.model
        device = next(ref.parameters()).device
        enc = [encode_with_step_ends(tok, domain, t) for t in trajectories]
        lengths = [len(ids) for ids, _, _ in enc]
        n = len(trajectories)
        passes = list(lengths)  # π_ref forward, once per trajectory
        was_training = ref.training
        ref.eval()
        ref_lp = self._ref_logprobs(ref, enc, pad_id, device)
        models, trained_on, losses, seconds = [], [], [], 0.0
        q: list[list[float]] = [[] for _ in range(n)]
        for k in range(self.n_folds):
            train_idx = [i for i in range(n) if folds[i] != k and trajectories[i].outcome is not None]
            label_idx = [i for i in range(n) if folds[i] == k]
            if not train_idx and self.train_steps > 0:
                raise ValueError(f"fold {k}'s model has nothing to train on: no trajectory outside the fold "
                                 "has a known outcome")
            with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
                torch.manual_seed(self.seed * 1_000_003 + k)
                model = copy.deepcopy(ref)
                model.train()
                fold_losses, secs, train_passes = self._train(
                    model, enc, ref_lp, trajectories, train_idx, pad_id, device, k, progress)
                model.eval()
            for i, share in zip(train_idx, spread(train_passes, len(train_idx)) if train_idx else []):
                passes[i] += share
            for i, qs in zip(label_idx, self._q_values(model, enc, ref_lp, label_idx, pad_id, device)):
                q[i] = qs
                passes[i] += lengths[i]  # πθ scoring forward
            models.append(model)
            trained_on.append(frozenset(trajectories[i].problem.id for i in train_idx))
            losses.append(fold_losses)
            seconds += secs
        ref.train(was_training)
        self.models_, self.folds_, self.trained_on_ = models, folds, trained_on
        self.losses_, self.train_seconds_ = losses, seconds
        out: list[StepLabels | None] = []
        for qs, cost in zip(q, passes):
            # "step": σ(r_t), r_t = q_t - q_{t-1} (the method's step reward); "q": σ(q_t)
            logits = step_rewards(qs) if self.label_kind == "step" else qs
            out.append(StepLabels([sigmoid(v) for v in logits], source=self.name, soft=True,
                                  policy_tokens=0, rollouts=0, token_passes=int(cost)))
        return out

    # ------------------------------------------------------------------ pieces
    @torch.no_grad()
    def _ref_logprobs(self, ref, enc, pad_id, device) -> list[torch.Tensor]:
        """``log π_ref(y_t|y_<t)`` for t = 1..n-1 of each trajectory (one forward each, cached)."""
        out = []
        for s in range(0, len(enc), self.score_batch_size):
            chunk = [e[0] for e in enc[s:s + self.score_batch_size]]
            ids, mask = pad_right(chunk, pad_id, device)
            lp = next_token_logprobs(ref, ids, mask)
            out.extend(lp[r, :len(c) - 1].clone() for r, c in enumerate(chunk))
        return out

    def _log_ratios(self, model, enc, ref_lp, idx, pad_id, device) -> torch.Tensor:
        """``log πθ - log π_ref`` per position (``[B, W-1]``, column t-1 scores token t); 0 on padding."""
        ids, mask = pad_right([enc[i][0] for i in idx], pad_id, device)
        ref = torch.zeros(len(idx), ids.shape[1] - 1, device=device)
        for r, i in enumerate(idx):
            ref[r, :len(ref_lp[i])] = ref_lp[i]
        return (next_token_logprobs(model, ids, mask) - ref) * mask[:, 1:]

    def _sequence_rewards(self, model, enc, ref_lp, idx, pad_id, device) -> torch.Tensor:
        """``r_θ(y) = β Σ log πθ/π_ref`` over each solution's tokens (steps, answer, eos)."""
        lr = self._log_ratios(model, enc, ref_lp, idx, pad_id, device)
        # only the solution's tokens count: the prompt is the same under any answer
        keep = torch.zeros_like(lr)
        for r, i in enumerate(idx):
            ids, start, _ = enc[i]
            keep[r, start - 1: len(ids) - 1] = 1.0
        return self.beta * (lr * keep).sum(1)

    def _train(self, model, enc, ref_lp, trajectories, train_idx, pad_id, device, k: int,
               progress: bool = False) -> tuple[list[float], float, int]:
        """Fit πθ to the outcomes of ``train_idx``; returns the loss at every step, the seconds it
        took and its token passes (forward + backward of πθ over every sampled sequence)."""
        t0 = time.perf_counter()
        losses: list[float] = []
        passes = 0
        if self.train_steps <= 0 or not train_idx:
            return losses, time.perf_counter() - t0, passes
        rng = np.random.default_rng([self.seed, k])
        y = torch.tensor([float(bool(trajectories[i].outcome)) for i in range(len(trajectories))])
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0)
        b = min(self.batch_size, len(train_idx))
        order, pos = rng.permutation(train_idx), 0
        desc = f"{self.name} fold {k + 1}/{self.n_folds}"
        for _ in tqdm(range(self.train_steps), desc=desc, disable=not progress, leave=False):
            if pos + b > len(order):  # a new pass over the fold's training set
                order, pos = rng.permutation(train_idx), 0
            idx = [int(i) for i in order[pos:pos + b]]
            pos += b
            r = self._sequence_rewards(model, enc, ref_lp, idx, pad_id, device)
            loss = F.binary_cross_entropy_with_logits(r, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            passes += 2 * sum(len(enc[i][0]) for i in idx)  # forward + backward of πθ
        return losses, time.perf_counter() - t0, passes

    @torch.no_grad()
    def _q_values(self, model, enc, ref_lp, idx, pad_id, device) -> list[list[float]]:
        """``q_t = β Σ log πθ/π_ref`` over the solution's tokens up to the end of step t; the last
        step runs to the end (answer and eos), so ``q_T = r_θ(y)``."""
        out = []
        for s in range(0, len(idx), self.score_batch_size):
            chunk = idx[s:s + self.score_batch_size]
            lr = self._log_ratios(model, enc, ref_lp, chunk, pad_id, device)
            for r, i in enumerate(chunk):
                ids, start, ends = enc[i]
                if not ends:
                    out.append([])
                    continue
                # log-ratio of token t sits at column t - 1
                cum = torch.cumsum(lr[r, start - 1: len(ids) - 1], 0)
                ends = ends[:-1] + [len(ids) - 1]
                out.append([self.beta * float(cum[e - start]) for e in ends])
        return out
