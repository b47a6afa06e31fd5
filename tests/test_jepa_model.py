"""Token masks (tube / frame), the position-conditioned predictor, EMA target, latent loss, collapse checks."""

import pytest
import torch

from selfprm.jepa.masking import (
    MaskConfig,
    TemporalMaskConfig,
    contiguous_runs,
    sample_temporal_masks,
    sample_token_masks,
)
from selfprm.jepa.model import (
    EncoderConfig,
    Predictor,
    VideoEncoder,
    ema_update,
    latent_l1_loss,
    make_target_encoder,
    patchify,
    seeded_init,
)
from selfprm.jepa.pretrain import collapse_metrics, effective_rank, embedding_std, jepa_loss

# 8 frames of 32x32 in 16x16 patches: a 8 x 2 x 2 token grid (32 tokens).
CFG = EncoderConfig(num_frames=8, patch_size=16, tubelet_size=1, dim=16, depth=1, heads=2, predictor_dim=16,
                    predictor_depth=1)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _models():
    with seeded_init(0):
        enc = VideoEncoder(CFG)
        pred = Predictor(CFG, CFG.dim)
    return enc, make_target_encoder(enc), pred


def test_tube_mask_hides_one_spatial_block_in_consecutive_frames():
    grid = (6, 4, 4)
    cfg = MaskConfig(masking="tube", num_blocks=1, spatial_scale=(0.25, 0.25), temporal_scale=(0.5, 0.5),
                     aspect_ratio=(1.0, 1.0))
    mask = sample_token_masks(5, grid, cfg, torch.Generator().manual_seed(0))
    assert mask.masked.shape == (5, 6, 4, 4)
    for clip in mask.masked:
        frames = clip.flatten(1).any(1)
        (start, k), = contiguous_runs(frames)  # one run of k = 6 * 0.5 consecutive frames
        assert k == 3
        block = clip[start]
        assert block.sum() == 4  # 0.25 of the 4x4 grid, square: a 2x2 block
        rows, cols = block.nonzero().unbind(1)
        assert rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1
        for t in range(start, start + k):
            assert torch.equal(clip[t], block)  # the same spatial block in every frame of the tube
    # Flat indices: token (t, i, j) is (t*4 + i)*4 + j; masked and visible partition the grid.
    b0 = mask.masked[0].flatten()
    assert b0[mask.masked_idx[0]].all() and not b0[mask.visible_idx[0]].any()
    assert len(set(mask.masked_idx[0].tolist()) | set(mask.visible_idx[0].tolist())) == 6 * 16


def test_frame_masking_hides_every_patch_of_whole_frames():
    mask = sample_token_masks(8, (8, 2, 2), MaskConfig(masking="frame", mask_ratio=0.5),
                              torch.Generator().manual_seed(1))
    per_frame = mask.masked.flatten(2)
    assert (per_frame.all(-1) | ~per_frame.any(-1)).all()  # a frame is masked whole or not at all
    assert (per_frame.all(-1).sum(1) == 4).all()
    assert mask.masked_idx.shape == (8, 16) and mask.visible_idx.shape == (8, 16)


def test_temporal_frame_blocks_are_contiguous():
    cfg = TemporalMaskConfig(num_frames=16, mask_ratio=0.5, num_blocks=2)
    mask = sample_temporal_masks(64, cfg, torch.Generator().manual_seed(0))
    assert (mask.masked.sum(1) == 8).all()
    for row in mask.masked:
        runs = contiguous_runs(row)
        assert 1 <= len(runs) <= 2 and sum(length for _, length in runs) == 8
    assert len({tuple(r.tolist()) for r in mask.masked}) > 10


def test_context_encoder_never_reads_masked_patches():
    enc, _, _ = _models()
    frames = torch.rand(3, 8, 32, 32)
    mask = sample_token_masks(3, CFG.grid, MaskConfig(num_blocks=1), torch.Generator().manual_seed(1))
    out = enc(frames, mask.visible_idx)
    assert out.shape == (3, mask.visible_idx.shape[1], CFG.dim)
    # Rewrite every pixel of every token not in the context: the context embeddings do not move.
    patches = patchify(frames, 16).clone()
    keep = torch.zeros(3, CFG.num_tokens, dtype=torch.bool)
    keep.scatter_(1, mask.visible_idx, True)
    patches[~keep] = torch.rand_like(patches[~keep])
    corrupted = patches.view(3, 8, 2, 2, 16, 16).permute(0, 1, 2, 4, 3, 5).reshape(3, 8, 32, 32)
    assert torch.equal(patchify(corrupted, 16)[keep], patches[keep])
    assert torch.equal(out, enc(corrupted, mask.visible_idx))
    frames_vis = frames.clone()
    frames_vis[:, :, :16, :16] = 0.0  # hits the top-left token of every frame, some of them visible
    assert not torch.allclose(out, enc(frames_vis, mask.visible_idx))


