"""Temporal block masks, EMA target and the masked-only latent loss."""

import torch

from selfprm.jepa.masking import TemporalMaskConfig, contiguous_runs, sample_temporal_masks
from selfprm.jepa.model import (
    EncoderConfig,
    Predictor,
    VideoEncoder,
    ema_update,
    latent_l1_loss,
    make_target_encoder,
    seeded_init,
)
from selfprm.jepa.pretrain import jepa_loss

CFG = EncoderConfig(num_frames=8, dim=16, depth=1, heads=2, predictor_dim=16, predictor_depth=1)


def _models():
    with seeded_init(0):
        enc = VideoEncoder(CFG)
        pred = Predictor(CFG, CFG.dim)
    return enc, make_target_encoder(enc), pred


def test_mask_covers_whole_frames_in_contiguous_blocks():
    cfg = TemporalMaskConfig(num_frames=16, mask_ratio=0.5, num_blocks=2)
    mask = sample_temporal_masks(64, cfg, torch.Generator().manual_seed(0))
    assert mask.masked.shape == (64, 16)  # one flag per frame: a frame is masked whole or not at all
    assert (mask.masked.sum(1) == 8).all()
    for row, vis, msk in zip(mask.masked, mask.visible_idx, mask.masked_idx, strict=True):
        runs = contiguous_runs(row)
        assert 1 <= len(runs) <= 2 and sum(length for _, length in runs) == 8
        assert not row[vis].any() and row[msk].all()
        assert sorted(vis.tolist() + msk.tolist()) == list(range(16))
    # Masks vary across clips (not one fixed pattern).
    assert len({tuple(r.tolist()) for r in mask.masked}) > 10


def test_context_encoder_never_reads_masked_frames():
    enc, _, _ = _models()
    frames = torch.rand(3, 8, 32, 32)
    mask = sample_temporal_masks(3, TemporalMaskConfig(num_frames=8), torch.Generator().manual_seed(1))
    out = enc(frames, mask.visible_idx)
    corrupted = frames.clone()
    corrupted[mask.masked] = torch.rand_like(corrupted[mask.masked])  # replace every pixel of masked frames
    assert torch.equal(out, enc(corrupted, mask.visible_idx))
    corrupted_visible = frames.clone()
    corrupted_visible[~mask.masked] = 0.0
    assert not torch.allclose(out, enc(corrupted_visible, mask.visible_idx))


def test_target_encoder_is_ema_and_gets_no_gradient():
    enc, target, pred = _models()
    before = [p.detach().clone() for p in target.parameters()]
    frames = torch.rand(2, 8, 32, 32)
    mask = sample_temporal_masks(2, TemporalMaskConfig(num_frames=8), torch.Generator().manual_seed(2))
    loss, _ = jepa_loss(enc, target, pred, frames, mask.visible_idx, mask.masked_idx)
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.1)
    ema_update(target, enc, momentum=0.9)
    for b, t, o in zip(before, target.parameters(), enc.parameters(), strict=True):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)  # θ̄ ← m θ̄ + (1 − m) θ


def test_loss_uses_embeddings_of_masked_frames_only():
    mask = sample_temporal_masks(4, TemporalMaskConfig(num_frames=8), torch.Generator().manual_seed(3))
    predicted = torch.randn(4, mask.masked_idx.shape[1], 16)
    target = torch.randn(4, 8, 16, requires_grad=True)
    loss = latent_l1_loss(predicted, target, mask.masked_idx)
    loss.backward()
    # Gradient reaches exactly the masked frames' target embeddings.
    touched = target.grad.abs().sum(-1) > 0
    assert torch.equal(touched, mask.masked)
    moved_visible = target.detach().clone()
    moved_visible[~mask.masked] += 5.0
    assert torch.equal(latent_l1_loss(predicted, moved_visible, mask.masked_idx), loss.detach())
    moved_masked = target.detach().clone()
    moved_masked[mask.masked] += 5.0
    assert latent_l1_loss(predicted, moved_masked, mask.masked_idx) > loss.detach() + 1.0
