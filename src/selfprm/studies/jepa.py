"""Label efficiency of UI-JEPA pretraining vs. scratch vs. pixel MAE (arXiv 2409.04081).

Protocol (all figures measured in the run, nothing hard-coded), for each task
(``easy``: the slot is on the last screen; ``temporal``: the slot is a count
readable only across frames, see :mod:`selfprm.jepa.ui_streams`):

1. Generate unlabeled recordings of the task's templates, a labelled pool
   (``max(label_counts)`` per template), a test set of the same templates
   (seen intents, IIT-like) and, where the task has held-out templates, a
   test set of those (held-out intents, zero-shot, IIW-like).
2. For each seed: pretrain one encoder with JEPA and one with MAE on the
   unlabeled clips (same steps, batch, tube masks, encoder and
   initialisation), logging the collapse checks (embedding std, effective
   rank) and keeping encoder snapshots at a few steps.
3. For each seed and k labelled recordings per intent (k in 1, 5, 10, 50):
   * ``jepa`` / ``mae``: frozen encoder, attentive probe (intent + slot heads)
     and tiny text decoder trained on the k-per-intent token embeddings;
   * ``scratch``: the same encoder + attentive probe trained end to end on the
     k-per-intent clips only, then the text decoder on its (frozen) tokens;
   * reference ``random_frozen``: the untrained encoder, frozen, same probe.
4. Report mean ± sd over seeds of intent/slot accuracy on the seen-intent test
   set, text exact match / token F1, and held-out-intent slot accuracy / token
   F1; plus, per seed, probe accuracy at ``curve_labels`` labels per intent
   against pretraining steps (the ``curve``), beside the collapse checks.

Each seed draws its own pretraining initialisation, masks, labelled subsets and
probe initialisation; the recordings are fixed by ``seed``.  The whole
comparison is one stage of the run directory (:mod:`selfprm.rundir`): a rerun
with the same config reads the metrics back instead of pretraining again.
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
    text_metrics,
    train_probe,
    train_text_decoder,
)
from selfprm.jepa.masking import MaskConfig
from selfprm.jepa.model import EncoderConfig, VideoEncoder, seeded_init
from selfprm.jepa.pretrain import PretrainConfig, PretrainResult, frames_to_float, pretrain_jepa, pretrain_mae
from selfprm.jepa.supervised import SupervisedConfig, train_from_scratch
from selfprm.jepa.ui_streams import TASKS, IntentTemplate, RecordingSet, UIStreamConfig, generate_recordings, stack
from selfprm.rundir import RunDir, config_blob

METHODS = ("jepa", "scratch", "mae")


@dataclass
class JepaConfig:
    """UI-JEPA against scratch and MAE at several labels per intent, on an easy and a temporal task.

    Parameters:
        seed: seeds the recordings (the data are the same for every entry of ``seeds``).
        seeds: one pretraining / label draw / probe initialisation per seed; mean ± sd over them.
        tasks: names in ``ui_streams.TASKS``: "easy" (slot on the last screen), "temporal"
            (slot is a count across frames).
        label_counts: labelled recordings per intent.
        curve_labels: labels per intent of the probe drawn against pretraining steps
            (at ``pretrain.checkpoints`` snapshots).
        unlabeled_per_template: unlabeled recordings per template (pretraining data).
        test_per_template: test recordings per template (seen intents, IIT-like).
        zero_shot_per_template: test recordings per held-out template (IIW-like), where the task has any.
        streams: the synthetic UI recordings.
        encoder: the video encoder over patch tokens (shared by JEPA, MAE and scratch).
        pretrain: JEPA / MAE pretraining (masks: ``pretrain.mask.masking`` "tube" or "frame").
        probe: the attentive intent and slot probe on frozen tokens.
        decoder: the tiny text decoder.
        supervised: the from-scratch baseline's training.
    """

    seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    tasks: tuple[str, ...] = ("easy", "temporal")
    label_counts: tuple[int, ...] = (1, 5, 10, 50)
    curve_labels: int = 10
    # Unlabeled recordings are free: 1000 per template (7000 clips on easy) at 600 steps of 32 is
    # ~3 passes over easy's clips; the 45-minute budget for 2 tasks x 3 seeds on 2 cores sets the steps
    unlabeled_per_template: int = 1000
    test_per_template: int = 30
    zero_shot_per_template: int = 30
    streams: UIStreamConfig = field(default_factory=UIStreamConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(steps=600))
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    decoder: TextDecoderConfig = field(default_factory=TextDecoderConfig)
    supervised: SupervisedConfig = field(default_factory=lambda: SupervisedConfig(batch_size=16))


def _quick() -> "JepaConfig":
    """Same protocol, small budget: one seed, 16x16-pixel patches (4 tokens per frame)."""
    return JepaConfig(
        seeds=(0,),
        label_counts=(1, 5, 10),
        curve_labels=5,
        unlabeled_per_template=60,
        test_per_template=10,
        zero_shot_per_template=10,
        encoder=EncoderConfig(patch_size=16, dim=64, depth=2, heads=4, predictor_dim=32, predictor_depth=1),
        pretrain=PretrainConfig(steps=150, batch_size=16, warmup_steps=15, log_every=10, checkpoints=3),
        probe=ProbeConfig(steps=100, hidden=64),
        decoder=TextDecoderConfig(steps=80, hidden=64, embed=16),
        supervised=SupervisedConfig(steps=60, batch_size=16),
    )


def _tiny() -> "JepaConfig":
    """Smoke-test size: every stage runs, numbers are meaningless."""
    return JepaConfig(
        seeds=(0,),
        label_counts=(1, 2),
        curve_labels=1,
        unlabeled_per_template=4,
        test_per_template=2,
        zero_shot_per_template=2,
        streams=UIStreamConfig(num_frames=8),
        encoder=EncoderConfig(num_frames=8, patch_size=16, dim=32, depth=1, heads=2, predictor_dim=32,
                              predictor_depth=1),
        pretrain=PretrainConfig(steps=4, batch_size=4, warmup_steps=1, log_every=2, checkpoints=2,
                                mask=MaskConfig(num_blocks=1)),
        probe=ProbeConfig(steps=5, hidden=16, heads=2),
        decoder=TextDecoderConfig(steps=5, hidden=16, embed=8, heads=2),
        supervised=SupervisedConfig(steps=3, batch_size=4),
    )


Config = JepaConfig
PRESETS = {"full": JepaConfig, "quick": _quick, "tiny": _tiny}
DEFAULT_OUT = "runs/jepa"


@dataclass
class StudyData:
    templates: tuple[IntentTemplate, ...]
    unlabeled: torch.Tensor  # uint8 [N, T, H, W]
    labelled: RecordingSet  # max(label_counts) per template
    test: RecordingSet  # seen intents (IIT-like)
    zero_shot: RecordingSet | None  # held-out intents (IIW-like); None where the task has none


def build_data(cfg: JepaConfig, task: str = "easy") -> StudyData:
    templates, held_out = TASKS[task]
    # Independent streams per split (and task) so that changing one split's size leaves the others intact.
    seeds = np.random.SeedSequence([cfg.seed, sorted(TASKS).index(task)]).spawn(4)
    make = lambda templates, n, s: stack(  # noqa: E731
        generate_recordings(templates, n, np.random.default_rng(s), cfg.streams)
    )
    unlabeled = make(templates, cfg.unlabeled_per_template, seeds[0])
    return StudyData(
        templates,
        torch.from_numpy(unlabeled.frames),
        make(templates, max(cfg.label_counts), seeds[1]),
        make(templates, cfg.test_per_template, seeds[2]),
        make(held_out, cfg.zero_shot_per_template, seeds[3]) if held_out else None,
    )


def label_subset(intents, per_intent: int, rng: np.random.Generator, templates=None) -> np.ndarray:
    """Indices of ``per_intent`` randomly chosen recordings of each template."""
    names = [t.name for t in templates] if templates else sorted({i.template for i in intents})
    chosen = []
    for name in names:
        idx = np.array([i for i, intent in enumerate(intents) if intent.template == name])
        chosen.append(rng.permutation(idx)[:per_intent])
    return np.sort(np.concatenate(chosen))


@torch.no_grad()
def embed_clips(encoder: VideoEncoder, frames: np.ndarray | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Frozen token embeddings [N, L, d] of uint8 clips [N, T, H, W]."""
    encoder.eval()
    frames = torch.as_tensor(frames)
    return torch.cat([encoder(frames_to_float(frames[i : i + batch_size])) for i in range(0, len(frames), batch_size)])


