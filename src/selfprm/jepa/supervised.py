"""The from-scratch baseline: the same encoder and probe heads trained on labels only.

This is what UI-JEPA's label efficiency is measured against (arXiv
2409.04081): no unlabeled recordings, the encoder is randomly initialised and
trained end to end through the same attentive-probe heads on the few labelled clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfprm.jepa.intent import IntentHeads, IntentTargets, ProbeConfig, heads_loss, intent_targets
from selfprm.jepa.model import EncoderConfig, VideoEncoder, seeded_init
from selfprm.jepa.pretrain import frames_to_float
from selfprm.jepa.ui_streams import Intent


@dataclass
class SupervisedConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05


def train_from_scratch(
    frames: torch.Tensor,
    intents: list[Intent],
    enc_cfg: EncoderConfig,
    probe_cfg: ProbeConfig,
    cfg: SupervisedConfig,
    generator: torch.Generator,
    seed: int,
) -> tuple[VideoEncoder, IntentHeads]:
    """Train encoder + heads jointly on uint8 clips [N, T, H, W] and their intents."""
    with seeded_init(seed):
        encoder = VideoEncoder(enc_cfg)
        heads = IntentHeads(enc_cfg.dim, probe_cfg)
    targets = intent_targets(intents)
    params = list(encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(frames)
    for _ in range(cfg.steps):
        idx = torch.randint(n, (cfg.batch_size,), generator=generator) if n > cfg.batch_size else torch.arange(n)
        features = encoder(frames_to_float(frames[idx]))
        loss = heads_loss(heads(features), IntentTargets(targets.template[idx], targets.slots[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    encoder.eval()
    heads.eval()
    return encoder, heads
