"""``selfprm demo``: the whole pipeline on ``arith``, one table row per label source.

domain -> tiny policy (SFT from scratch) -> sampled pool -> step labels from each source ->
a PRM per source (initialised from the policy's weights) -> step AUROC, first-error F1 and
best-of-8 on held-out problems, against the exact oracle.

Every stage writes its result under ``--out`` atomically and is skipped on a rerun with the same
configuration, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.eval.metrics import best_of_n, first_error_f1, solution_scores, step_auroc, tune_threshold
from selfprm.labels import get_label_source
from selfprm.labels.sharded import run_label_source_sharded
from selfprm.policies.base import reseed, sample_flat
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig, load_or_train_policy_model
from selfprm.prm.model import PRMConfig, ProcessRewardModel
from selfprm.prm.train import PRMTrainConfig, TrainHistory, train_prm
from selfprm.types import (
    StepLabels,
    Trajectory,
    atomic_write_text,
    read_trajectories,
    to_strict_json,
    write_trajectories,
)


@dataclass
class DemoConfig:
    seed: int = 0
    domain: ArithConfig = field(default_factory=ArithConfig)
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=600))
    n_sft_problems: int = 20000
    temperature: float = 0.7
    max_new_tokens: int = 96
    n_train_problems: int = 250
    samples_per_train_problem: int = 4
    n_dev_problems: int = 100
    samples_per_dev_problem: int = 4
    n_test_problems: int = 150
    bon_n: int = 8
    mc_rollouts: int = 4
    sources: tuple[str, ...] = ("oracle", "outcome", "spr", "mc", "omega", "mcts", "tree", "implicit", "consensus")
    # keyword arguments of each label source beyond the defaults (``mc``'s rollouts come from mc_rollouts)
    source_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "omega": {"n_rollouts": 4},
        "mcts": {"n_simulations": 4},
        "tree": {"m_trees": 4, "l_rounds": 2},
        "implicit": {"train_steps": 60},
        # agreement of hard MC and the binary search on the first error (Qwen's consensus filter)
        "consensus": {"primary_kwargs": {"n_rollouts": 4, "soft": False}, "second_kwargs": {"n_rollouts": 4}},
    })
    # the head's fast learning rate lets it pick up the three surprise features within ~100 steps
    prm: PRMTrainConfig = field(default_factory=lambda: PRMTrainConfig(epochs=3, batch_size=32, head_lr=5e-2))
    # PRM head also reads the policy-initialised backbone's token log-probs (prm/model.py)
    surprise_features: bool = True
    spr_warmup_steps: int = 0
    aggregation: str = "min"
    label_shard_size: int = 128

    @classmethod
    def quick(cls, seed: int = 0) -> "DemoConfig":
        # The policy needs ~400 SFT steps to learn the mod-10 tables (below that its steps are
        # nearly all wrong), so quick saves on everything else: fewer problems and rollouts.
        return cls(
            seed=seed,
            sft=SFTConfig(steps=400),
            n_sft_problems=8000,
            n_train_problems=60,
            n_dev_problems=40,
            n_test_problems=50,
            sources=("oracle", "outcome", "spr", "mc"),
            mc_rollouts=4,
            prm=PRMTrainConfig(epochs=3, batch_size=32, head_lr=5e-2),
        )


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Stages:
    """Stage results on disk, keyed by a hash of what produced them."""

    def __init__(self, out: Path):
        self.out = out
        self.index_path = out / "stages.json"
        self.index = json.loads(self.index_path.read_text()) if self.index_path.exists() else {}

    def done(self, name: str, key: str) -> bool:
        return self.index.get(name) == key

    def mark(self, name: str, key: str) -> None:
        self.index[name] = key
        atomic_write_text(self.index_path, json.dumps(self.index, indent=2))


def _log(msg: str) -> None:
    # stage lines always print; ``progress`` governs the bars only
    print(msg, flush=True)


def _policy_stats(trajs: list[Trajectory]) -> dict[str, float]:
    n = max(1, len(trajs))
    steps = [v for t in trajs for v in t.oracle_labels]
    recovered = sum(
        1 for t in trajs if t.outcome and not all(t.oracle_labels) and t.oracle_labels[-1]
        and any(s.startswith("redo:") for s in t.steps)
    )
    return {
        "error_rate": sum(not t.outcome for t in trajs) / n,
        "step_error_rate": sum(not v for v in steps) / max(1, len(steps)),
        "flawed_solution_rate": sum(not all(t.oracle_labels) for t in trajs) / n,
        "lucky_or_recovered_rate": sum(bool(t.outcome) and not all(t.oracle_labels) for t in trajs) / n,
        "recovered_rate": recovered / n,
        "truncated_rate": sum(t.truncated for t in trajs) / n,
        "steps_per_solution": len(steps) / n,
        "tokens_per_solution": sum(t.tokens_generated for t in trajs) / n,
    }


def run_demo(config: DemoConfig, out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out)
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)  # only model inits below draw from it; every sampler has its own seed
    domain = ArithDomain(config.domain)

    # 1. policy ------------------------------------------------------------------------------
    stage_seconds: dict[str, float] = {}
    t_stage = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t_stage
        now = time.perf_counter()
        stage_seconds[name] = now - t_stage
        t_stage = now
        _log(f"      ({name}: {stage_seconds[name]:.1f} s)")

    _log("[1/5] policy: tiny causal LM trained from scratch by SFT on worked solutions")
    sft = replace(config.sft, seed=config.seed)
    model, tok, sft_losses = load_or_train_policy_model(
        domain, out / "policy", config.n_sft_problems, config.lm, sft, progress=progress
    )
    policy = HFPolicy(model, tok, domain, HFPolicyConfig(
        temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed, progress=progress))

    lap("policy")

    # 2. pool ----------------------------------------------------------------------------------
    _log("[2/5] sampling the trajectory pool (train / dev / test)")
    pool_key = _hash([asdict(config.domain), asdict(config.lm), asdict(sft), config.n_sft_problems, config.temperature,
                      config.max_new_tokens, config.n_train_problems, config.samples_per_train_problem,
                      config.n_dev_problems, config.samples_per_dev_problem, config.n_test_problems, config.bon_n,
                      config.seed])
    pool_dir = out / "pool"
    splits = {
        "train": (config.n_train_problems, config.samples_per_train_problem, 1),
        "dev": (config.n_dev_problems, config.samples_per_dev_problem, 2),
        "test": (config.n_test_problems, config.bon_n, 3),
    }
    pool: dict[str, list[Trajectory]] = {}
    for split, (n_prob, n_samp, offset) in splits.items():
        path = pool_dir / f"{split}.jsonl"
        if stages.done(f"pool/{split}", pool_key) and path.exists():
            pool[split] = [t for t, _ in read_trajectories(path)]
            continue
        problems = domain.sample_problems(n_prob, seed=config.seed * 100 + offset, prefix=split)
        reseed(policy, config.seed * 100 + offset)  # each split's samples are repeatable on their own
        pool[split] = sample_flat(policy, problems, n_samp)
        write_trajectories(path, pool[split])
        stages.mark(f"pool/{split}", pool_key)
    stats = _policy_stats(pool["test"])
    stats.update(temperature=config.temperature, sft_final_loss=float(np.mean(sft_losses[-20:])) if sft_losses else math.nan)
    _log(f"      policy errs on {stats['error_rate']:.1%} of test solutions at T={config.temperature} "
                   f"({stats['step_error_rate']:.1%} of steps)")

    lap("pool")

    # 3. labels --------------------------------------------------------------------------------
    _log("[3/5] step labels from each source")
    label_results: dict[str, dict[str, Any]] = {}
    train = pool["train"]
    labels_by_source: dict[str, list[StepLabels | None]] = {}
    label_keys: dict[str, str] = {}
    for name in config.sources:
        kwargs = dict(config.source_kwargs.get(name, {}))
        if name == "mc":
            kwargs.setdefault("n_rollouts", config.mc_rollouts)
        src = get_label_source(name, **kwargs)
        if hasattr(src, "progress"):
            src.progress = progress
        label_keys[name] = _hash([pool_key, name, kwargs])
        # sharded: an interrupted labeling job resumes from its finished shards
        res = run_label_source_sharded(src, train, policy, out / "labels" / f"{name}.shards",
                                       shard_size=config.label_shard_size, key=label_keys[name],
                                       seed=config.seed)
        labs = res.labels
        kept = [(t, l) for t, l in zip(train, labs) if l is not None]
        # the export holds only labelled trajectories, so it stays valid stepwise supervision
        write_trajectories(out / "labels" / f"{name}.jsonl", [t for t, _ in kept], [l for _, l in kept])
        meta = {"seconds": res.seconds, "policy_tokens": res.policy_tokens, "rollouts": res.rollouts,
                "labeled_steps": res.labeled_steps, "dropped": sum(l is None for l in labs), "prm_loss": res.prm_loss}
        labels_by_source[name] = labs
        label_results[name] = meta
        flat = [(v, o) for l, t in zip(labs, train) if l is not None for v, o in zip(l.values, t.oracle_labels)]
        agree = sum((v >= 0.5) == o for v, o in flat) / max(1, len(flat))
        meta["label_accuracy_vs_oracle"] = agree
        _log(f"      {name:8s} {meta['labeled_steps']} steps, {meta['policy_tokens']} policy tokens, "
                       f"{agree:.1%} agree with the oracle")

    lap("labels")

    # 4. PRMs ----------------------------------------------------------------------------------
    _log("[4/5] a PRM per source (backbone initialised from the policy)")
    prms: dict[str, ProcessRewardModel] = {}
    histories: dict[str, dict[str, Any]] = {}
    for name in config.sources:
        loss = label_results[name]["prm_loss"]
        tcfg = replace(config.prm, loss=loss, seed=config.seed,
                       spr_warmup_steps=config.spr_warmup_steps if loss == "spr" else 0)
        pcfg = PRMConfig(step_separator=domain.step_separator, surprise_features=config.surprise_features)
        key = _hash([label_keys[name], asdict(tcfg), asdict(pcfg)])
        pdir = out / "prm" / name
        if stages.done(f"prm/{name}", key) and (pdir / "prm_config.json").exists():
            prms[name] = ProcessRewardModel.from_pretrained(pdir)
            histories[name] = json.loads((pdir / "history.json").read_text())
            continue
        backbone = _policy_backbone(out / "policy")
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            prm = ProcessRewardModel(backbone, tok, pcfg)
        hist = train_prm(prm, list(zip(train, labels_by_source[name])), tcfg, progress=progress, desc=name)
        tmp = pdir.with_name(pdir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        prm.save_pretrained(tmp)
        (tmp / "history.json").write_text(json.dumps(asdict(hist)))
        shutil.rmtree(pdir, ignore_errors=True)
        os.replace(tmp, pdir)
        stages.mark(f"prm/{name}", key)
        prms[name] = prm
        histories[name] = asdict(hist)

    lap("prms")

    # 5. evaluation ----------------------------------------------------------------------------
    _log("[5/5] evaluation on held-out problems")
    dev, test = pool["dev"], pool["test"]
    rows: dict[str, dict[str, Any]] = {}
    baselines = None
    for name, prm in prms.items():
        dev_scores = prm.score_trajectories(dev)
        test_scores = prm.score_trajectories(test)
        th = tune_threshold(dev_scores, [t.first_error for t in dev])
        fe = first_error_f1(test_scores, [t.first_error for t in test], th)
        sol = solution_scores(test_scores, config.aggregation)
        bon = best_of_n(
            [[(t.final_answer, bool(t.outcome), s) for t, s in zip(test[i:i + config.bon_n], sol[i:i + config.bon_n])]
             for i in range(0, len(test), config.bon_n)],
            config.bon_n, seed=config.seed,
        )
        baselines = {"majority_vote": bon.majority_vote, "random_pick": bon.random_pick, "oracle_pick": bon.oracle_pick}
        meta = label_results[name]
        h = histories[name]
        rows[name] = {
            "step_auroc": step_auroc(test_scores, [t.oracle_labels for t in test]),
            "first_error_f1": fe.f1,
            "first_error_accuracy_erroneous": fe.error_accuracy,
            "first_error_accuracy_error_free": fe.correct_accuracy,
            "threshold": th,
            "bon_accuracy": bon.prm,
            "policy_tokens_per_step_label": meta["policy_tokens"] / max(1, meta["labeled_steps"]),
            "policy_tokens": meta["policy_tokens"],
            "rollouts": meta["rollouts"],
            "labeled_steps": meta["labeled_steps"],
            "dropped_trajectories": meta["dropped"],
            "label_accuracy_vs_oracle": meta["label_accuracy_vs_oracle"],
            "label_seconds": meta["seconds"],
            "train_seconds": h["seconds"],
            "prm_loss": meta["prm_loss"],
        }
        if h.get("spr_step"):
            rows[name]["spr_kept_share"] = {"step": h["spr_step"], "positive": h["spr_kept_pos"], "negative": h["spr_kept_neg"]}
    lap("evaluation")
    n_test_problems = len(test) // config.bon_n
    pool_tokens = sum(t.tokens_generated for t in train)
    pool_steps = sum(len(t.steps) for t in train)
    metrics = {
        "domain": domain.name,
        "domain_config": asdict(config.domain),
        "policy": stats,
        "label_sources": rows,
        "baselines": baselines,
        "bon_n": config.bon_n,
        "aggregation": config.aggregation,
        "test_problems": n_test_problems,
        "train_trajectories": len(train),
        "pool_tokens_per_step": pool_tokens / max(1, pool_steps),
        "seed": config.seed,
        "seconds": time.perf_counter() - t_start,
        "stage_seconds": stage_seconds,
        "prm": {"surprise_features": config.surprise_features, "epochs": config.prm.epochs},
    }
    # an undefined metric (e.g. F1 with no error-free test solution) is written as null, not NaN
    atomic_write_text(out / "metrics.json", json.dumps(to_strict_json(metrics), indent=2))
    from selfprm.report.demo_report import write_demo_report

    table = write_demo_report(metrics, out)
    print(table)
    return metrics


def _policy_backbone(policy_dir: Path):
    # the causal LM with its head: the PRM's surprise features read the LM head's log-probs
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(policy_dir)
