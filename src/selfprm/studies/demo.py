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

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.code import CodeConfig, CodeDomain
from selfprm.eval.metrics import best_of_n, first_error_f1, solution_scores, step_auroc, tune_threshold
from selfprm.policies.base import reseed, sample_flat
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.model import SPR_REFERENCE, SPR_REFERENCE_AGGREGATION, PRMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rundir import RunDir
from selfprm.studies.stages import label_stage, log, policy_stage, prm_stage, seed_streams
from selfprm.types import Trajectory, read_trajectories, write_trajectories


@dataclass
class DemoConfig:
    """The demo on ``arith`` (or ``code``).

    Parameters:
        seed: seeds the SFT, the pool's sampling, the labelling and the PRMs.
        domain: ``arith`` (configured by ``arith``) or ``code`` (configured by ``code``: programs
            with unit tests, outcomes from the sandbox).
        arith: the arith problems (operations, operand ranges, the knobs that make steps hard).
        code: the code problems, when ``domain`` is ``code``.
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
        seeds: independent repeats after the policy (pool, labels, PRMs), reported as mean ± sd.
        spr_warmup_steps: SPR warm start: optimizer steps of class-balanced BCE before the filter is on
            (not in the paper; 0 runs the filter from the random head, which ranked nothing, AUROC <= 0.55,
            for 4 of 12 initialisations on the quick demo's pools: benchmarks/spr_warm_start.py).
        spr_reference: the ``spr`` row's PRM is MetaStone-S1's (MLP head on the penultimate layer, 1e-4
            of the gradient into the backbone, geometric-mean solution scores); off: the demo's own PRM
            with the SPR loss (a deviation).
        spr_surprise_features: the SPR score head also reads the backbone's token log-probs (not in
            the paper; see the report's deviations).
        spr_head_lr: learning rate of SPR's score head (the demo's 5e-2 sets the filter oscillating).
        aggregation: how step scores become a solution score for best-of-N (``min``, ``prod``, ...).
        label_shard_size: trajectories per labelling shard (the unit of resume).
        whole_pool_sources: sources labelled in one shard: they fit models (cross-fitted) on what they
            label, and a shard's few trajectories would starve them.
    """

    seed: int = 0
    domain: str = "arith"
    arith: ArithConfig = field(default_factory=ArithConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
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
        # OmegaPRM's Q/U tree search (8 extra searches per problem, popped 4 per round), k as for mc
        "omega": {"n_rollouts": 4, "extra_searches": 8, "searches_per_round": 4},
        "mcts": {"n_simulations": 4},  # AlphaLLM's critics (value + PRM + outcome), trained in the source
        "tree": {"m_trees": 4, "l_rounds": 2},
        # per cross-fitted fold model, on the whole pool (see whole_pool_sources)
        "implicit": {"train_steps": 160},
        # Qwen's consensus filter: hard MC and a verifier trained on outcomes agree on the first error
        "consensus": {"primary_kwargs": {"n_rollouts": 4, "soft": False}, "judge_kwargs": {"epochs": 6}},
    })
    # the head's fast learning rate lets it pick up the three surprise features within ~100 steps
    prm: PRMTrainConfig = field(default_factory=lambda: PRMTrainConfig(epochs=3, batch_size=32, head_lr=5e-2))
    surprise_features: bool = True
    seeds: int = 1
    spr_warmup_steps: int = 8
    spr_reference: bool = True
    spr_surprise_features: bool = True
    spr_head_lr: float = 1e-2
    aggregation: str = "min"
    label_shard_size: int = 128
    whole_pool_sources: tuple[str, ...] = ("implicit", "consensus", "mcts")

    def __post_init__(self) -> None:
        from selfprm.labels import LABEL_SOURCES

        # an unknown name fails here, before anything is written
        LABEL_SOURCES.check(self.sources)
        study_domain(self.domain, self.arith, self.code)


def _quick() -> DemoConfig:
    # The policy needs ~400 SFT steps to learn the mod-10 tables (below that its steps are nearly
    # all wrong), so quick saves on everything else: fewer problems, the four spine sources.
    return DemoConfig(sft=SFTConfig(steps=400), n_sft_problems=8000, n_train_problems=60, n_dev_problems=40,
                      n_test_problems=50, sources=("oracle", "outcome", "spr", "mc"))


