"""``implicit``: the implicit PRM — step rewards from an outcome model's log-likelihood ratio.

Yuan et al., *Free Process Rewards without Process Labels*, arXiv 2412.01981; public code
PRIME-RL/ImplicitPRM.

An outcome reward model is parameterised as a log-likelihood ratio of two causal LMs,

    r_θ(y) = β · log πθ(y) / π_ref(y) = β · Σ_t log πθ(y_t | y_<t) / π_ref(y_t | y_<t),

and trained with cross-entropy on outcome labels only,

    L = -[ l · log σ(r_θ(y)) + (1 - l) · log(1 - σ(r_θ(y))) ],     l = 1[answer correct].

Its partial sums are then a Q-function for free: with ``q_k = β Σ_{t ≤ end of step k} log πθ/π_ref``
the reward of step ``k`` is the change across it, ``r_k = q_k - q_{k-1}`` (``q_0 = 0``). Labels are
``σ(q_k)`` (``label_kind="q"``: the implied chance that the solution succeeds from there), or
``σ(r_k / τ)`` (``label_kind="reward"``).

πθ starts as a copy of the policy's weights and π_ref is the frozen policy; a few hundred small
steps on CPU suffice for the embedded tiny model. No policy tokens are generated: the cost is
training compute, reported in ``train_seconds_``; the fitted πθ is kept in ``model_`` and its
training losses in ``losses_`` (all None until the first call).
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
from selfprm.lm_logprobs import next_token_logprobs, pad_right
from selfprm.policies.base import Policy
from selfprm.types import StepLabels, Trajectory


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


@register("implicit")
@dataclass
class ImplicitPRMLabels:
    beta: float = 0.05
    train_steps: int = 200
    batch_size: int = 32
    lr: float = 5e-4
    label_kind: str = "q"  # or "reward"
    reward_temperature: float = 1.0
    seed: int = 0
    name: str = "implicit"
    prm_loss: str = "soft_bce"

    def __post_init__(self) -> None:
        # what the last call fitted (None until the first call)
        self.model_ = None  # πθ
        self.losses_: list[float] | None = None  # the outcome loss at every training step
        self.train_seconds_: float | None = None  # the labeling's cost: training compute, no policy tokens

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None or getattr(policy, "model", None) is None or getattr(policy, "tokenizer", None) is None:
            raise TypeError("implicit labels need a policy with a causal LM: .model and .tokenizer "
                            f"(an HFPolicy); got {type(policy).__name__}")
        if self.label_kind not in ("q", "reward"):
            raise ValueError(f"label_kind must be 'q' or 'reward', not {self.label_kind!r}")
        tok, domain = policy.tokenizer, policy.domain
        device = next(policy.model.parameters()).device
        enc = [encode_with_step_ends(tok, domain, t) for t in trajectories]
        y = torch.tensor([float(bool(t.outcome)) for t in trajectories])
        ref = policy.model
        was_training = ref.training
        ref.eval()
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(self.seed)
            model = copy.deepcopy(ref)
            model.train()
            losses, seconds = self._train(model, ref, enc, y, tok.pad_token_id, device, progress)
            model.eval()
            q = self._q_values(model, ref, enc, tok.pad_token_id, device)
        ref.train(was_training)
        self.model_, self.losses_, self.train_seconds_ = model, losses, seconds
        out: list[StepLabels | None] = []
        for qs in q:
            if self.label_kind == "q":
                vals = [1.0 / (1.0 + math.exp(-v)) for v in qs]
            else:
                prev = [0.0] + qs[:-1]
                vals = [1.0 / (1.0 + math.exp(-(a - b) / self.reward_temperature)) for a, b in zip(qs, prev)]
            out.append(StepLabels(vals, source=self.name, soft=True, policy_tokens=0, rollouts=0))
        return out

    def _sequence_rewards(self, model, ref, enc, idx, pad_id, device) -> torch.Tensor:
        lr = token_log_ratios(model, ref, [enc[i][0] for i in idx], pad_id, device)
        # only the solution's tokens count: the prompt is the same under any answer
        keep = torch.zeros_like(lr)
        for r, i in enumerate(idx):
            ids, start, _ = enc[i]
            keep[r, start - 1: len(ids) - 1] = 1.0
        return self.beta * (lr * keep).sum(1)

    def _train(self, model, ref, enc, y, pad_id, device, progress: bool = False) -> tuple[list[float], float]:
        """Fit πθ to the outcomes; returns the loss at every step and the seconds it took."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0)
        losses: list[float] = []
        for _ in tqdm(range(self.train_steps), desc=f"{self.name} training", disable=not progress, leave=False):
            idx = rng.integers(0, len(enc), size=min(self.batch_size, len(enc)))
            r = self._sequence_rewards(model, ref, enc, idx, pad_id, device)
            loss = F.binary_cross_entropy_with_logits(r, y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        return losses, time.perf_counter() - t0

    @torch.no_grad()
    def _q_values(self, model, ref, enc, pad_id, device, batch: int = 64) -> list[list[float]]:
        """q_k = β Σ log πθ/π_ref over the solution's tokens up to the end of step k."""
        out = []
        for s in range(0, len(enc), batch):
            chunk = enc[s:s + batch]
            lr = token_log_ratios(model, ref, [c[0] for c in chunk], pad_id, device)
            for r, (ids, start, ends) in enumerate(chunk):
                # log-ratio of token t sits at column t - 1
                cum = torch.cumsum(lr[r, start - 1:], 0)
                out.append([self.beta * float(cum[e - start]) for e in ends])
        return out
