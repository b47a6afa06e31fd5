"""``selfprm demo``: the whole pipeline on ``arith``, one table row per label source.

domain -> tiny policy (SFT from scratch) -> sampled pool -> step labels from each source ->
a PRM per source (initialised from the policy's weights) -> step AUROC, first-error F1 and
best-of-8 on held-out problems, against the exact oracle.

Every stage goes through the run directory (:mod:`selfprm.rundir`): a rerun with the same
configuration recomputes nothing, a changed parameter recomputes only the stages built from it,
and an interrupted demo resumes where it stopped (labelling from its finished shards).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.eval.metrics import best_of_n, first_error_f1, solution_scores, step_auroc, tune_threshold
from selfprm.policies.base import reseed, sample_flat
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.model import PRMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rundir import RunDir
from selfprm.studies.stages import label_stage, log, policy_stage, prm_stage
from selfprm.types import Trajectory, read_trajectories, write_trajectories


@dataclass
class DemoConfig:
    """The demo on ``arith``.

    Parameters:
        seed: seeds the SFT, the pool's sampling, the labelling and the PRMs.
        domain: the arith problems (operations, operand ranges, the knobs that make steps hard).
        lm: shape of the tiny causal LM trained from scratch.
        sft: its supervised fine-tuning (the seed is taken from ``seed``).
        n_sft_problems: worked solutions the policy is fine-tuned on.
        temperature: sampling temperature of the policy (above 0 it errs at a measurable rate).
        max_new_tokens: cap on a sampled solution's length.
        n_train_problems: problems of the pool the label sources label and the PRMs train on.
        samples_per_train_problem: solutions sampled per training problem.
        n_dev_problems: problems of the dev split (tunes the first-error threshold).
        samples_per_dev_problem: solutions sampled per dev problem.
        n_test_problems: held-out problems the PRMs are evaluated on.
        bon_n: solutions per test problem, the N of best-of-N.
        mc_rollouts: Monte Carlo rollouts per step prefix of the ``mc`` source.
        sources: the label sources, one table row each (any registered name).
        source_kwargs: keyword arguments of each label source beyond its defaults (JSON on the command line).
        prm: PRM training; the loss is the one the label source names.
        surprise_features: the PRM head also reads the backbone's token log-probs (prm/model.py).
        spr_warmup_steps: SPR warm start: optimizer steps of class-balanced BCE before the filter is on.
        aggregation: how step scores become a solution score for best-of-N (``min``, ``prod``, ...).
        label_shard_size: trajectories per labelling shard (the unit of resume).
    """

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
    surprise_features: bool = True
    spr_warmup_steps: int = 0
    aggregation: str = "min"
    label_shard_size: int = 128

    def __post_init__(self) -> None:
        from selfprm.labels import LABEL_SOURCES

        # an unknown name fails here, before anything is written
        LABEL_SOURCES.check(self.sources)


def _quick() -> DemoConfig:
    # The policy needs ~400 SFT steps to learn the mod-10 tables (below that its steps are nearly
    # all wrong), so quick saves on everything else: fewer problems, the four spine sources.
    return DemoConfig(sft=SFTConfig(steps=400), n_sft_problems=8000, n_train_problems=60, n_dev_problems=40,
                      n_test_problems=50, sources=("oracle", "outcome", "spr", "mc"))


Config = DemoConfig
PRESETS = {"full": DemoConfig, "quick": _quick}
DEFAULT_OUT = "runs/demo"


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


def run(config: DemoConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the demo into ``out``; returns the metrics also written to ``out/metrics.json``."""
    run_dir = RunDir(out)
    out = run_dir.root
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)  # only model inits below draw from it; every sampler has its own seed
    domain = ArithDomain(config.domain)
    stage_seconds: dict[str, float] = {}
    t_stage = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t_stage
        now = time.perf_counter()
        stage_seconds[name] = now - t_stage
        t_stage = now
        log(f"      ({name}: {stage_seconds[name]:.1f} s)")

    # 1. policy ------------------------------------------------------------------------------
    log("[1/5] policy: tiny causal LM trained from scratch by SFT on worked solutions")
    sft = replace(config.sft, seed=config.seed)
    policy_st, model, tok, sft_losses = policy_stage(run_dir, "policy", domain, config.n_sft_problems, config.lm, sft,
                                                     progress=progress)
    policy = HFPolicy(model, tok, domain, HFPolicyConfig(
        temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed, progress=progress))
    lap("policy")

    # 2. pool ----------------------------------------------------------------------------------
    log("[2/5] sampling the trajectory pool (train / dev / test)")
    splits = {
        "train": (config.n_train_problems, config.samples_per_train_problem, 1),
        "dev": (config.n_dev_problems, config.samples_per_dev_problem, 2),
        "test": (config.n_test_problems, config.bon_n, 3),
    }
    pool_st = run_dir.stage("pool", {"splits": splits, "temperature": config.temperature,
                                     "max_new_tokens": config.max_new_tokens, "seed": config.seed}, [policy_st])
    pool: dict[str, list[Trajectory]] = {}
    if pool_st.done():
        pool = {split: [t for t, _ in read_trajectories(pool_st.file(f"{split}.jsonl"))] for split in splits}
    else:
        pool_st.begin()
        for split, (n_prob, n_samp, offset) in splits.items():
            problems = domain.sample_problems(n_prob, seed=config.seed * 100 + offset, prefix=split)
            reseed(policy, config.seed * 100 + offset)  # each split's samples are repeatable on their own
            pool[split] = sample_flat(policy, problems, n_samp)
            write_trajectories(pool_st.file(f"{split}.jsonl"), pool[split])
        pool_st.finish({split: len(v) for split, v in pool.items()})
    stats = _policy_stats(pool["test"])
    stats.update(temperature=config.temperature, sft_final_loss=float(np.mean(sft_losses[-20:])) if sft_losses else math.nan)
    log(f"      policy errs on {stats['error_rate']:.1%} of test solutions at T={config.temperature} "
        f"({stats['step_error_rate']:.1%} of steps)")
    lap("pool")

    # 3. labels --------------------------------------------------------------------------------
    log("[3/5] step labels from each source")
    train = pool["train"]
    label_results: dict[str, dict[str, Any]] = {}
    labels_by_source = {}
    label_stages = {}
    for name in config.sources:
        kwargs = dict(config.source_kwargs.get(name, {}))
        if name == "mc":
            kwargs.setdefault("n_rollouts", config.mc_rollouts)
        label_stages[name], labs, meta = label_stage(
            run_dir, f"labels/{name}", name, kwargs, train, policy, [pool_st], config.label_shard_size, config.seed,
            progress=progress)
        meta = dict(meta)
        labels_by_source[name] = labs
        flat = [(v, o) for l, t in zip(labs, train) if l is not None for v, o in zip(l.values, t.oracle_labels)]
        meta["label_accuracy_vs_oracle"] = sum((v >= 0.5) == o for v, o in flat) / max(1, len(flat))
        label_results[name] = meta
        log(f"      {name:8s} {meta['labeled_steps']} steps, {meta['policy_tokens']} policy tokens, "
            f"{meta['label_accuracy_vs_oracle']:.1%} agree with the oracle")
    lap("labels")

    # 4. PRMs ----------------------------------------------------------------------------------
    log("[4/5] a PRM per source (backbone initialised from the policy)")
    prms = {}
    histories: dict[str, dict[str, Any]] = {}
    for name in config.sources:
        loss = label_results[name]["prm_loss"]
        tcfg = replace(config.prm, loss=loss, seed=config.seed,
                       spr_warmup_steps=config.spr_warmup_steps if loss == "spr" else 0)
        pcfg = PRMConfig(step_separator=domain.step_separator, surprise_features=config.surprise_features)
        # the causal LM with its head: the PRM's surprise features read the LM head's log-probs
        _, prms[name], histories[name] = prm_stage(
            run_dir, f"prm/{name}", [label_stages[name], policy_st], policy_st.file("model"), tok,
            list(zip(train, labels_by_source[name])), tcfg, pcfg, init_seed=config.seed, progress=progress, desc=name)
    lap("prms")

    # 5. evaluation ----------------------------------------------------------------------------
    log("[5/5] evaluation on held-out problems")
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
            config.bon_n,
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
    run_dir.write_json("metrics.json", metrics)
    from selfprm.report.demo_report import write_demo_report

    table = write_demo_report(metrics, out)
    print(table)
    return metrics