Config = DemoConfig
PRESETS = {"full": DemoConfig, "quick": _quick}
DEFAULT_OUT = "runs/demo"


def study_domain(name: str, arith: ArithConfig, code: CodeConfig) -> ArithDomain | CodeDomain:
    """The domain a study's ``domain`` field picks, built from its config."""
    if name == "arith":
        return ArithDomain(arith)
    if name == "code":
        return CodeDomain(code)
    raise ValueError(f"domain must be 'arith' or 'code', not {name!r}")


def _row_aggregation(config: DemoConfig, loss: str) -> str:
    """How a row's step scores become solution scores: the paper's rule for SPR's reference model."""
    return SPR_REFERENCE_AGGREGATION if loss == "spr" and config.spr_reference else config.aggregation


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
    """Run the demo into ``out``; returns the metrics also written to ``out/metrics.json``.

    With ``seeds > 1`` every seed after the policy (pool, labels, PRMs) runs on its own random
    streams (``numpy.random.SeedSequence``) under ``out/seed-K/``, and each metric is reported as the
    mean with its sd over seeds; the SFT policy is trained once and shared.
    """
    run_dir = RunDir(out)
    t_start = time.perf_counter()
    domain = study_domain(config.domain, config.arith, config.code)
    streams = seed_streams(config.seed, [f"seed-{k}" for k in range(config.seeds)])

    log("[1/5] policy: tiny causal LM trained from scratch by SFT on worked solutions")
    t0 = time.perf_counter()
    # the policy is shared by every seed, so it keeps the plain seed (a policy's arithmetic turns on
    # within a few SFT steps and moves with its seed; the spread is over what follows it)
    sft = replace(config.sft, seed=config.seed)
    policy_st, model, tok, sft_losses = policy_stage(run_dir, "policy", domain, config.n_sft_problems, config.lm, sft,
                                                     progress=progress)
    policy_seconds = time.perf_counter() - t0
    log(f"      (policy: {policy_seconds:.1f} s)")
    per_seed = []
    for k in range(config.seeds):
        if config.seeds > 1:
            log(f"=== seed {k + 1} of {config.seeds} ===")
        metrics = _run_seed(config, run_dir, f"seed-{k}", streams[f"seed-{k}"], domain, policy_st, model, tok, progress)
        metrics["stage_seconds"] = {"policy": policy_seconds if k == 0 else 0.0, **metrics["stage_seconds"]}
        metrics["policy"]["sft_final_loss"] = float(np.mean(sft_losses[-20:])) if sft_losses else math.nan
        run_dir.write_json(f"seed-{k}/metrics.json", metrics)
        per_seed.append(metrics)
    metrics = combine_seeds(per_seed)
    metrics.update(seed=config.seed, seeds=config.seeds, seconds=time.perf_counter() - t_start,
                   deviations=deviations(config))
    # an undefined metric (e.g. F1 with no error-free test solution) is written as null, not NaN
    run_dir.write_json("metrics.json", metrics)
    from selfprm.report.demo_report import write_demo_report

    table = write_demo_report(metrics, run_dir.root)
    print(table)
    return metrics


