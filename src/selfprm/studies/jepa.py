"""Label efficiency of UI-JEPA pretraining vs. scratch vs. pixel MAE (arXiv 2409.04081).

Protocol (all figures measured in the run, nothing hard-coded):

1. Generate unlabeled recordings of the seen intent templates, a labelled pool
   (``max(label_counts)`` per template), a test set of the seen templates
   (IIT-like) and a test set of held-out templates (zero-shot, IIW-like).
2. Pretrain one encoder with JEPA and one with MAE on the unlabeled clips
   (same steps, batch, masks, encoder and initialisation).
3. For k labelled recordings per intent (k in 1, 5, 10, 50) and a few random
   draws of which recordings are labelled:
   * ``jepa`` / ``mae``: frozen encoder, probe heads + text decoder trained on
     the k-per-intent embeddings;
   * ``scratch``: the same encoder + heads trained end to end on the k-per-intent
     clips only, then the text decoder on its (frozen) embeddings;
   * reference ``random_frozen``: the untrained encoder, frozen, same probe.
4. Report intent/slot accuracy on the test set, text exact match / token F1,
   and zero-shot slot accuracy / token F1 on the held-out templates.

The whole comparison is one stage of the run directory (:mod:`selfprm.rundir`): a rerun with the
same config reads the metrics back instead of pretraining again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from selfprm.jepa.intent import (
    ProbeConfig,
    TextDecoderConfig,
    evaluate_heads,
    pool_embeddings,
    text_metrics,
    train_probe,
    train_text_decoder,
)
from selfprm.jepa.masking import TemporalMaskConfig
from selfprm.jepa.model import EncoderConfig, VideoEncoder, seeded_init
from selfprm.jepa.pretrain import PretrainConfig, frames_to_float, pretrain_jepa, pretrain_mae
from selfprm.jepa.supervised import SupervisedConfig, train_from_scratch
from selfprm.rundir import RunDir, config_blob
from selfprm.jepa.ui_streams import (
    SEEN_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    Intent,
    RecordingSet,
    UIStreamConfig,
    generate_recordings,
    stack,
)

METHODS = ("jepa", "scratch", "mae")


@dataclass
class JepaConfig:
    """UI-JEPA against scratch and MAE at several labels per intent.

    Parameters:
        seed: seeds the recordings, the initialisations and the label draws.
        label_counts: labelled recordings per intent.
        label_draws: random draws of which recordings are labelled, per count.
        unlabeled_per_template: unlabeled recordings per seen intent template (pretraining data).
        test_per_template: test recordings per seen template (IIT-like).
        zero_shot_per_template: test recordings per held-out template (IIW-like).
        streams: the synthetic UI recordings.
        encoder: the video encoder (shared by JEPA, MAE and scratch).
        pretrain: JEPA / MAE pretraining.
        probe: the intent and slot probe on frozen embeddings.
        decoder: the small text decoder.
        supervised: the from-scratch baseline's training.
    """

    seed: int = 0
    label_counts: tuple[int, ...] = (1, 5, 10, 50)
    label_draws: int = 2
    unlabeled_per_template: int = 400
    test_per_template: int = 30
    zero_shot_per_template: int = 30
    streams: UIStreamConfig = field(default_factory=UIStreamConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(steps=1500))
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    decoder: TextDecoderConfig = field(default_factory=TextDecoderConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)


def _quick() -> "JepaConfig":
    """Same protocol, smaller budget: about three minutes on two (busy) cores."""
    return JepaConfig(
        label_draws=1,
        unlabeled_per_template=150,
        test_per_template=20,
        zero_shot_per_template=20,
        pretrain=PretrainConfig(steps=400),
        probe=ProbeConfig(steps=200),
        decoder=TextDecoderConfig(steps=150),
        supervised=SupervisedConfig(steps=150),
    )


def _tiny() -> "JepaConfig":
    """Smoke-test size: every stage runs, numbers are meaningless."""
    return JepaConfig(
        label_counts=(1, 2),
        label_draws=1,
        unlabeled_per_template=4,
        test_per_template=2,
        zero_shot_per_template=2,
        streams=UIStreamConfig(num_frames=8),
        encoder=EncoderConfig(num_frames=8, dim=32, depth=1, heads=2, predictor_dim=32, predictor_depth=1),
        pretrain=PretrainConfig(steps=4, batch_size=4, warmup_steps=1, log_every=2,
                                mask=TemporalMaskConfig(num_frames=8)),
        probe=ProbeConfig(steps=5, hidden=16),
        decoder=TextDecoderConfig(steps=5, hidden=16, embed=8),
        supervised=SupervisedConfig(steps=3, batch_size=4),
    )


Config = JepaConfig
PRESETS = {"full": JepaConfig, "quick": _quick, "tiny": _tiny}
DEFAULT_OUT = "runs/jepa"


@dataclass
class StudyData:
    unlabeled: torch.Tensor  # uint8 [N, T, H, W]
    labelled: RecordingSet  # max(label_counts) per seen template
    test: RecordingSet  # seen templates (IIT-like)
    zero_shot: RecordingSet  # held-out templates (IIW-like)


def build_data(cfg: JepaConfig) -> StudyData:
    # Independent streams per split so that changing one split's size leaves the others intact.
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    make = lambda templates, n, s: stack(  # noqa: E731
        generate_recordings(templates, n, np.random.default_rng(s), cfg.streams)
    )
    unlabeled = make(SEEN_TEMPLATES, cfg.unlabeled_per_template, seeds[0])
    return StudyData(
        torch.from_numpy(unlabeled.frames),
        make(SEEN_TEMPLATES, max(cfg.label_counts), seeds[1]),
        make(SEEN_TEMPLATES, cfg.test_per_template, seeds[2]),
        make(ZERO_SHOT_TEMPLATES, cfg.zero_shot_per_template, seeds[3]),
    )


def label_subset(intents: list[Intent], per_intent: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_intent`` randomly chosen recordings of each template."""
    chosen = []
    for t in SEEN_TEMPLATES:
        idx = np.array([i for i, intent in enumerate(intents) if intent.template == t.name])
        chosen.append(rng.permutation(idx)[:per_intent])
    return np.sort(np.concatenate(chosen))


