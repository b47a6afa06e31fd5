"""Cross-fitted critics for a label source that searches: models trained inside the source, on
the free signal of one ``label()`` call, that never score a problem they trained on.

A critic is a :class:`~selfprm.prm.model.ProcessRewardModel` — a scoring head on a copy of the
policy's own backbone — fitted with the soft-label BCE of :func:`~selfprm.prm.train.train_prm`.
The problems of the call are dealt into ``n_folds`` folds (:func:`selfprm.labels.folds.assign_problem_folds`); critic
``k`` trains on every fold but ``k`` and scores fold ``k`` only (:class:`CrossFitCritic`), so a
trajectory's labels never lean on a model that saw its own outcome, the same cross-fitting the
``implicit`` source uses.

Cost: :func:`fit_cross` returns each model's training token positions (forward + backward, each
counted, as :class:`~selfprm.prm.train.TrainHistory` counts them) and :meth:`CrossFitCritic.score`
the scoring forwards per item (padding not counted), for the ``token_passes`` of the labels.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.prm.model import PRMConfig, ProcessRewardModel
from selfprm.prm.train import PRMTrainConfig, train_prm
from selfprm.types import StepLabels, Trajectory


def build_critic(policy, config: PRMConfig, seed: int) -> ProcessRewardModel:
    """A fresh critic: a copy of the policy's backbone (its weights are never touched) and a head
    initialised from ``seed``; ``max_length`` is capped at the model's positions. Every model a
    label source trains on its own calls (mcts's critics, consensus's verifier) is built here."""
    model, tok = getattr(policy, "model", None), getattr(policy, "tokenizer", None)
    if model is None or tok is None:
        raise TypeError("a model trained inside a label source sits on a copy of the policy's model, so it "
                        f"needs a policy with .model and .tokenizer (an HFPolicy); got {type(policy).__name__}")
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if limit is not None and config.max_length > int(limit):
        config = dataclasses.replace(config, max_length=int(limit))
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed % 2**63)
        prm = ProcessRewardModel(copy.deepcopy(model), tok, config)
    return prm.to(device)


@dataclass
class CrossFitCritic:
    """One model per fold: ``models[k]`` trained on the problems ``trained_on[k]`` (none of fold
    ``k``) and scores fold ``k`` only."""

    name: str
    models: list[ProcessRewardModel]
    trained_on: list[frozenset[str]]
    train_passes: list[int]
    losses: list[list[float]]
    batch_size: int = 64

    def score(self, folds: Sequence[int], prompts: Sequence[str], steps: Sequence[Sequence[str]]
              ) -> tuple[list[float], list[int]]:
        """The score of the *last* step of each item by its fold's model (NaN where there is no
        step or it was cut off) and the token positions each item's forward ran through."""
        scores: list[float] = [math.nan] * len(prompts)
        passes = [0] * len(prompts)
        for k, model in enumerate(self.models):
            idx = [i for i, f in enumerate(folds) if f == k and len(steps[i]) > 0]
            if not idx:
                continue
            was = model.training
            model.eval()
            with torch.no_grad():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s:s + self.batch_size]
                    batch = model.encode([prompts[i] for i in chunk], [list(steps[i]) for i in chunk]).to(model.device)
                    probs = torch.sigmoid(model(batch).float()).cpu()
                    used = batch.attention_mask.sum(1).tolist()
                    for r, i in enumerate(chunk):
                        last = len(steps[i]) - 1
                        passes[i] = int(used[r])
                        if bool(batch.step_mask[r, last]):
                            scores[i] = float(probs[r, last])
            model.train(was)
        return scores, passes


def fit_cross(policy, name: str, data: Sequence[tuple[str, Trajectory, StepLabels]], fold_of: dict[str, int],
              n_folds: int, model_config: PRMConfig, train_config: PRMTrainConfig, seed: int,
              batch_size: int = 64, progress: bool = False) -> CrossFitCritic:
    """Fit ``n_folds`` critics on ``data`` — ``(problem id, trajectory, soft step labels)`` — model
    ``k`` on the items whose problem is not in fold ``k``."""
    models, trained_on, passes, losses = [], [], [], []
    for k in range(n_folds):
        items = [(t, lab) for pid, t, lab in data if fold_of[pid] != k]
        if not items:
            raise ValueError(f"the {name} critic of fold {k} has nothing to train on: no labelled trajectory "
                             "of another fold")
        model = build_critic(policy, model_config, seed * 1_000_003 + 7919 * k + sum(map(ord, name)))
        hist = train_prm(model, items, dataclasses.replace(train_config, seed=seed * 1_000_003 + k),
                         progress=progress, desc=f"{name} critic {k + 1}/{n_folds}")
        models.append(model)
        trained_on.append(frozenset(pid for pid, _, _ in data if fold_of[pid] != k))
        passes.append(int(hist.token_passes))
        losses.append(list(hist.loss))
    return CrossFitCritic(name, models, trained_on, passes, losses, batch_size)
