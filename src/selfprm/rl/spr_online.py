"""``spr_online``: GRPO with MetaStone-S1's self-supervised process reward head learning online.

MetaStone-S1 (arXiv 2507.01951, §3; public code MetaStone-AI/MetaStone-S1) trains a *shared*
policy and process reward model: a score head (SPRM) on the policy's own hidden states learns
beside the policy, from each batch of fresh rollouts and their outcomes, with the SPR loss.

What the public code does (``verl/verl/workers/fsdp_workers.py``, ``_build_score_model_optimizer``
l.139-227; ``verl/verl/workers/actor/dp_actor.py``, ``_forward_micro_batch_with_score``
l.212-362 and ``update_policy`` l.455-545; ``scripts/run_single_node.sh``):

- the head is ``Linear(C, 2C)-ReLU-Dropout(0.5)-Linear(2C, 1)`` with its own AdamW
  (``score.optim.lr`` 1e-5 — ten times the actor's 1e-6 —, weight decay 1e-2, betas
  (0.9, 0.999)) and its own grad-norm clip;
- it reads ``hidden_states[-2]`` of the *same* forward pass that gives the policy's log-probs,
  scaled ``feat·1e-4 + feat.detach()·(1 - 1e-4)`` so the backbone gets 1e-4 of its gradient;
- it scores the position just before each step separator (``'.\\n\\n'``) inside the think span;
  every scored step's pseudo-label is the rollout's outcome; the loss is the SPR loss
  (dynamic filter, class balance, ``1.5`` on the positive class: :func:`selfprm.prm.losses.spr_loss`);
- ``policy_loss += score_loss`` on every PPO micro-batch: the head's 1e-4 backbone gradient is
  summed with the policy gradient and stepped by the actor's optimizer;
- **the advantage is outcome-only GRPO** (``algorithm.adv_estimator=grpo``): the step scores are
  *not* used in the policy update. They are used at test time only (``test/score_model_queue.py``:
  Best-of-N over the geometric mean of the step scores).

What this file does. By default exactly that advantage (``advantage="outcome"``), and the head
learns from each round's rollouts once per round, inside :meth:`SPROnlineMethod.advantages`
(``head_update="round"``: today's trainer has no per-PPO-step hook). ``head_update="ppo_step"`` is
MetaStone's own form — :meth:`~SPROnlineMethod.auxiliary_loss` added to the policy loss at every PPO
step, :meth:`~SPROnlineMethod.after_step` stepping the head — for a trainer that calls them (and
says so with ``supports_auxiliary_loss = True``). The head is a
:class:`~selfprm.prm.model.ProcessRewardModel` with ``SPR_REFERENCE`` built around the policy
itself (``trainer.model``: shared, not a copy), created on the first call (it needs the width),
with its own AdamW. Its backbone gradient (1e-4 of the head's) cannot be stepped by an optimizer
of its own — Adam would rescale it to a full-size step — so it is added to the policy's gradient
on the trainer's next backward pass (``backbone_grad="policy_step"``, one-shot parameter hooks),
which is what MetaStone's summed loss does (once per round here, on the first PPO epoch, instead
of at every PPO step); ``"none"`` keeps the backbone out of it. As in MetaStone, a round whose
policy gradient is ~0 (every group's outcomes agree) hands Adam that 1e-4 gradient alone, and
Adam's normalisation turns it into a full-size step.

Named options beyond the public code:

- ``advantage="step"``: the head's step scores (``σ(logit)``, read before this round's head update)
  feed the advantage as :mod:`selfprm.rl.prm_reward` does (DeepSeekMath process supervision added to
  the outcome advantage, weight ``alpha``, ``cumulative`` for the return form).
- ``read_at="separator"``: read the head at the separator token itself (``ProcessRewardModel.encode``'s
  convention) instead of the token before it (MetaStone's).

Logged at each head step in ``log_``: the SPR loss, kept / total steps per class and the kept share
per class (the filter's collapse shows as one share going to 0). ``token_passes`` counts the tokens
of the extra forward + backward through the backbone that the head's update costs here; MetaStone's
head rides on the policy's own forward pass (``output_hidden_states=True``), which would make it 0
only if the trainer handed the method its hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.lm_logprobs import pad_right
from selfprm.prm.losses import spr_loss
from selfprm.prm.model import SPR_REFERENCE, EncodedBatch, PRMConfig, ProcessRewardModel, base_model
from selfprm.rl.grpo import (GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult, broadcast, group_normalise,
                             outcome_rewards)
from selfprm.rl.methods import MethodSpec, register_method
from selfprm.rl.prm_reward import process_advantages
from selfprm.rl.rollout import Rollout, token_segments
from selfprm.types import Problem

ADVANTAGES = ("outcome", "step")
READ_AT = ("pre_separator", "separator")
BACKBONE_GRAD = ("policy_step", "none")
HEAD_UPDATES = ("round", "ppo_step")


@dataclass
class SPROnlineConfig(GRPOConfig):
    """GRPO plus MetaStone-S1's online SPR head.

    Parameters:
        head_lr: AdamW lr of the score head (MetaStone: 1e-5, ten times its actor's 1e-6; here ten
            times the GRPO default lr).
        head_weight_decay: AdamW weight decay of the head (MetaStone: 1e-2).
        head_grad_clip: grad-norm clip of the head (verl's actor ``grad_clip``, 1.0).
        pos_factor: weight of the positive class in the SPR loss (MetaStone: 1.5).
        backbone_grad_scale: share of the head's gradient that reaches the policy (MetaStone: 1e-4).
        backbone_grad: ``policy_step`` (added to the policy's next gradient) or ``none``.
        advantage: ``outcome`` (MetaStone: GRPO on the outcome only) or ``step`` (step scores added
            to the outcome advantage as in ``rl/prm_reward.py``).
        alpha: weight of the step term (``advantage="step"``).
        cumulative: the step term as a return (``advantage="step"``).
        read_at: ``pre_separator`` (MetaStone: the token before the separator) or ``separator``.
        head_update: ``round`` (one head step per round, inside ``advantages``; works with today's
            trainer) or ``ppo_step`` (MetaStone: the SPR loss added to the policy loss at every PPO
            step; needs a trainer that calls ``auxiliary_loss`` / ``after_step``).
    """

    head_lr: float = 3e-3
    head_weight_decay: float = 1e-2
    head_grad_clip: float = 1.0
    pos_factor: float = 1.5
    backbone_grad_scale: float = SPR_REFERENCE["backbone_grad_scale"]
    backbone_grad: str = "policy_step"
    advantage: str = "outcome"
    alpha: float = 0.5
    cumulative: bool = False
    read_at: str = "pre_separator"
    head_update: str = "round"

    def __post_init__(self) -> None:
        for name, allowed in (("advantage", ADVANTAGES), ("read_at", READ_AT), ("backbone_grad", BACKBONE_GRAD),
                              ("head_update", HEAD_UPDATES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")


def step_read_positions(tokenizer, rollout: Rollout, separator: str, read_at: str = "pre_separator") -> list[int]:
    """Index in ``prompt_ids + completion_ids`` where the head reads each step of the completion.

    A step is read only where it ends with the separator (MetaStone scores at separators only):
    at the separator token (``separator``) or the token before it (``pre_separator``, the hidden
    state that predicts the separator, as ``dp_actor.py`` rolls its score mask by one).
    """
    seg = token_segments(tokenizer, rollout.completion_ids, separator)
    p0 = len(rollout.prompt_ids)
    out = []
    for j in range(max((s for s in seg if s >= 0), default=-1) + 1):
        idx = [t for t, s in enumerate(seg) if s == j]
        last = idx[-1]
        if separator not in tokenizer.decode([rollout.completion_ids[last]]):
            continue  # the step was cut off before its separator
        pos = last - 1 if read_at == "pre_separator" else last
        if read_at == "pre_separator" and pos < idx[0]:
            continue  # an empty step: nothing before the separator
        out.append(p0 + pos)
    return out


def rollout_batch(tokenizer, rollouts: Sequence[Rollout], separator: str, read_at: str,
                  device=None) -> tuple[EncodedBatch, list[int]]:
    """The rollouts as the policy saw them, with the head's read positions: a ``ProcessRewardModel``
    batch over the policy's own token layout, and each rollout's number of read steps."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, att = pad_right([r.prompt_ids + r.completion_ids for r in rollouts], pad, device)
    pos = [step_read_positions(tokenizer, r, separator, read_at) for r in rollouts]
    width = max(1, max(len(p) for p in pos))
    positions = torch.zeros((len(rollouts), width), dtype=torch.long)
    mask = torch.zeros((len(rollouts), width), dtype=torch.bool)
    for i, p in enumerate(pos):
        if p:
            positions[i, : len(p)] = torch.tensor(p)
            mask[i, : len(p)] = True
    return EncodedBatch(ids, att, positions.to(ids.device), mask.to(ids.device)), [len(p) for p in pos]


class SPROnlineMethod(OutcomeAdvantage):
    """GRPO whose rollouts also train MetaStone-S1's SPR head on the policy (see the module doc).

    After the first call: ``prm_`` (the head around the policy), ``head_optimizer_``, ``log_`` (one
    dict per head step: per round, or per PPO step with ``head_update="ppo_step"``). ``token_passes``: extra backbone token passes the head's updates cost.
    """

    name = "spr_online"

    def __init__(self, config: SPROnlineConfig | None = None):
        self.config = config or SPROnlineConfig()
        self.prm_: ProcessRewardModel | None = None
        self.head_optimizer_: torch.optim.Optimizer | None = None
        self.log_: list[dict] = []
        self.token_passes = 0
        self._pending: dict[torch.nn.Parameter, torch.Tensor] = {}
        self._hooks: list = []

    # ------------------------------------------------------------------ the head
    def _ensure_head(self, trainer) -> ProcessRewardModel:
        model = trainer.model
        if self.prm_ is not None and self.prm_.backbone is base_model(model):
            return self.prm_
        c = self.config
        scale = c.backbone_grad_scale if c.backbone_grad == "policy_step" else 0.0  # 0: features detached
        cfg = PRMConfig(step_separator=trainer.domain.step_separator,
                        **{**SPR_REFERENCE, "backbone_grad_scale": scale})
        p = next(model.parameters())
        prm = ProcessRewardModel(model, trainer.tokenizer, cfg)  # wraps the policy's body: shared, not a copy
        prm.head.to(device=p.device, dtype=p.dtype)
        self.prm_ = prm
        self.head_optimizer_ = torch.optim.AdamW(prm.head.parameters(), lr=c.head_lr, betas=(0.9, 0.999),
                                                 weight_decay=c.head_weight_decay)
        self.log_ = []
        return prm

    def head_logits(self, trainer, rollouts: Sequence[Rollout],
                    train: bool) -> tuple[torch.Tensor, EncodedBatch, list[int]]:
        """Step logits ``[B, S]`` of the head over the rollouts (dropout on when ``train``); only
        the head's mode is switched — the backbone is the policy and keeps its own."""
        prm = self._ensure_head(trainer)
        batch, n_steps = rollout_batch(trainer.tokenizer, rollouts, trainer.domain.step_separator,
                                       self.config.read_at, prm.device)
        prm.head.train(train)
        with torch.set_grad_enabled(train):
            logits = prm(batch)
        return logits, batch, n_steps

    def step_scores(self, trainer, rollouts: Sequence[Rollout]) -> list[list[float]]:
        """``σ(logit)`` of each read step (dropout off, no gradient)."""
        logits, _, n_steps = self.head_logits(trainer, rollouts, train=False)
        probs = torch.sigmoid(logits.float()).cpu()
        return [probs[i, :n].tolist() for i, n in enumerate(n_steps)]

    def update_head(self, trainer, rollouts: Sequence[Rollout]) -> dict:
        """One SPR step of the head on the rollouts, pseudo-labelled by their outcomes; the
        backbone's share of the gradient is left for the policy's next step (or dropped)."""
        c = self.config
        self._drop_hooks()
        logits, batch, _ = self.head_logits(trainer, rollouts, train=True)
        y = torch.tensor(outcome_rewards(rollouts), device=logits.device)[:, None].expand_as(logits)
        out = spr_loss(logits, y, batch.step_mask, pos_factor=c.pos_factor)
        self.head_optimizer_.zero_grad(set_to_none=True)
        body = [p for p in self.prm_.backbone.parameters() if p.requires_grad]
        saved = {p: p.grad for p in body}  # whatever the policy holds stays untouched
        for p in body:
            p.grad = None
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.prm_.head.parameters(), c.head_grad_clip)
        self.head_optimizer_.step()
        self.head_optimizer_.zero_grad(set_to_none=True)
        self._pending = {p: p.grad.detach().clone() for p in body if p.grad is not None} \
            if c.backbone_grad == "policy_step" else {}
        for p in body:
            p.grad = saved[p]
        for p in self._pending:
            self._hooks.append(p.register_hook(self._make_hook(p)))
        self.prm_.head.eval()
        n_tok = int(batch.attention_mask.sum())
        self.token_passes += 2 * n_tok  # forward + backward through the backbone
        return self._log(out)

    # ------------------------------------------------------------------ MetaStone's per-PPO-step form
    def auxiliary_loss(self, trainer, rollouts: Sequence[Rollout]) -> torch.Tensor:
        """``head_update="ppo_step"``: the SPR loss to add to the policy loss before its backward
        (MetaStone's ``policy_loss += score_loss``); the backbone gets ``backbone_grad_scale`` of
        its gradient through the same optimizer step as the policy's. 0 in ``round`` mode."""
        c = self.config
        if c.head_update != "ppo_step":
            return torch.zeros((), device=next(trainer.model.parameters()).device)
        logits, batch, _ = self.head_logits(trainer, rollouts, train=True)
        y = torch.tensor(outcome_rewards(rollouts), device=logits.device)[:, None].expand_as(logits)
        out = spr_loss(logits, y, batch.step_mask, pos_factor=c.pos_factor)
        self.head_optimizer_.zero_grad(set_to_none=True)
        self.token_passes += 2 * int(batch.attention_mask.sum())  # the extra pass of this form
        self._log(out)
        return out.loss

    def after_step(self, trainer) -> None:
        """``head_update="ppo_step"``: the head's own clipped AdamW step after the policy's."""
        if self.config.head_update != "ppo_step" or self.head_optimizer_ is None:
            return
        torch.nn.utils.clip_grad_norm_(self.prm_.head.parameters(), self.config.head_grad_clip)
        self.head_optimizer_.step()
        self.head_optimizer_.zero_grad(set_to_none=True)
        self.prm_.head.eval()

    def _log(self, out) -> dict:
        row = {"loss": out.loss.item(), "kept_pos": out.kept_pos, "kept_neg": out.kept_neg,
               "total_pos": out.total_pos, "total_neg": out.total_neg,
               "kept_share_pos": out.kept_pos / out.total_pos if out.total_pos else float("nan"),
               "kept_share_neg": out.kept_neg / out.total_neg if out.total_neg else float("nan")}
        self.log_.append(row)
        return row

    def _make_hook(self, p):
        def hook(grad):
            extra = self._pending.pop(p, None)
            return None if extra is None else grad + extra.to(grad.dtype)
        return hook

    def _drop_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._pending = [], {}

    # ------------------------------------------------------------------ the method
    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c = self.config
        self._ensure_head(trainer)
        groups = [r.group for r in rollouts]
        out_adv = group_normalise(outcome_rewards(rollouts), groups, c.eps)
        scores = self.step_scores(trainer, rollouts) if c.advantage == "step" else None  # before the update
        if c.head_update == "round":
            self.update_head(trainer, rollouts)
        elif not getattr(trainer, "supports_auxiliary_loss", False):
            raise RuntimeError("head_update='ppo_step' needs a trainer that calls method.auxiliary_loss and "
                               "method.after_step at every PPO step; use head_update='round'")
        if scores is None:
            return rollouts, broadcast(rollouts, out_adv)
        return rollouts, process_advantages(trainer, rollouts, out_adv, scores, c.alpha, c.cumulative, c.eps)


def train_spr_online(model, tokenizer, domain, config: SPROnlineConfig, train_problems: Sequence[Problem],
                     eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    method = SPROnlineMethod(config)
    return GRPOTrainer(model, tokenizer, domain, config, method).train(train_problems, eval_problems, progress)


register_method("spr_online", MethodSpec(SPROnlineConfig, lambda c, prm: SPROnlineMethod(c)))