@torch.no_grad()
def embed_clips(encoder: VideoEncoder, frames: np.ndarray | torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Pooled frozen embeddings [N, 2d] of uint8 clips [N, T, H, W]."""
    encoder.eval()
    frames = torch.as_tensor(frames)
    out = [pool_embeddings(encoder(frames_to_float(frames[i : i + batch_size]))) for i in range(0, len(frames), batch_size)]
    return torch.cat(out)


def _score(heads, decoder, feats_test, feats_zs, data: StudyData) -> dict:
    result = evaluate_heads(heads, feats_test, data.test.intents)
    result.update(text_metrics(decoder.generate(feats_test), data.test.intents))
    zs = evaluate_heads(heads, feats_zs, data.zero_shot.intents)
    zs.update(text_metrics(decoder.generate(feats_zs), data.zero_shot.intents))
    result["zero_shot"] = zs
    return result


def _mean_over_draws(runs: list[dict]) -> dict:
    out: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = _mean_over_draws([r[key] for r in runs])
        else:
            values = [r[key] for r in runs]
            out[key] = float(np.mean(values))
            if key in ("intent_accuracy", "slot_accuracy"):
                out[f"{key}_std"] = float(np.std(values))
    return out


def _over_label_draws(cfg: JepaConfig, subsets: dict, data: StudyData, bar, fit) -> dict:
    """``fit(idx, intents, gen, draw) -> scores`` on every labelled subset, averaged over draws per count."""
    per_k = {}
    for k in cfg.label_counts:
        runs = []
        for draw, idx in enumerate(subsets[k]):
            gen = torch.Generator().manual_seed(cfg.seed * 7919 + 101 * k + draw)
            runs.append(fit(idx, [data.labelled.intents[i] for i in idx], gen, draw))
            bar.update(1)
        per_k[str(k)] = _mean_over_draws(runs)
    return per_k


def _frozen_method(encoder: VideoEncoder, data: StudyData, cfg: JepaConfig, subsets: dict, bar) -> dict:
    feats_lab = embed_clips(encoder, data.labelled.frames)
    feats_test = embed_clips(encoder, data.test.frames)
    feats_zs = embed_clips(encoder, data.zero_shot.frames)

    def fit(idx, intents, gen, draw):
        heads = train_probe(feats_lab[idx], intents, cfg.probe, gen, seed=cfg.seed + draw)
        decoder = train_text_decoder(feats_lab[idx], intents, cfg.decoder, gen, seed=cfg.seed + draw)
        return _score(heads, decoder, feats_test, feats_zs, data)

    return _over_label_draws(cfg, subsets, data, bar, fit)


def _scratch_method(data: StudyData, cfg: JepaConfig, subsets: dict, bar) -> dict:
    frames_lab = torch.from_numpy(data.labelled.frames)

    def fit(idx, intents, gen, draw):
        encoder, heads = train_from_scratch(frames_lab[idx], intents, cfg.encoder, cfg.probe, cfg.supervised, gen,
                                            seed=cfg.seed)
        decoder = train_text_decoder(embed_clips(encoder, frames_lab[idx]), intents, cfg.decoder, gen,
                                     seed=cfg.seed + draw)
        return _score(heads, decoder, embed_clips(encoder, data.test.frames), embed_clips(encoder, data.zero_shot.frames),
                      data)

    return _over_label_draws(cfg, subsets, data, bar, fit)


def run(cfg: JepaConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the comparison into ``out`` (metrics, report, plot); returns the metrics."""
    from selfprm.jepa.report import write_report

    stage = RunDir(out).stage("comparison", cfg)
    if not stage.done():
        stage.begin()
        stage.finish(compare(cfg, progress))
    metrics = stage.result()
    print(write_report(metrics, Path(out)))
    return metrics


def compare(cfg: JepaConfig, progress: bool = True) -> dict:
    """Run the comparison; returns the metrics dict written to ``jepa_metrics.json``."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = build_data(cfg)
    timings["data"] = time.perf_counter() - t0
    draw_rng = np.random.default_rng(cfg.seed + 1)
    subsets = {k: [label_subset(data.labelled.intents, k, draw_rng) for _ in range(cfg.label_draws)] for k in cfg.label_counts}

    jepa = pretrain_jepa(data.unlabeled, cfg.encoder, cfg.pretrain, cfg.seed, progress)
    mae = pretrain_mae(data.unlabeled, cfg.encoder, cfg.pretrain, cfg.seed, progress)
    with seeded_init(cfg.seed):
        random_encoder = VideoEncoder(cfg.encoder)  # the same initialisation both pretrainings start from

    methods: dict[str, dict] = {}
    reference: dict[str, dict] = {}
    n_fits = len(cfg.label_counts) * cfg.label_draws
    with tqdm(total=4 * n_fits, desc="intent probes", disable=not progress, leave=False) as bar:
        for name, encoder, pre_seconds in (("jepa", jepa.encoder, jepa.seconds), ("mae", mae.encoder, mae.seconds)):
            t = time.perf_counter()
            methods[name] = _frozen_method(encoder, data, cfg, subsets, bar)
            timings[name] = pre_seconds + time.perf_counter() - t
        t = time.perf_counter()
        methods["scratch"] = _scratch_method(data, cfg, subsets, bar)
        timings["scratch"] = time.perf_counter() - t
        reference["random_frozen"] = _frozen_method(random_encoder, data, cfg, subsets, bar)
    timings["total"] = time.perf_counter() - t0

    return {
        "methods": {name: methods[name] for name in METHODS},
        "reference": reference,
        "pretraining": {
            name: {
                "steps": r.steps,
                "batch_size": r.batch_size,
                "frames_per_step": r.batch_size * cfg.encoder.num_frames,
                "seconds": r.seconds,
                "history": r.history,
            }
            for name, r in (("jepa", jepa), ("mae", mae))
        },
        "seconds": timings,
        "data": {
            "unlabeled": len(data.unlabeled),
            "labelled_pool": len(data.labelled),
            "test": len(data.test),
            "zero_shot": len(data.zero_shot),
            "seen_templates": [t.text for t in SEEN_TEMPLATES],
            "zero_shot_templates": [t.text for t in ZERO_SHOT_TEMPLATES],
        },
        "config": config_blob(cfg),
    }
