"""Label efficiency: every label source at several budgets on one shared pool, against the oracle.

One pool of trajectories is sampled once from the ``arith`` policy (the embedded tiny causal LM after
SFT, or the simulated solver); every source labels that same pool at each of its budgets with its
own fresh, seeded copy of the policy, so sources differ only in how they spend policy tokens.
For each source and budget the study records

* ``policy_tokens`` and ``rollouts``: what the labels cost (every token the policy generated);
* ``first_error_accuracy``: the share of trajectories whose labels put the first error (first step
  below 0.5, -1 for none) where the oracle does; sources that drop or zero-weight trajectories
  are scored on what they keep, and ``coverage`` says how much that is;
* ``step_auroc``: the labels' values as scores of the oracle's step labels, pooled.

``mc_hard`` is ``mc``'s own rollouts read as Math-Shepherd's hard estimate (a step is sound when
any rollout succeeds), the rule ``omega``'s binary search decides by; it costs nothing extra.

Results go to ``DIR/label_efficiency.json`` (atomically) and ``DIR/label_efficiency.png``. The policy,
the pool and every (source, budget) cell are stages of the run directory, so a rerun recomputes
nothing and an interrupted study resumes at the first unfinished cell. A source that raises fails
the study (after the other cells have run and been kept), naming every failure.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.code import CodeConfig, CodeDomain
from selfprm.eval.metrics import step_auroc
from selfprm.labels import get_label_source, run_label_source
from selfprm.policies.base import sample_flat
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.report.tables import cell
from selfprm.rundir import RunDir, Stage
from selfprm.studies.demo import study_domain
from selfprm.studies.stages import log, policy_stage
from selfprm.types import StepLabels, Trajectory, read_trajectories, write_trajectories


@dataclass
class Budgeted:
    """One study entry: a registered source, and the keyword arguments of each budget."""

    source: str
    budgets: list[dict[str, Any]]
    # turns the source's labels into the entry's (e.g. mc's soft share into its hard estimate)
    derive: str | None = None
    needs_model: bool = False


def default_entries(quick: bool) -> dict[str, Budgeted]:
    ks = [1, 2, 4] if quick else [1, 2, 4, 8]
    return {
        "outcome": Budgeted("outcome", [{}]),
        "spr": Budgeted("spr", [{}]),
        "mc": Budgeted("mc", [{"n_rollouts": k} for k in ks]),
        "mc_hard": Budgeted("mc", [{"n_rollouts": k} for k in ks], derive="hard"),
        # OmegaPRM as published: the Q/U tree search with soft records; beside it the plain binary search
        "omega": Budgeted("omega", [{"n_rollouts": k} for k in ks]),
        "omega_binary": Budgeted("omega", [{"n_rollouts": k, "mode": "binary"} for k in ks]),
        # the all-sound shortcut for right answers, one switch both rollout sources honour, reported apart
        "mc_shortcut": Budgeted("mc", [{"n_rollouts": k, "assume_correct_sound": True} for k in ks]),
        "omega_shortcut": Budgeted("omega", [{"n_rollouts": k, "assume_correct_sound": True} for k in ks]),
        # AlphaLLM's critic mix needs the policy's model; the outcome-only search runs on any policy
        "mcts": Budgeted("mcts", [{"n_simulations": s} for s in ([2, 6] if quick else [2, 4, 8])], needs_model=True),
        "mcts_outcome": Budgeted("mcts", [{"n_simulations": s, "critics": ("outcome",)}
                                          for s in ([2, 6] if quick else [2, 4, 8, 16])]),
        "tree": Budgeted("tree", [{"m_trees": 4, "l_rounds": l, "n_branches": 2} for l in ([1, 3] if quick else [1, 2, 4])]),
        "tree_value": Budgeted("tree", [{"m_trees": 4, "l_rounds": l, "n_branches": 2, "label_kind": "value"}
                                        for l in ([1, 3] if quick else [1, 2, 4])]),
        # Qwen's consensus filter: hard MC and a verifier trained on outcomes (needs the model)
        "consensus": Budgeted("consensus", [{"primary_kwargs": {"n_rollouts": k, "soft": False}} for k in [2, 4]],
                              needs_model=True),
        # train_steps per cross-fitted fold model (two folds)
        "implicit": Budgeted("implicit", [{"train_steps": s} for s in ([30] if quick else [50, 150])], needs_model=True),
    }


@dataclass
class LabelEfficiencyConfig:
    """Every label source at several budgets on one shared pool.

    Parameters:
        seed: seeds the SFT, the pool and each budget's sampling stream.
        domain: ``arith`` (configured by ``arith``) or ``code`` (configured by ``code``; needs ``policy=hf``).
        arith: the arith problems; 7-9 operations make trajectories of over 8 steps.
        code: the code problems, when ``domain`` is ``code``.
        policy: ``hf`` (the embedded tiny causal LM after SFT) or ``simulated`` (the noisy solver, no SFT).
        lm: shape of the tiny causal LM.
        sft: its fine-tuning (the seed is taken from ``seed``); longer chains need more steps than the demo's.
        n_sft_problems: worked solutions the policy is fine-tuned on.
        temperature: sampling temperature of the policy.
        max_new_tokens: cap on a sampled solution's length.
        n_problems: problems in the shared pool (more gives tighter accuracies).
        samples_per_problem: solutions sampled per pool problem.
        entries: the study's rows: a registered source and the keyword arguments of each budget.
    """

    seed: int = 0
    domain: str = "arith"
    arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=7, max_ops=9))
    code: CodeConfig = field(default_factory=CodeConfig)
    policy: str = "hf"
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    # 600 steps left the policy short of learning 8-10-operation chains (loss 0.34, every pool
    # trajectory flawed); longer chains need more steps than the demo's 3-6
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=1200, warmup=100))
    n_sft_problems: int = 20000
    temperature: float = 0.7
    max_new_tokens: int = 128
    n_problems: int = 100
    samples_per_problem: int = 2
    entries: dict[str, Budgeted] = field(default_factory=lambda: default_entries(quick=False))

    def __post_init__(self) -> None:
        if self.policy not in ("hf", "simulated"):
            raise ValueError(f"policy must be 'hf' or 'simulated', not {self.policy!r}")
        study_domain(self.domain, self.arith, self.code)
        if self.domain != "arith" and self.policy == "simulated":
            raise ValueError("the simulated policy solves arith only: use policy='hf' for the code domain")
        from selfprm.labels import LABEL_SOURCES

        LABEL_SOURCES.check([e.source for e in self.entries.values()])


def _quick() -> LabelEfficiencyConfig:
    """Under 3 minutes on 2 cores: the simulated solver (no SFT), 250 problems x 2 samples.

    The embedded policy's SFT alone takes minutes on a busy 2-core machine, so ``--quick`` uses the
    simulated ``arith`` solver; the JSON's ``policy.kind`` says which ran.
    """
    return LabelEfficiencyConfig(policy="simulated", n_problems=250, samples_per_problem=2,
                                 entries=default_entries(quick=True))


Config = LabelEfficiencyConfig
PRESETS = {"full": LabelEfficiencyConfig, "quick": _quick}
DEFAULT_OUT = "runs/label_efficiency"


def _derive(labels: list[StepLabels | None], how: str | None) -> list[StepLabels | None]:
    if how is None:
        return labels
    if how == "hard":
        return [None if l is None else replace(l, values=[float(v > 0) for v in l.values], soft=False)
                for l in labels]
    raise ValueError(f"unknown derivation {how!r}")


def score_labels(pool: list[Trajectory], labels: list[StepLabels | None]) -> dict[str, float]:
    """First-error accuracy and step AUROC of labels against the pool's oracle, on what is kept."""
    kept = [(t, l) for t, l in zip(pool, labels)
            if l is not None and (l.weights is None or any(w > 0 for w in l.weights))]
    if not kept:
        return {"first_error_accuracy": math.nan, "step_auroc": math.nan, "coverage": 0.0}
    hit = [l.first_error == t.first_error for t, l in kept]
    auc = step_auroc([l.values for _, l in kept], [t.oracle_labels for t, _ in kept])
    out = {"first_error_accuracy": float(np.mean(hit)), "step_auroc": auc, "coverage": len(kept) / len(pool)}
    # where the misses are: a right answer's first error is a recovered or lucky one, which no
    # outcome-driven search sees unless it scans every prefix
    for key, want in (("right_answers", True), ("wrong_answers", False)):
        part = [h for h, (t, _) in zip(hit, kept) if bool(t.outcome) == want]
        out[f"first_error_accuracy_{key}"] = float(np.mean(part)) if part else math.nan
    return out