def _score(heads, decoder, feats_test, feats_zs, data: StudyData) -> dict:
    result = evaluate_heads(heads, feats_test, data.test.intents)
    if decoder is not None:
        result.update(text_metrics(decoder.generate(feats_test), data.test.intents))
    if feats_zs is not None and data.zero_shot is not None:
        zs = evaluate_heads(heads, feats_zs, data.zero_shot.intents)
        if decoder is not None:
            zs.update(text_metrics(decoder.generate(feats_zs), data.zero_shot.intents))
        result["zero_shot"] = zs
    return result


def mean_sd(runs: list[dict]) -> dict:
    """Per key, the mean over runs (seeds) and ``<key>_sd``, the sample std (0 for a single run)."""
    out: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = mean_sd([r[key] for r in runs])
        else:
            values = [r[key] for r in runs]
            out[key] = float(np.mean(values))
            out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def _subsets(cfg: JepaConfig, data: StudyData, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, seed, 1])
    return {k: label_subset(data.labelled.intents, k, rng, data.templates) for k in cfg.label_counts}


def _gen(seed: int, k: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 7919 + 101 * k + 1)


def _frozen_method(encoder: VideoEncoder, data: StudyData, cfg: JepaConfig, seed: int, subsets: dict, bar) -> dict:
    feats_lab = embed_clips(encoder, data.labelled.frames)
    feats_test = embed_clips(encoder, data.test.frames)
    feats_zs = embed_clips(encoder, data.zero_shot.frames) if data.zero_shot is not None else None
    per_k = {}
    for k, idx in subsets.items():
        intents = [data.labelled.intents[i] for i in idx]
        gen = _gen(seed, k)
        heads = train_probe(feats_lab[idx], intents, cfg.probe, gen, seed=seed)
        decoder = train_text_decoder(feats_lab[idx], intents, cfg.decoder, gen, seed=seed)
        per_k[str(k)] = _score(heads, decoder, feats_test, feats_zs, data)
        bar.update(1)
    return per_k


