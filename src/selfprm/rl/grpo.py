"""The shared GRPO core: group-normalised, token-level advantages and a clipped surrogate with KL.

GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, eq. 3), written per token:

    ρ_t   = π_θ(o_t | q, o_<t) / π_old(o_t | q, o_<t)
    L     = -1/N Σ_{i,t} [ min(ρ_t A_{i,t}, clip(ρ_t, 1-ε, 1+ε) A_{i,t}) - β D_KL,t ]
    D_KL,t = π_ref/π_θ - log(π_ref/π_θ) - 1          (the k3 estimator, always >= 0)

N counts every trained token of the batch (DAPO's token-level mean, arXiv 2503.14476, so long
and short completions weigh by their tokens). Log-probabilities are of the tempered distribution
the rollouts were sampled from (logits / T), as TRL does.

The advantage is a ``[B, T]`` tensor over the completion tokens: every method in this package
differs only in how it builds that tensor (and, for some, which rollouts it samples), never in
the loss. The outcome baseline is

    A_{i,t} = (r_i - mean(r_group)) / (std(r_group) + eps)      for every token t of o_i.

``std`` is the population standard deviation; a group whose rewards all agree gets zero advantage.

Budgets. The trainer counts the policy tokens it generates: every token of every rollout any
method samples through :meth:`GRPOTrainer.sample` (GRPO's groups, Tree-GRPO's roots and tree
expansions, R3's continuations after the given demonstration prefix, SRL's one-step rollouts),
measured as the sampled ids up to and including the stop token, never the given prefix. A run
lasts ``steps`` rounds, or — with ``train(token_budget=B)`` — until it has generated ``B`` policy
tokens, so methods whose rollouts differ in length compare at equal generation cost.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from selfprm.policies.base import Prefix
from selfprm.rl.advantages import group_normalise  # noqa: F401  (re-exported: the GRPO core's normaliser)
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.lm_logprobs import next_token_logprobs, pad_right
from selfprm.rl.rollout import Rollout, rollout_accuracy, sample_rollouts, uses_tools
from selfprm.types import Problem


@dataclass
class GRPOConfig:
    """The GRPO core's settings; every method's config extends them.

    Parameters:
        steps: optimisation rounds; each samples prompts_per_step × group_size rollouts.
        prompts_per_step: problems per round.
        group_size: rollouts per problem (the group of the group-relative advantage).
        temperature: sampling temperature of the rollouts.
        max_new_tokens: cap on a rollout's length.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        beta: KL weight to the frozen reference policy.
        clip_eps: PPO clip range of the importance ratio.
        ppo_epochs: gradient steps per batch of rollouts (the clip matters from the second on).
        eps: added to the group std before dividing.
        eval_every: rounds between held-out accuracy measurements.
        eval_samples: samples per held-out problem when measuring accuracy.
        seed: sampling and initialisation.
    """

    steps: int = 30  # optimisation rounds; each samples prompts_per_step × group_size rollouts
    prompts_per_step: int = 8
    group_size: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 96
    lr: float = 3e-4
    weight_decay: float = 0.0
    beta: float = 0.02  # KL weight to the frozen reference
    clip_eps: float = 0.2
    ppo_epochs: int = 2  # gradient steps per batch of rollouts (the clip matters from the second on)
    eps: float = 1e-6
    eval_every: int = 5
    eval_samples: int = 1  # samples per held-out problem when measuring accuracy
    seed: int = 0


# ----------------------------------------------------------------------------- advantages


def pad_token_values(values: Sequence[Sequence[float]], width: int | None = None) -> torch.Tensor:
    """Per-token lists (one per rollout) -> a right-padded ``[B, T]`` float tensor."""
    width = width if width is not None else max((len(v) for v in values), default=0)
    out = torch.zeros((len(values), width))
    for i, v in enumerate(values):
        if len(v):
            out[i, : len(v)] = torch.tensor(list(v), dtype=torch.float)
    return out


def broadcast(rollouts: Sequence[Rollout], per_rollout: Sequence[float]) -> torch.Tensor:
    """One advantage per rollout, on every one of its completion tokens: ``[B, T]``."""
    return pad_token_values([[a] * len(r.completion_ids) for r, a in zip(rollouts, per_rollout)])


def generated_tokens(rollout: Rollout) -> int:
    """Policy tokens a rollout cost: its sampled ids (stop token included), not the given prefix
    nor a tool's answers."""
    return rollout.n_generated


def outcome_rewards(rollouts: Sequence[Rollout]) -> list[float]:
    return [1.0 if r.trajectory.outcome else 0.0 for r in rollouts]


# ----------------------------------------------------------------------------- log-probs and loss