def _policy_factory(config: LabelEfficiencyConfig, run_dir: RunDir, domain: ArithDomain | CodeDomain,
                    progress: bool) -> tuple[Callable[[int], Any], dict[str, Any], list[Stage]]:
    """A function ``seed -> fresh policy`` (same weights, own sampling stream), its description, and
    the stage it was built in (none for the simulated solver)."""
    if config.policy == "simulated":
        from selfprm.policies.simulated import SimulatedPolicy, SimulatedPolicyConfig

        return (lambda seed: SimulatedPolicy(domain, SimulatedPolicyConfig(seed=seed))), {
            "kind": "simulated arith solver (SimulatedPolicy defaults; no SFT)"}, []
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig

    t0 = time.perf_counter()
    stage, model, tok, losses = policy_stage(run_dir, "policy", domain, config.n_sft_problems, config.lm,
                                             replace(config.sft, seed=config.seed), progress=progress)
    info = {"kind": "hf tiny causal LM (embedded), SFT from scratch", "sft_steps": config.sft.steps,
            "n_sft_problems": config.n_sft_problems, "temperature": config.temperature,
            "sft_final_loss": float(np.mean(losses[-20:])) if losses else math.nan,
            "sft_or_load_seconds": time.perf_counter() - t0}

    def make(seed: int):
        return HFPolicy(model, tok, domain, HFPolicyConfig(temperature=config.temperature,
                                                           max_new_tokens=config.max_new_tokens, seed=seed))

    return make, info, [stage]