def _scratch_method(data: StudyData, cfg: JepaConfig, seed: int, subsets: dict, bar) -> dict:
    frames_lab = torch.from_numpy(data.labelled.frames)
    per_k = {}
    for k, idx in subsets.items():
        intents = [data.labelled.intents[i] for i in idx]
        gen = _gen(seed, k)
        encoder, heads = train_from_scratch(frames_lab[idx], intents, cfg.encoder, cfg.probe, cfg.supervised, gen,
                                            seed=seed)
        decoder = train_text_decoder(embed_clips(encoder, frames_lab[idx]), intents, cfg.decoder, gen, seed=seed)
        zs = embed_clips(encoder, data.zero_shot.frames) if data.zero_shot is not None else None
        per_k[str(k)] = _score(heads, decoder, embed_clips(encoder, data.test.frames), zs, data)
        bar.update(1)
    return per_k


def _curve(result: PretrainResult, data: StudyData, cfg: JepaConfig, seed: int) -> list[dict]:
    """Probe accuracy (``curve_labels`` per intent, no text decoder) at each pretraining snapshot."""
    k = min(cfg.curve_labels, max(cfg.label_counts))
    idx = label_subset(data.labelled.intents, k, np.random.default_rng([cfg.seed, seed, 2]), data.templates)
    intents = [data.labelled.intents[i] for i in idx]
    points = []
    for step, state in sorted(result.checkpoints.items()):
        with seeded_init(seed):
            encoder = VideoEncoder(cfg.encoder)
        encoder.load_state_dict(state)
        heads = train_probe(embed_clips(encoder, data.labelled.frames[idx]), intents, cfg.probe, _gen(seed, k), seed=seed)
        scores = evaluate_heads(heads, embed_clips(encoder, data.test.frames), data.test.intents)
        points.append({"step": step, "labels_per_intent": k, **scores})
    return points