def deviations(config: DemoConfig) -> list[str]:
    """Where a row named after a paper does not run that paper's method as its public code does."""
    out = []
    if "spr" in config.sources:
        if not config.spr_reference:
            out.append("spr: the demo's PRM (linear head on the last layer, backbone trained) with MetaStone-S1's "
                       "loss, not MetaStone-S1's score model (spr_reference=False)")
        elif config.spr_surprise_features:
            out.append("spr: MetaStone-S1's score model (MLP head, penultimate layer, 1e-4 gradient into the backbone, "
                       "geometric mean) whose head also reads the backbone's token log-probs (not in the paper: on a "
                       "2-layer policy the penultimate hidden states alone carry no step-error signal; "
                       "spr_surprise_features=False runs the paper's head input)")
        if config.spr_warmup_steps:
            out.append(f"spr: {config.spr_warmup_steps} steps of class-balanced BCE before the filter (not in the paper: "
                       "MetaStone-S1 starts the filter from the random head, online beside RL; on the quick demo's fixed "
                       "pools that start ranked nothing for 4 of 12 initialisations, benchmarks/spr_warm_start.py)")
    # what the CPU scale changes in the other rows (each source's docstring has the details)
    kw = config.source_kwargs
    if "omega" in config.sources:
        out.append(f"omega: {kw.get('omega', {}).get('extra_searches', 16)} Q/U searches per problem after the pool's "
                   "own (the paper: up to 100), popped several per round; no question filter")
    if "mcts" in config.sources:
        out.append("mcts: the value-function and PRM critics are tiny copies of the policy trained inside the source "
                   "(cross-fitted), weighted equally with the outcome; one rollout per expansion; states merged by a "
                   "normalised-text rule")
    if "implicit" in config.sources:
        out.append("implicit: the reward model is trained on the pool it labels, cross-fitted over 2 folds of problems "
                   "(the paper trains on separate data)")
    if "consensus" in config.sources:
        out.append("consensus: the judge is a verifier trained on outcomes from the policy's weights (the paper: "
                   "Qwen2.5-72B-Instruct as a critic); disagreeing trajectories get weight 0")
    return out


def _run_seed(config: DemoConfig, run_dir: RunDir, prefix: str, seed: int, domain: ArithDomain | CodeDomain, policy_st, model, tok,
              progress: bool) -> dict[str, Any]:
    """Pool, labels, PRMs and evaluation for one seed: stages under ``prefix/``."""
    streams = seed_streams(seed, ["sampling", "train", "dev", "test", "labels", "prm"])
    stage_seconds: dict[str, float] = {}
    t_stage = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t_stage
        now = time.perf_counter()
        stage_seconds[name] = now - t_stage
        t_stage = now
        log(f"      ({name}: {stage_seconds[name]:.1f} s)")

    policy = HFPolicy(model, tok, domain, HFPolicyConfig(
        temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=streams["sampling"],
        progress=progress))

    # 2. pool ----------------------------------------------------------------------------------
    log("[2/5] sampling the trajectory pool (train / dev / test)")
    splits = {
        "train": (config.n_train_problems, config.samples_per_train_problem),
        "dev": (config.n_dev_problems, config.samples_per_dev_problem),
        "test": (config.n_test_problems, config.bon_n),
    }
    pool_st = run_dir.stage(f"{prefix}/pool", {"splits": splits, "temperature": config.temperature,
                                               "max_new_tokens": config.max_new_tokens, "seed": seed}, [policy_st])
    pool: dict[str, list[Trajectory]] = {}
    if pool_st.done():
        pool = {split: [t for t, _ in read_trajectories(pool_st.file(f"{split}.jsonl"))] for split in splits}
    else:
        pool_st.begin()
        for split, (n_prob, n_samp) in splits.items():
            problems = domain.sample_problems(n_prob, seed=streams[split], prefix=split)
            reseed(policy, streams[split])  # each split's samples are repeatable on their own
            pool[split] = sample_flat(policy, problems, n_samp)
            write_trajectories(pool_st.file(f"{split}.jsonl"), pool[split])
        pool_st.finish({split: len(v) for split, v in pool.items()})
    stats = _policy_stats(pool["test"])
    stats["temperature"] = config.temperature
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
            run_dir, f"{prefix}/labels/{name}", name, kwargs, train, policy, [pool_st],
            len(train) if name in config.whole_pool_sources else config.label_shard_size, streams["labels"],
            progress=progress)
        meta = dict(meta)
        labels_by_source[name] = labs
        flat = [(v, o) for l, t in zip(labs, train) if l is not None for v, o in zip(l.values, t.oracle_labels)]
        meta["label_accuracy_vs_oracle"] = sum((v >= 0.5) == o for v, o in flat) / max(1, len(flat))
        label_results[name] = meta
        log(f"      {name:8s} {meta['labeled_steps']} steps, {meta['policy_tokens']} policy tokens, "
            f"{meta['token_passes']} token passes, {meta['label_accuracy_vs_oracle']:.1%} agree with the oracle")
    lap("labels")

    # 4. PRMs ----------------------------------------------------------------------------------
    log("[4/5] a PRM per source (backbone initialised from the policy)")
    prms = {}
    histories: dict[str, dict[str, Any]] = {}
    for name in config.sources:
        loss = label_results[name]["prm_loss"]
        tcfg = replace(config.prm, loss=loss, seed=streams["prm"],
                       spr_warmup_steps=config.spr_warmup_steps if loss == "spr" else 0)
        pcfg = PRMConfig(step_separator=domain.step_separator, surprise_features=config.surprise_features)
        if loss == "spr" and config.spr_reference:
            pcfg = replace(pcfg, **{**SPR_REFERENCE, "surprise_features": config.spr_surprise_features})
            tcfg = replace(tcfg, head_lr=config.spr_head_lr)
        # the causal LM with its head: the PRM's surprise features read the LM head's log-probs
        _, prms[name], histories[name] = prm_stage(
            run_dir, f"{prefix}/prm/{name}", [label_stages[name], policy_st], policy_st.file("model"), tok,
            list(zip(train, labels_by_source[name])), tcfg, pcfg, init_seed=streams["prm"], progress=progress,
            desc=name)
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
        how = _row_aggregation(config, label_results[name]["prm_loss"])
        sol = solution_scores(test_scores, how)
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
            # the ledger: tokens the policy generated for the labels, and every token position run
            # through a model to make the labels and to train this row's PRM on them
            "cost": {"policy_tokens": meta["policy_tokens"],
                     "token_passes": meta["token_passes"] + h.get("token_passes", 0),
                     "label_token_passes": meta["token_passes"], "prm_token_passes": h.get("token_passes", 0),
                     "seconds": meta["seconds"] + h["seconds"]},
            "prm_loss": meta["prm_loss"],
            "aggregation": how,
        }
        if h.get("spr_step"):
            rows[name]["kept_share"] = {"step": h["spr_step"], "positive": h["spr_kept_pos"], "negative": h["spr_kept_neg"]}
    lap("evaluation")
    pool_tokens = sum(t.tokens_generated for t in train)
    pool_steps = sum(len(t.steps) for t in train)
    return {
        "domain": domain.name,
        "domain_config": asdict(domain.config),
        "policy": stats,
        "label_sources": rows,
        "baselines": baselines,
        "bon_n": config.bon_n,
        "aggregation": config.aggregation,
        "test_problems": len(test) // config.bon_n,
        "train_trajectories": len(train),
        "pool_tokens_per_step": pool_tokens / max(1, pool_steps),
        "stage_seconds": stage_seconds,
        "prm": {"surprise_features": config.surprise_features, "epochs": config.prm.epochs},
    }