def test_predictor_output_at_a_target_depends_on_that_targets_position_embedding():
    _, _, pred = _models()
    with torch.no_grad():
        pred.out.weight.normal_()  # the zero-ish init would hide small differences
    context = torch.randn(1, 4, CFG.dim)
    visible_idx = torch.tensor([[0, 1, 2, 3]])
    masked_idx = torch.tensor([[8, 20]])
    base = pred(context, visible_idx, masked_idx)
    # Change only the position embedding of token 20 (not by a constant: LayerNorm removes those):
    # the prediction there changes.
    delta = torch.randn(CFG.predictor_dim, generator=torch.Generator().manual_seed(0))
    pred.pos[20] += delta
    moved = pred(context, visible_idx, masked_idx)
    assert not torch.allclose(moved[0, 1], base[0, 1], atol=1e-3)
    pred.pos[20] -= delta
    torch.testing.assert_close(pred(context, visible_idx, masked_idx), base)
    # All mask tokens share one learned vector: only their positions tell them apart.
    same = pred(context, visible_idx, torch.tensor([[20, 20]]))
    torch.testing.assert_close(same[0, 0], same[0, 1])
    assert not torch.allclose(base[0, 0], base[0, 1], atol=1e-4)


def test_target_encoder_is_ema_and_gets_no_gradient():
    enc, target, pred = _models()
    before = [p.detach().clone() for p in target.parameters()]
    frames = torch.rand(2, 8, 32, 32)
    mask = sample_token_masks(2, CFG.grid, MaskConfig(), torch.Generator().manual_seed(2))
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


def test_loss_uses_embeddings_of_masked_tokens_only():
    mask = sample_token_masks(4, CFG.grid, MaskConfig(), torch.Generator().manual_seed(3))
    predicted = torch.randn(4, mask.masked_idx.shape[1], 16)
    target = torch.randn(4, CFG.num_tokens, 16, requires_grad=True)
    loss = latent_l1_loss(predicted, target, mask.masked_idx)
    loss.backward()
    touched = target.grad.abs().sum(-1) > 0
    expected = torch.zeros_like(touched)
    expected.scatter_(1, mask.masked_idx, True)
    assert torch.equal(touched, expected)


def test_collapse_metrics_on_constant_and_spread_batches():
    constant = torch.full((6, 5, 8), 0.7)  # every clip, every token the same vector
    metrics = collapse_metrics(constant)
    assert metrics["embedding_std"] == 0.0
    assert metrics["effective_rank"] == pytest.approx(1.0)
    # Orthogonal equal-norm rows: all singular values equal, effective rank = their number.
    assert effective_rank(torch.eye(4) * 3.0) == pytest.approx(4.0)
    assert embedding_std(torch.eye(4)) == pytest.approx(0.5)


def test_a_tubelet_token_holds_one_patch_of_consecutive_frames():
    """V-JEPA's tubelet of 2: token (t, i, j) is the (i, j) patch of frames 2t and 2t+1, frame-major."""
    frames = torch.arange(4 * 4 * 4, dtype=torch.float32).view(1, 4, 4, 4)  # T=4 frames of 4x4
    tokens = patchify(frames, 2, tubelet_size=2)
    assert tokens.shape == (1, 2 * 2 * 2, 2 * 2 * 2)
    # token 0 = (t=0, row 0, col 0): frame 0's top-left 2x2, then frame 1's
    assert tokens[0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    # token 7 = (t=1, row 1, col 1): frames 2 and 3, bottom-right patch
    assert tokens[0, 7].tolist() == [42, 43, 46, 47, 58, 59, 62, 63]
    cfg = EncoderConfig(num_frames=8, patch_size=16, tubelet_size=2, dim=16, depth=1, heads=2, predictor_dim=16,
                        predictor_depth=1)
    assert cfg.grid == (4, 2, 2) and cfg.token_pixels == 512
    with pytest.raises(ValueError, match="tubelet_size"):
        EncoderConfig(num_frames=7, tubelet_size=2)