def _seed_run(cfg: JepaConfig, data: StudyData, seed: int, progress: bool, bar) -> dict:
    """One seed of one task: both pretrainings, their probes and curves, scratch and the random encoder."""
    subsets = _subsets(cfg, data, seed)
    out: dict = {"runs": {}, "pretraining": {}, "curve": {}, "seconds": {}}
    for name, pretrain in (("jepa", pretrain_jepa), ("mae", pretrain_mae)):
        result = pretrain(data.unlabeled, cfg.encoder, cfg.pretrain, seed, progress)
        t = time.perf_counter()
        out["runs"][name] = _frozen_method(result.encoder, data, cfg, seed, subsets, bar)
        out["curve"][name] = _curve(result, data, cfg, seed)
        out["seconds"][name] = result.seconds + time.perf_counter() - t
        out["pretraining"][name] = {
            "seed": seed, "steps": result.steps, "batch_size": result.batch_size,
            "frames_per_step": result.batch_size * cfg.encoder.num_frames,
            "seconds": result.seconds, "history": result.history,
        }
    t = time.perf_counter()
    out["runs"]["scratch"] = _scratch_method(data, cfg, seed, subsets, bar)
    out["seconds"]["scratch"] = time.perf_counter() - t
    with seeded_init(seed):
        random_encoder = VideoEncoder(cfg.encoder)  # the initialisation both pretrainings start from
    out["runs"]["random_frozen"] = _frozen_method(random_encoder, data, cfg, seed, subsets, bar)
    return out


def _task(cfg: JepaConfig, task: str, progress: bool, timings: dict, run_dir: RunDir | None = None) -> dict:
    """Every seed of ``task``; with ``run_dir`` each seed is a stage of its own, so an interrupted run
    resumes at the first unfinished seed and a finished one is read back, never recomputed."""
    t0 = time.perf_counter()
    data = build_data(cfg, task)
    timings[f"{task}/data"] = time.perf_counter() - t0
    per_seed: list[dict] = []
    n_fits = len(cfg.label_counts) * len(cfg.seeds)
    with tqdm(total=4 * n_fits, desc=f"{task}: intent probes", disable=not progress, leave=False) as bar:
        for seed in cfg.seeds:
            if run_dir is None:
                per_seed.append(_seed_run(cfg, data, seed, progress, bar))
                continue
            # keyed by everything but the seed and task lists, so adding a seed or task keeps the finished ones
            key = {k: v for k, v in config_blob(cfg).items() if k not in ("seeds", "tasks")}
            stage = run_dir.stage(f"{task}/seed-{seed}", {"config": key, "seed": seed})
            if not stage.done():
                stage.begin()
                stage.finish(_seed_run(cfg, data, seed, progress, bar))
            else:
                bar.update(4 * len(cfg.label_counts))
            per_seed.append(stage.result())
    for r in per_seed:
        for name, sec in r["seconds"].items():
            timings[f"{task}/{name}"] = timings.get(f"{task}/{name}", 0.0) + sec
    runs = {name: [r["runs"][name] for r in per_seed] for name in (*METHODS, "random_frozen")}
    aggregate = {name: {k: mean_sd([r[k] for r in seeds]) for k in seeds[0]} for name, seeds in runs.items()}
    return {
        "methods": {name: aggregate[name] for name in METHODS},
        "reference": {"random_frozen": aggregate["random_frozen"]},
        "pretraining": {name: [r["pretraining"][name] for r in per_seed] for name in ("jepa", "mae")},
        "curve": {name: [r["curve"][name] for r in per_seed] for name in ("jepa", "mae")},
        "data": {
            "unlabeled": len(data.unlabeled),
            "labelled_pool": len(data.labelled),
            "test": len(data.test),
            "zero_shot": len(data.zero_shot) if data.zero_shot is not None else 0,
            "templates": [t.text for t in data.templates],
            "zero_shot_templates": [t.text for t in TASKS[task][1]],
        },
    }


def run(cfg: JepaConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the comparison into ``out`` (metrics, report, plot); returns the metrics."""
    from selfprm.jepa.report import write_report

    run_dir = RunDir(out)
    stage = run_dir.stage("comparison", cfg)
    if not stage.done():
        stage.begin()
        stage.finish(compare(cfg, progress, run_dir=run_dir))
    metrics = stage.result()
    print(write_report(metrics, Path(out)))
    return metrics


def compare(cfg: JepaConfig, progress: bool = True, run_dir: RunDir | None = None) -> dict:
    """Run the comparison; returns the metrics dict written to ``jepa_metrics.json``.

    ``metrics["tasks"][task]`` holds ``methods`` (method -> labels per intent -> mean and ``*_sd``
    over seeds), ``reference``, ``pretraining`` (per method, per seed: the loss and collapse
    history) and ``curve`` (per method, per seed: probe accuracy against pretraining steps).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks = {task: _task(cfg, task, progress, timings, run_dir) for task in cfg.tasks}
    timings["total"] = time.perf_counter() - t0
    return {"tasks": tasks, "seeds": list(cfg.seeds), "seconds": timings, "config": config_blob(cfg)}
