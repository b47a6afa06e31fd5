"""Training a PRM on step labels: BCE, soft-label BCE or SPR, with a loop you can read in one go."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from selfprm.prm.losses import bce_loss, class_balanced_bce, spr_loss
from selfprm.prm.model import ProcessRewardModel
from selfprm.types import StepLabels, Trajectory

LOSSES = ("bce", "soft_bce", "spr")


@dataclass
class PRMTrainConfig:
    """How a PRM is fitted on step labels.

    Parameters:
        loss: ``bce`` (hard labels), ``soft_bce`` (soft labels) or ``spr`` (MetaStone-S1's loss).
        epochs: passes over the labelled trajectories.
        batch_size: trajectories per optimizer step.
        lr: learning rate of the backbone.
        head_lr: learning rate of the scoring head.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of the steps with a linear learning-rate warm-up.
        spr_warmup_steps: SPR only: steps of class-balanced BCE before the dynamic filter is on.
        spr_pos_factor: SPR only: weight of positive pseudo-labels (MetaStone-S1 uses 1.5).
        spr_one_sided_fallback: SPR only: a batch whose filter kept no step of a class present in it
            trains on class-balanced BCE instead (not in the paper; the one-sided state is absorbing).
        log_every: steps between logged SPR kept shares (the loss is logged every step).
        seed: batch order.
    """

    loss: str = "bce"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float = 5e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    # SPR only: optimizer steps of class-balanced BCE on the pseudo-labels before the filter is on,
    # so the filter starts from a head that already separates something (the warm start).
    spr_warmup_steps: int = 0
    spr_pos_factor: float = 1.5
    # SPR only: once every logit has one sign the filter keeps one class and nothing pulls the head
    # back; with this on, such a batch trains on class-balanced BCE instead (counted in the history)
    spr_one_sided_fallback: bool = False
    log_every: int = 1
    seed: int = 0


@dataclass
class TrainHistory:
    loss: list[float] = field(default_factory=list)
    # SPR: share of positive-/negative-pseudo-labelled steps the filter kept, per logged step
    spr_step: list[int] = field(default_factory=list)
    spr_kept_pos: list[float] = field(default_factory=list)
    spr_kept_neg: list[float] = field(default_factory=list)
    spr_fallback_steps: int = 0  # SPR batches trained on class-balanced BCE because the filter was one-sided
    seconds: float = 0.0
    examples: int = 0
    # token positions through the model: each forward and each backward pass counted (the ledger)
    token_passes: int = 0


class EpochCheckpoint(Protocol):
    """Where :func:`train_prm` keeps one checkpoint per finished epoch, so a killed run resumes.

    As in nanoGPT, one checkpoint holds model, optimizer, scheduler and history, so resuming is one
    load; where and how it is written (atomically) is the caller's choice.
    """

    def restore(self, prm: ProcessRewardModel, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, history: TrainHistory) -> int:
        """Load the last checkpoint into the objects given (``history`` in place); return the
        epochs it had finished (0: none, train from the start)."""
        ...

    def save(self, epochs_done: int, prm: ProcessRewardModel, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, history: TrainHistory) -> None:
        """Keep the state after ``epochs_done`` epochs."""
        ...


def train_prm(
    prm: ProcessRewardModel,
    data: Sequence[tuple[Trajectory, StepLabels | None]],
    config: PRMTrainConfig | None = None,
    progress: bool = True,
    desc: str = "PRM",
    checkpoint: EpochCheckpoint | None = None,
) -> TrainHistory:
    """Fit ``prm`` on (trajectory, labels) pairs; pairs with no labels (dropped by the source) are skipped.

    With ``checkpoint``, training starts after the epochs it restores and saves one after every
    epoch; the batch orders of the skipped epochs are still drawn, so a resumed run trains on the
    batches an unbroken one would have.
    """
    import time

    c = config or PRMTrainConfig()
    if c.loss not in LOSSES:
        raise ValueError(f"unknown loss {c.loss!r}; choose from {LOSSES}")
    items = [(t, l) for t, l in data if l is not None and len(t.steps) > 0]
    if not items:
        raise ValueError("no labelled trajectories to train on")
    hist = TrainHistory(examples=len(items))
    rng = np.random.default_rng(c.seed)
    steps_per_epoch = math.ceil(len(items) / c.batch_size)
    total = steps_per_epoch * c.epochs
    head_params = list(prm.head.parameters())
    body_params = [p for p in prm.backbone.parameters() if p.requires_grad]
    if prm.lm_head is not None:  # an untied LM head trains with the body (a tied one is already in it)
        seen = {id(p) for p in body_params}
        body_params += [p for p in prm.lm_head.parameters() if p.requires_grad and id(p) not in seen]
    opt = torch.optim.AdamW(
        [{"params": body_params, "lr": c.lr}, {"params": head_params, "lr": c.head_lr}], weight_decay=c.weight_decay
    )
    warm = max(1, int(c.warmup_ratio * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    done_epochs = checkpoint.restore(prm, opt, sched, hist) if checkpoint is not None else 0
    seconds_before = hist.seconds
    prm.train()
    t0 = time.perf_counter()
    step = done_epochs * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc=f"train {desc}", disable=not progress, leave=False)
    for epoch in range(c.epochs):
        order = rng.permutation(len(items))
        if epoch < done_epochs:  # restored from the checkpoint
            continue
        for s in range(0, len(order), c.batch_size):
            chunk = [items[i] for i in order[s:s + c.batch_size]]
            batch = prm.encode([t.problem.prompt for t, _ in chunk], [t.steps for t, _ in chunk]).to(prm.device)
            y = torch.zeros(batch.step_mask.shape)
            w = torch.zeros(batch.step_mask.shape)
            for i, (_, lab) in enumerate(chunk):
                y[i, : len(lab.values)] = torch.tensor(lab.values)
                w[i, : len(lab.values)] = torch.tensor(lab.weights if lab.weights is not None else [1.0] * len(lab.values))
            y, w = y.to(prm.device), w.to(prm.device)
            mask = batch.step_mask & (w > 0)
            logits = prm(batch)
            if c.loss == "spr" and step >= c.spr_warmup_steps:
                out = spr_loss(logits, y, mask, pos_factor=c.spr_pos_factor)
                loss = out.loss
                one_sided = (out.total_pos > 0 and out.kept_pos == 0) or (out.total_neg > 0 and out.kept_neg == 0)
                if c.spr_one_sided_fallback and one_sided:
                    loss = class_balanced_bce(logits, y, mask)
                    hist.spr_fallback_steps += 1
                if step % c.log_every == 0:
                    hist.spr_step.append(step)
                    hist.spr_kept_pos.append(out.kept_pos / max(1, out.total_pos))
                    hist.spr_kept_neg.append(out.kept_neg / max(1, out.total_neg))
            elif c.loss == "spr":
                loss = class_balanced_bce(logits, y, mask)
            else:
                loss = bce_loss(logits, y, mask, w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            hist.token_passes += 2 * int(batch.attention_mask.sum())
            torch.nn.utils.clip_grad_norm_(prm.parameters(), 1.0)
            opt.step()
            sched.step()
            hist.loss.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{hist.loss[-1]:.3f}")
        if checkpoint is not None:
            hist.seconds = seconds_before + time.perf_counter() - t0
            checkpoint.save(epoch + 1, prm, opt, sched, hist)
    bar.close()
    prm.eval()
    hist.seconds = seconds_before + time.perf_counter() - t0
    return hist