def _pool(config: LabelEfficiencyConfig, run_dir: RunDir, domain: ArithDomain | CodeDomain, make_policy,
          parents: list[Stage]) -> tuple[Stage, list[Trajectory]]:
    stage = run_dir.stage("pool", {"policy": config.policy, "domain": domain.config, "n": config.n_problems,
                                   "samples": config.samples_per_problem, "temperature": config.temperature,
                                   "max_new_tokens": config.max_new_tokens, "seed": config.seed}, parents)
    if stage.done():
        return stage, [t for t, _ in read_trajectories(stage.file("pool.jsonl"))]
    stage.begin()
    problems = domain.sample_problems(config.n_problems, seed=config.seed * 100 + 7, prefix="le")
    pool = sample_flat(make_policy(config.seed * 100 + 7), problems, config.samples_per_problem)
    write_trajectories(stage.file("pool.jsonl"), pool)
    stage.finish({"trajectories": len(pool)})
    return stage, pool


def run(config: LabelEfficiencyConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the study into ``out``; returns the report also written to ``out/label_efficiency.json``."""
    run_dir = RunDir(out)
    t_start = time.perf_counter()
    domain = study_domain(config.domain, config.arith, config.code)
    make_policy, policy_info, policy_stages = _policy_factory(config, run_dir, domain, progress)
    pool_stage, pool = _pool(config, run_dir, domain, make_policy, policy_stages)
    n = max(1, len(pool))
    pool_info = {
        "trajectories": len(pool),
        "steps_per_trajectory": sum(len(t.steps) for t in pool) / n,
        "error_rate": sum(not t.outcome for t in pool) / n,
        "flawed_rate": sum(t.first_error != -1 for t in pool) / n,
        "truncated_rate": sum(t.truncated for t in pool) / n,
        "tokens_per_trajectory": sum(t.tokens_generated for t in pool) / n,
    }
    log(f"pool: {len(pool)} trajectories, {pool_info['steps_per_trajectory']:.1f} steps each, "
        f"{pool_info['error_rate']:.0%} wrong answers, {pool_info['flawed_rate']:.0%} with a step error")

    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name, entry in config.entries.items():
        if entry.needs_model and config.policy != "hf":
            skipped[name] = "needs a policy with a model (hf)"
            continue
        rows = []
        for b, kwargs in enumerate(entry.budgets):
            stage = run_dir.stage(f"cells/{name}/{b}", {"source": entry.source, "kwargs": kwargs,
                                                       "derive": entry.derive}, [pool_stage])
            if not stage.done():
                stage.begin()
                # every source sees the same sampling stream for the same budget
                policy = make_policy(config.seed * 1000 + 17 * b + 1)
                try:
                    res = run_label_source(get_label_source(entry.source, **kwargs), pool, policy)
                except Exception as e:  # recorded, and the study fails once the other cells are done
                    failed[f"{name} {json.dumps(kwargs, default=str)}"] = f"{type(e).__name__}: {e}"
                    log(f"  {name:10s} FAILED: {type(e).__name__}: {e}")
                    continue
                labels = _derive(res.labels, entry.derive)
                row = {"budget": kwargs, "policy_tokens": sum(l.policy_tokens for l in labels if l is not None),
                       "rollouts": sum(l.rollouts for l in labels if l is not None), "seconds": res.seconds}
                row["tokens_per_trajectory"] = row["policy_tokens"] / n
                row.update(score_labels(pool, labels))
                stage.finish(row)
            # an undefined metric is stored as null; in memory it is NaN again, as when computed
            row = {k: math.nan if v is None else v for k, v in stage.result().items()}
            rows.append(row)
            log(f"  {name:10s} {json.dumps(kwargs, default=str)[:60]:60s} tokens {row['policy_tokens']:>8d}  "
                f"first-error acc {cell(row['first_error_accuracy'])}  step AUROC {cell(row['step_auroc'])}  "
                f"({row['seconds']:.1f}s)")
        results[name] = rows
    if failed:
        raise RuntimeError(f"label-efficiency: {len(failed)} source budget(s) failed (the finished cells are kept "
                           "under cells/ and a rerun redoes only these): "
                           + "; ".join(f"{k}: {v}" for k, v in failed.items()))

    report = {
        "policy": policy_info,
        "domain_config": asdict(domain.config),
        "pool": pool_info,
        "sources": results,
        "skipped": skipped,
        "omega_vs_mc": omega_vs_mc(results),
        "seed": config.seed,
        "seconds": time.perf_counter() - t_start,
    }
    run_dir.write_json("label_efficiency.json", report)
    plot_label_efficiency(report, run_dir.root / "label_efficiency.png")
    for c in report["omega_vs_mc"]:
        log(f"omega vs mc at {c['n_rollouts']} rollouts/prefix: accuracy {cell(c['omega_accuracy'])} vs "
            f"{cell(c['mc_accuracy'])}, {c['token_ratio']:.1f}x fewer tokens -> {'holds' if c['holds'] else 'fails'}")
    log(f"wrote {run_dir.root}/label_efficiency.json and label_efficiency.png ({report['seconds']:.0f} s)")
    return report


def omega_vs_mc(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's criterion at each shared rollouts-per-prefix: omega's first-error accuracy no
    more than 0.02 below full mc's (the better of its soft and hard readings) with at least 2x
    fewer policy tokens."""
    out = []
    by_k = lambda rows: {r["budget"].get("n_rollouts"): r for r in rows}  # noqa: E731
    om, mc, mh = by_k(results.get("omega", [])), by_k(results.get("mc", [])), by_k(results.get("mc_hard", []))
    for k in sorted(set(om) & set(mc)):
        mc_acc = max(mc[k]["first_error_accuracy"], mh.get(k, mc[k])["first_error_accuracy"])
        ratio = mc[k]["policy_tokens"] / max(1, om[k]["policy_tokens"])
        out.append({"n_rollouts": k, "omega_accuracy": om[k]["first_error_accuracy"], "mc_accuracy": mc_acc,
                    "accuracy_gap": mc_acc - om[k]["first_error_accuracy"], "token_ratio": ratio,
                    "holds": bool(mc_acc - om[k]["first_error_accuracy"] <= 0.02 and ratio >= 2.0)})
    return out


def plot_label_efficiency(report: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes, ("first_error_accuracy", "step_auroc")):
        for i, (name, rows) in enumerate(sorted(report["sources"].items())):
            col = colors[i % len(colors)]
            # an undefined metric is null in the JSON, NaN in memory: not drawn either way
            pts = [(r["policy_tokens"], r[metric]) for r in rows if r["policy_tokens"] > 0 and r[metric] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name, color=col)
            else:  # free sources: a level line, since log scale has no zero
                for r in rows:
                    if r[metric] is not None and not math.isnan(r[metric]):
                        ax.axhline(r[metric], ls="--", lw=1, color=col, label=f"{name} (0 tokens)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide
        ax.set_xlabel("policy tokens spent on labels")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="center right")
    fig.suptitle(f"label quality per policy token ({report['policy']['kind']}, "
                 f"{report['pool']['trajectories']} trajectories, "
                 f"{report['pool']['steps_per_trajectory']:.1f} steps each)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
