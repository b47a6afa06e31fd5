"""``prime``: PRIME — GRPO-style policy optimisation with an implicit PRM updated online.

Cui et al., *Process Reinforcement through Implicit Rewards*, arXiv 2502.01456 (public code
PRIME-RL/PRIME, ``training/``). The implicit PRM (Yuan et al., arXiv 2412.01981; see
:mod:`selfprm.labels.implicit`) is a causal LM πφ, initialised as a copy of the SFT policy, read
against the frozen SFT policy π_ref:

    r_φ(y_t) = β · log πφ(y_t | y_<t) / π_ref(y_t | y_<t)                    (token reward)
    L_CE(φ)  = BCE( σ(Σ_t r_φ(y_t)), r_o(y) ),   r_o(y) = 1[answer right]     (PRIME's "ce" loss)

and the advantage is RLOO on both reward sources, process rewards turned into returns (eq. 5):

    A_{i,t} = Σ_{s>=t} γ^{s-t} [ r_φ(y^i_s) - 1/(K-1) Σ_{j≠i} r_φ(y^j) ] + r_o(y^i) - 1/(K-1) Σ_{j≠i} r_o(y^j)

What the public code does and this file follows (``training/verl/...``):

- ``trainer/ppo/core_algos.py`` ``compute_rloo_returns`` (l.108-153): for each source — ``rm_scores``
  on every response token, ``gt_scores`` (the 0/1 verifier) on the last response token — with
  ``m_i`` the mean of rollout i's rewards over its reward tokens, every reward token of the group
  becomes ``r · K/(K-1) - Σ_j m_j/(K-1)`` (for the one-token outcome: exactly ``r_i - mean_{j≠i} r_j``);
  each source becomes a return (reverse cumsum with ``reward_model_gamma`` / ``verifier_gamma``, both
  1.0 in ``examples/run_prime_main.sh``), the returns are **summed unweighted** (``rm_coef=5`` and
  ``verifier.reward_coef=5`` only scale the ``'all'`` tensor, which the ``rloo`` estimator does not
  read), and the advantage is the return whitened over the whole batch (``masked_whiten``:
  mean, *unbiased* variance, ``rsqrt(var + 1e-8)``). Here: :func:`rloo_advantage_return`, with
  ``rm_coef = gt_coef = 1`` by default (named options).
- ``workers/actor/dp_prime.py`` ``compute_implicit_reward`` (l.116-143): with ``prime_granularity=token``
  each token's score is its own log-ratio; ``update_policy`` (l.145-245) computes the scores and the
  CE loss from the *same* forward pass of πφ, then steps πφ (``prime_model.update=after``: this
  round's rewards come from πφ before this round's update); ``prime_norm=batch_norm`` (the config's
  default) divides every score by the largest |reverse cumsum| of the batch (+1e-6).
  ``compute_ce_dpo_loss_rm`` (core_algos.py l.265): ``BCE(σ(β Σ q), acc)``, ``beta_train = 0.05``.
- πφ's AdamW: ``prime_model.optim.lr = 1e-6`` (twice the actor's 5e-7), ``grad_clip = 10``.

Deviations, kept as named options: the public code's token scores are the raw log-ratio and β
enters only the loss; here the token reward is ``β · log-ratio`` as in the paper — with the default
``norm="batch_norm"`` the two are the same (β cancels), with ``norm="none"`` this is the paper's
scale. ``update="before"`` (update first, then score with the new πφ) is the code's other mode.
``granularity="whole"`` puts the summed log-ratio on the last token (the code's other mode). The
code's prompt filter (keep prompts with group accuracy in [0.2, 0.8]) and πφ's mini-batching are not
here: πφ takes one step per round on the round's rollouts; the KL weight is the GRPO config's
``beta`` (the PRIME script sets its KL coefficient to 0).

Cost: ``token_passes`` counts the token positions (prompt + completion, no padding) through πφ and
π_ref: per round π_ref forward ``n``, πφ forward + backward ``2n`` (plus ``n`` with ``update="before"``).
π_ref is the trainer's frozen reference (the SFT policy); πφ is created on the first call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult, outcome_rewards, token_logprobs
from selfprm.rl.methods import MethodSpec, register_method
from selfprm.rl.rollout import Rollout
from selfprm.types import Problem

NORMS = ("batch_norm", "none")
UPDATES = ("after", "before")
GRANULARITIES = ("token", "whole")


@dataclass
class PRIMEConfig(GRPOConfig):
    """GRPO's loop with PRIME's implicit process rewards and RLOO advantage.

    Parameters:
        prime_beta: β of the implicit reward ``β log πφ/π_ref`` (PRIME's ``beta_train``: 0.05).
        prm_lr: AdamW lr of πφ (PRIME: 1e-6, twice its actor's 5e-7; here twice the GRPO default).
        prm_grad_clip: grad-norm clip of πφ (PRIME: 10).
        rm_coef: weight of the process-reward return in the advantage (PRIME's rloo path: 1).
        gt_coef: weight of the outcome return (PRIME's rloo path: 1).
        rm_gamma: discount of the process-reward return (``reward_model_gamma``: 1.0).
        gt_gamma: discount of the outcome return (``verifier_gamma``: 1.0).
        norm: ``batch_norm`` (PRIME's ``prime_norm``) or ``none``.
        update: ``after`` (rewards from πφ before its update, PRIME's script) or ``before``.
        granularity: ``token`` (PRIME's script) or ``whole`` (the summed reward on the last token).
    """

    prime_beta: float = 0.05
    prm_lr: float = 6e-4
    prm_grad_clip: float = 10.0
    rm_coef: float = 1.0
    gt_coef: float = 1.0
    rm_gamma: float = 1.0
    gt_gamma: float = 1.0
    norm: str = "batch_norm"
    update: str = "after"
    granularity: str = "token"

    def __post_init__(self) -> None:
        for name, allowed in (("norm", NORMS), ("update", UPDATES), ("granularity", GRANULARITIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")


# ----------------------------------------------------------------------------- pure functions


def implicit_token_rewards(logp_phi: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                           beta: float) -> torch.Tensor:
    """``r_t = β (log πφ(y_t|y_<t) - log π_ref(y_t|y_<t))`` on the masked tokens, 0 elsewhere ``[B, T]``."""
    return beta * (logp_phi - logp_ref) * mask.float()


def prime_ce_loss(token_rewards: torch.Tensor, outcomes: torch.Tensor) -> torch.Tensor:
    """PRIME's ``ce`` loss: ``BCE(σ(Σ_t r_t), r_o)`` averaged over the rollouts (token rewards masked)."""
    return F.binary_cross_entropy_with_logits(token_rewards.sum(1), outcomes.float())


def batch_norm_rewards(token_rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """PRIME's ``prime_norm=batch_norm``: divide by the batch's largest |return| (reverse cumsum)."""
    rev = torch.cumsum(token_rewards.flip(dims=[1]), dim=-1).flip(dims=[1])
    return token_rewards / (rev.abs().max() + eps)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """verl's ``masked_whiten``: ``(x - mean) / sqrt(var + 1e-8)``, mean and unbiased var over the mask."""
    m = mask.float()
    n = m.sum()
    mean = (values * m).sum() / n
    var = (((values - mean) ** 2) * m).sum() / n
    var = var * n / (n - 1) if n > 1 else var
    return (values - mean) * torch.rsqrt(var + 1e-8)


def _rloo(reward: torch.Tensor, reward_mask: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """``r·K/(K-1) - Σ_j m_j/(K-1)`` on each group's reward tokens (``m_j``: rollout j's mean reward);
    a group of one has no baseline and gets 0."""
    out = torch.zeros_like(reward)
    counts = reward_mask.float().sum(1).clamp(min=1)
    means = (reward * reward_mask).sum(1) / counts
    for g in dict.fromkeys(groups):
        rows = [i for i, k in enumerate(groups) if k == g]
        k = len(rows)
        if k < 2:
            continue
        base = means[rows].sum() / (k - 1)
        out[rows] = (reward[rows] * k / (k - 1) - base) * reward_mask[rows]
    return out


def _returns(reward: torch.Tensor, gamma: float) -> torch.Tensor:
    ret = torch.zeros_like(reward)
    run = torch.zeros_like(reward[:, 0])
    for t in range(reward.shape[1] - 1, -1, -1):
        run = reward[:, t] + gamma * run
        ret[:, t] = run
    return ret


def rloo_advantage_return(token_rewards: torch.Tensor, outcomes: Sequence[float], mask: torch.Tensor,
                          groups: Sequence[int], rm_coef: float = 1.0, gt_coef: float = 1.0,
                          rm_gamma: float = 1.0, gt_gamma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """PRIME's ``compute_rloo_returns``: (advantages, returns), both ``[B, T]``.

    ``token_rewards`` are the process rewards on the tokens of ``mask``; each outcome sits on its
    rollout's last masked token. Each source gets the RLOO baseline within its group and becomes a
    discounted return; the returns are summed (``rm_coef``, ``gt_coef``: 1 in the public code) and
    the sum is whitened over every masked token of the batch.
    """
    m = mask.bool()
    rm = token_rewards * m
    last = torch.zeros_like(m)
    for i in range(m.shape[0]):
        idx = torch.nonzero(m[i]).flatten()
        if len(idx):
            last[i, idx[-1]] = True
    gt = torch.zeros_like(rm)
    gt[last] = torch.tensor([float(o) for o, row in zip(outcomes, last) if row.any()], dtype=rm.dtype, device=rm.device)
    returns = rm_coef * _returns(_rloo(rm, m, groups), rm_gamma) + gt_coef * _returns(_rloo(gt, last, groups), gt_gamma)
    returns = returns * m
    return masked_whiten(returns, m) * m, returns


# ----------------------------------------------------------------------------- the method


class PRIMEMethod(OutcomeAdvantage):
    """Samples like GRPO; advantages from the implicit PRM πφ, which it updates each round.

    After the first call: ``prm_model_`` (πφ), ``prm_optimizer_``, ``log_`` (one dict per round:
    the CE loss, the mean sequence reward of right and wrong rollouts). ``token_passes``: token
    positions through πφ and π_ref, all rounds (see the module doc).
    """

    name = "prime"

    def __init__(self, config: PRIMEConfig | None = None):
        self.config = config or PRIMEConfig()
        self.prm_model_ = None
        self.prm_optimizer_: torch.optim.Optimizer | None = None
        self.log_: list[dict] = []
        self.token_passes = 0
        self._policy = None
        self._ref_copy = None

    def _ensure_prm(self, trainer) -> None:
        if self.prm_model_ is not None and self._policy is trainer.model:
            return
        # πφ = a copy of the SFT policy: the trainer's frozen reference is that policy
        src = trainer.ref_model if getattr(trainer, "ref_model", None) is not None else trainer.model
        self.prm_model_ = copy.deepcopy(src)
        for p in self.prm_model_.parameters():
            p.requires_grad_(True)
        self.prm_model_.eval()
        self.prm_optimizer_ = torch.optim.AdamW(self.prm_model_.parameters(), lr=self.config.prm_lr,
                                                betas=(0.9, 0.999), weight_decay=0.0)
        self._policy = trainer.model
        self.log_ = []

    def _ref(self, trainer):
        return trainer.ref_model if getattr(trainer, "ref_model", None) is not None else self._frozen(trainer)

    def _frozen(self, trainer):
        if self._ref_copy is None:
            self._ref_copy = copy.deepcopy(trainer.model).eval()
            for p in self._ref_copy.parameters():
                p.requires_grad_(False)
        return self._ref_copy

    @staticmethod
    def _pad(trainer) -> int:
        return trainer.tokenizer.pad_token_id or 0

    def token_rewards(self, trainer, rollouts: Sequence[Rollout], grad: bool = False,
                      ref_logp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(β log πφ/π_ref per token [B, T], mask, log π_ref)`` under the current πφ (temperature 1)."""
        self._ensure_prm(trainer)
        pad = self._pad(trainer)
        if ref_logp is None:
            with torch.no_grad():
                ref_logp, _ = token_logprobs(self._ref(trainer), rollouts, 1.0, pad)
            self.token_passes += self._n_tokens(rollouts)
        with torch.set_grad_enabled(grad):
            logp, mask = token_logprobs(self.prm_model_, rollouts, 1.0, pad)
        self.token_passes += self._n_tokens(rollouts) * (2 if grad else 1)
        return implicit_token_rewards(logp, ref_logp.to(logp.device), mask, self.config.prime_beta), mask, ref_logp

    def implicit_rewards(self, trainer, rollouts: Sequence[Rollout]) -> list[float]:
        """``r_φ(y) = β Σ_t log πφ/π_ref`` of each rollout under the current πφ."""
        r, _, _ = self.token_rewards(trainer, rollouts)
        return r.sum(1).tolist()

    @staticmethod
    def _n_tokens(rollouts: Sequence[Rollout]) -> int:
        return sum(len(r.prompt_ids) + len(r.completion_ids) for r in rollouts)

    def update_prm(self, trainer, rollouts: Sequence[Rollout]) -> tuple[torch.Tensor, torch.Tensor]:
        """One CE step of πφ on the rollouts' outcomes; returns the token rewards PRIME uses this
        round (before the step with ``update="after"``, after it with ``"before"``), detached."""
        c = self.config
        self._ensure_prm(trainer)
        self.prm_model_.train()
        r, mask, ref_logp = self.token_rewards(trainer, rollouts, grad=True)
        y = torch.tensor(outcome_rewards(rollouts), device=r.device)
        loss = prime_ce_loss(r, y)
        self.prm_optimizer_.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.prm_model_.parameters(), c.prm_grad_clip)
        self.prm_optimizer_.step()
        self.prm_optimizer_.zero_grad(set_to_none=True)
        self.prm_model_.eval()
        if c.update == "before":
            r, mask, _ = self.token_rewards(trainer, rollouts, ref_logp=ref_logp)
        r = r.detach()
        seq = r.sum(1)
        right = y > 0.5
        self.log_.append({"loss": loss.item(),
                          "reward_right": float(seq[right].mean()) if right.any() else float("nan"),
                          "reward_wrong": float(seq[~right].mean()) if (~right).any() else float("nan")})
        return r, mask

    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c = self.config
        r, mask = self.update_prm(trainer, rollouts)
        if c.granularity == "whole":
            total = r.sum(1)
            r = torch.zeros_like(r)
            for i in range(r.shape[0]):
                idx = torch.nonzero(mask[i]).flatten()
                if len(idx):
                    r[i, idx[-1]] = total[i]
        if c.norm == "batch_norm":
            r = batch_norm_rewards(r)
        adv, _ = rloo_advantage_return(r.cpu(), outcome_rewards(rollouts), mask.cpu(), [x.group for x in rollouts],
                                       c.rm_coef, c.gt_coef, c.rm_gamma, c.gt_gamma)
        return rollouts, adv


def train_prime(model, tokenizer, domain, config: PRIMEConfig, train_problems: Sequence[Problem],
                eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    method = PRIMEMethod(config)
    return GRPOTrainer(model, tokenizer, domain, config, method).train(train_problems, eval_problems, progress)


register_method("prime", MethodSpec(PRIMEConfig, lambda c, prm: PRIMEMethod(c)))