def token_logprobs(model, rollouts: Sequence[Rollout], temperature: float, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``log π(o_t | q, o_<t)`` of every completion token ``[B, T]`` and the train mask ``[B, T]``.

    Sequences are right-padded, so positions are plain ``0..L-1`` as in SFT.
    """
    device = next(model.parameters()).device
    full = [r.prompt_ids + r.completion_ids for r in rollouts]
    ids, att = pad_right(full, pad_id, device)
    width = ids.shape[1]
    t_max = max(len(r.completion_ids) for r in rollouts)
    logp_all = next_token_logprobs(model, ids, att, temperature)  # [B, L-1]
    # completion token j of row b sits at p_b + j and is predicted at p_b + j - 1
    starts = torch.tensor([len(r.prompt_ids) for r in rollouts], device=device)
    idx = (starts.unsqueeze(1) + torch.arange(t_max, device=device).unsqueeze(0) - 1).clamp(max=width - 2)
    logp = logp_all.gather(1, idx)
    mask = torch.zeros((len(rollouts), t_max), dtype=torch.bool)
    for i, r in enumerate(rollouts):
        mask[i, : len(r.completion_ids)] = torch.tensor(r.train_mask, dtype=torch.bool)
    return logp, mask.to(device)


def grpo_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.02,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate plus β·KL(k3), averaged over the masked tokens (see module docstring)."""
    m = mask.float()
    n = m.sum().clamp(min=1.0)
    ratio = torch.exp(logp - old_logp)
    surr = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    log_r = ref_logp - logp
    kl = torch.exp(log_r) - log_r - 1.0
    loss = ((-surr + beta * kl) * m).sum() / n
    with torch.no_grad():
        clipped = ((ratio - 1).abs() > clip_eps).float()
        stats = {"kl": float((kl * m).sum() / n), "clip_frac": float((clipped * m).sum() / n)}
    return loss, stats


# ----------------------------------------------------------------------------- evaluation


def evaluate_accuracy(model, tokenizer, domain, problems: Sequence[Problem], temperature: float,
                      max_new_tokens: int, samples: int = 1, seed: int = 12345) -> float:
    """Share of sampled solutions to held-out ``problems`` that are right.

    A fresh policy with a fixed seed each time: every method, at every point, is measured on the
    same problems with the same random numbers, so curves differ by the model alone. On a domain
    with tools the calculator runs while sampling, as in the training rollouts.
    """
    if uses_tools(domain):
        return rollout_accuracy(model, tokenizer, domain, problems, temperature, max_new_tokens, samples, seed)
    pol = HFPolicy(model, tokenizer, domain, HFPolicyConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    trajs = [t for g in pol.sample(list(problems), samples) for t in g]
    return sum(bool(t.outcome) for t in trajs) / max(1, len(trajs))


# ----------------------------------------------------------------------------- methods and trainer


class Method(Protocol):
    """What a method decides: which rollouts to sample and how their token advantages are built."""

    name: str

    def rollouts(self, trainer: "GRPOTrainer", problems: list[Problem], step: int) -> list[Rollout]: ...

    def advantages(self, trainer: "GRPOTrainer", rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]: ...


class OutcomeAdvantage:
    """The baseline method: ``group_size`` samples per problem, the outcome broadcast to every token."""

    name = "outcome"

    def rollouts(self, trainer: "GRPOTrainer", problems: list[Problem], step: int) -> list[Rollout]:
        return trainer.sample([Prefix(p, []) for p in problems], trainer.config.group_size, step)

    def advantages(self, trainer: "GRPOTrainer", rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        adv = group_normalise(outcome_rewards(rollouts), [r.group for r in rollouts], trainer.config.eps)
        return rollouts, broadcast(rollouts, adv)


@dataclass
class TrainResult:
    """What a run measured.

    Parameters:
        accuracy: ``[[samples, accuracy], ...]`` at each evaluation point (0 first).
        samples: rollouts sampled in all (a one-step rollout counts as one).
        seconds: wall time of the run.
        kl: KL to the reference after each round's last gradient step.
        mean_reward: share of correct rollouts each round.
        policy_tokens: policy tokens generated in all (see the module docstring).
        tokens: ``[[policy_tokens, accuracy], ...]`` at the same evaluation points as ``accuracy``.
    """

    accuracy: list[list[float]]
    samples: int
    seconds: float
    kl: list[float]
    mean_reward: list[float]
    policy_tokens: int = 0
    tokens: list[list[float]] = field(default_factory=list)


class GRPOTrainer:
    """One loop for every method: sample, build advantages, a few clipped-surrogate steps, repeat.

    A method may add a loss of its own to every PPO step (``auxiliary_loss(trainer, rollouts)``,
    e.g. MetaStone-S1's score head trained beside the policy) and act after each optimizer step
    (``after_step(trainer)``).
    """

    supports_auxiliary_loss = True

    def __init__(self, model, tokenizer, domain, config: GRPOConfig, method: Method, ref_model=None):
        self.model = model
        self.tokenizer = tokenizer
        self.domain = domain
        self.config = config
        self.method = method
        self.ref_model = ref_model if ref_model is not None else copy.deepcopy(model)
        self.ref_model.eval()
        for p in self.ref_model.parameters():
            p.requires_grad_(False)
        self.rng = np.random.default_rng(config.seed)  # the method's own draws (branch points, stages)
        # problems per step come from a separate stream, so every method sees the same batches per seed
        self.batch_rng = np.random.default_rng(config.seed + 7)
        self._sample_calls = 0
        self.policy_tokens = 0  # generated by every sample() call of the current run
        self.token_budget = 0  # > 0 while a run is budgeted in policy tokens

    def budget_progress(self, step: int) -> tuple[int, int]:
        """How far the run is through its budget: ``(step, steps)``, or ``(policy tokens so far,
        token budget)`` for a run budgeted in tokens (a schedule over training, like R3's
        progressive curriculum, reads it)."""
        if self.token_budget > 0:
            return self.policy_tokens, self.token_budget
        return step, self.config.steps

    def sample(self, prefixes: Sequence[Prefix], n: int, step: int, stop_at_step: bool = False,
               groups: Sequence[int] | None = None) -> list[Rollout]:
        """Rollouts from the current policy, seeded by the run's seed and a call counter."""
        self._sample_calls += 1
        c = self.config
        rolls = sample_rollouts(self.model, self.tokenizer, self.domain, prefixes, n, c.temperature, c.max_new_tokens,
                                seed=c.seed * 1_000_003 + self._sample_calls, stop_at_step=stop_at_step, groups=groups)
        self.policy_tokens += sum(generated_tokens(r) for r in rolls)
        return rolls

    def train(self, train_problems: Sequence[Problem], eval_problems: Sequence[Problem],
              progress: bool = True, desc: str | None = None, token_budget: int | None = None) -> TrainResult:
        """Train for ``config.steps`` rounds, or until ``token_budget`` policy tokens are generated.

        Budgeted in tokens, accuracy is measured each time the tokens spent first reach one of
        ``n = max(1, steps // eval_every)`` evenly spaced marks ``⌈B·j/n⌉`` (a round that passes
        several marks records the same measurement at each), so every run has ``n + 1`` points.
        """
        c, model = self.config, self.model
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=c.lr,
                                weight_decay=c.weight_decay, betas=(0.9, 0.99))
        pad = self.tokenizer.pad_token_id or 0
        self.token_budget = int(token_budget or 0)
        self.policy_tokens = 0
        n_marks = max(1, c.steps // c.eval_every)
        marks = [-(-self.token_budget * j // n_marks) for j in range(1, n_marks + 1)] if self.token_budget else []

        def evaluate() -> float:
            return evaluate_accuracy(model, self.tokenizer, self.domain, eval_problems, c.temperature,
                                     c.max_new_tokens, c.eval_samples)

        t0 = time.perf_counter()
        samples = 0
        acc0 = evaluate()
        curve, tok_curve = [[0, acc0]], [[0, acc0]]
        kls, rewards = [], []
        bar = tqdm(total=self.token_budget or c.steps, desc=desc or self.method.name, disable=not progress, leave=False)
        step = 0
        while (self.policy_tokens < self.token_budget) if self.token_budget else (step < c.steps):
            spent = self.policy_tokens
            idx = self.batch_rng.choice(len(train_problems), size=c.prompts_per_step, replace=False)
            rolls = self.method.rollouts(self, [train_problems[i] for i in idx], step)
            samples += len(rolls)
            if self.token_budget and self.policy_tokens == spent:
                raise RuntimeError(f"{self.method.name}: a round generated no policy tokens; the token budget cannot be spent")
            rewards.append(float(np.mean([bool(r.trajectory.outcome) for r in rolls])))
            kept, adv = self.method.advantages(self, rolls)
            if kept:
                with torch.no_grad():
                    old, mask = token_logprobs(model, kept, c.temperature, pad)
                    ref, _ = token_logprobs(self.ref_model, kept, c.temperature, pad)
                adv = adv[:, : old.shape[1]].to(old.device)
                if adv.shape[1] < old.shape[1]:
                    adv = torch.nn.functional.pad(adv, (0, old.shape[1] - adv.shape[1]))
                model.train()
                for _ in range(c.ppo_epochs):
                    logp, _ = token_logprobs(model, kept, c.temperature, pad)
                    loss, stats = grpo_loss(logp, old, ref, adv, mask, c.clip_eps, c.beta)
                    aux = getattr(self.method, "auxiliary_loss", None)
                    if aux is not None:
                        loss = loss + aux(self, kept)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    after = getattr(self.method, "after_step", None)
                    if after is not None:
                        after(self)
                model.eval()
                kls.append(stats["kl"])
            if self.token_budget:
                reached = sum(1 for m in marks[len(curve) - 1:] if self.policy_tokens >= m)
                bar.update(min(self.policy_tokens, self.token_budget) - min(spent, self.token_budget))
            else:
                reached = int((step + 1) % c.eval_every == 0 or step + 1 == c.steps)
                bar.update(1)
            if reached:
                acc = evaluate()
                curve += [[samples, acc] for _ in range(reached)]
                tok_curve += [[self.policy_tokens, acc] for _ in range(reached)]
                bar.set_postfix(acc=f"{acc:.3f}")
            step += 1
        bar.close()
        return TrainResult(curve, samples, time.perf_counter() - t0, kls, rewards, self.policy_tokens, tok_curve)