# the row metrics reported as mean ± sd over seeds
SPREAD_KEYS = ("step_auroc", "first_error_f1", "bon_accuracy")


def combine_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One metrics dict from several seeds' (same sources): every number is the mean over seeds;
    each row's ``sd`` holds the sample sd (ddof 1; 0.0 with one seed) of :data:`SPREAD_KEYS`, and
    ``per_seed`` the values behind them. An undefined value (NaN) in any seed makes the mean NaN."""
    def mean(vals: list[Any]) -> Any:
        if all(isinstance(v, dict) for v in vals):
            return {k: mean([v[k] for v in vals]) for k in vals[0] if all(k in v for v in vals)}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            # a setting every seed shares (an int such as bon_n) stays what it is
            return vals[0] if all(v == vals[0] for v in vals) and isinstance(vals[0], int) else float(np.mean(vals))
        return vals[0]

    out = mean(per_seed)
    n = len(per_seed)
    for name, row in out["label_sources"].items():
        vals = {k: [m["label_sources"][name][k] for m in per_seed] for k in SPREAD_KEYS}
        row["sd"] = {k: float(np.std(v, ddof=1)) if n > 1 else 0.0 for k, v in vals.items()}
        row["per_seed"] = vals
        row["seeds"] = n
        if "kept_share" in per_seed[0]["label_sources"][name]:
            row["kept_share"] = [m["label_sources"][name].get("kept_share") for m in per_seed]
    out["baselines_sd"] = {k: float(np.std([m["baselines"][k] for m in per_seed], ddof=1)) if n > 1 else 0.0
                           for k in per_seed[0]["baselines"]}
    return out
