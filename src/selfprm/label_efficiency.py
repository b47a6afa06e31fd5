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

Results go to ``DIR/label_efficiency.json`` (atomically) and ``DIR/label_efficiency.png``.
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
from selfprm.eval.metrics import step_auroc
from selfprm.labels import get_label_source
from selfprm.policies.base import sample_flat
from selfprm.policies.tiny import TinyLMConfig
from selfprm.types import StepLabels, Trajectory, atomic_write_text


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
        "omega": Budgeted("omega", [{"n_rollouts": k} for k in ks]),
        # omega searching right answers too (for recovered errors and lucky answers)
        "omega_all": Budgeted("omega", [{"n_rollouts": k, "search_correct": True} for k in ks]),
        "mcts": Budgeted("mcts", [{"n_simulations": s} for s in ([2, 6] if quick else [2, 4, 8, 16])]),
        "tree": Budgeted("tree", [{"m_trees": 4, "l_rounds": l, "n_branches": 2} for l in ([1, 3] if quick else [1, 2, 4])]),
        "tree_value": Budgeted("tree", [{"m_trees": 4, "l_rounds": l, "n_branches": 2, "label_kind": "value"}
                                        for l in ([1, 3] if quick else [1, 2, 4])]),
        "consensus": Budgeted("consensus", [{"primary": "mc", "primary_kwargs": {"n_rollouts": k, "soft": False},
                                             "second": "omega", "second_kwargs": {"n_rollouts": k}}
                                            for k in [2]]),
        "implicit": Budgeted("implicit", [{"train_steps": s} for s in ([60] if quick else [100, 300])], needs_model=True),
    }


@dataclass
class LabelEfficiencyConfig:
    seed: int = 0
    # 7-9 operations: with redo and extra lines the trajectories average over 8 steps (the bar)
    domain: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=7, max_ops=9))
    policy: str = "hf"  # "hf": the embedded tiny causal LM after SFT; "simulated": the noisy solver
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    # 600 steps left the policy short of learning 8-10-operation chains (loss 0.34, every pool
    # trajectory flawed); longer chains need more steps than the demo's 3-6
    sft_steps: int = 1200
    n_sft_problems: int = 20000
    temperature: float = 0.7
    max_new_tokens: int = 128
    n_problems: int = 100
    samples_per_problem: int = 2
    quick: bool = False
    entries: dict[str, Budgeted] | None = None  # None: :func:`default_entries`

    @classmethod
    def quick_config(cls, seed: int = 0) -> "LabelEfficiencyConfig":
        """Under 3 minutes on 2 cores: the simulated solver (no SFT), 250 problems x 2 samples.

        The embedded policy's SFT alone takes minutes on a busy 2-core machine, so ``--quick``
        uses the simulated ``arith`` solver; the JSON's ``policy.kind`` says which ran.
        """
        return cls(seed=seed, policy="simulated", n_problems=250, samples_per_problem=2, quick=True)


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


def _policy_factory(config: LabelEfficiencyConfig, out: Path, domain: ArithDomain,
                    progress: bool) -> tuple[Callable[[int], Any], dict[str, Any]]:
    """A function ``seed -> fresh policy`` (same weights, own sampling stream) and its description."""
    if config.policy == "simulated":
        from selfprm.policies.simulated import SimulatedPolicy, SimulatedPolicyConfig

        return (lambda seed: SimulatedPolicy(domain, SimulatedPolicyConfig(seed=seed))), {
            "kind": "simulated arith solver (SimulatedPolicy defaults; no SFT)"}
    if config.policy != "hf":
        raise ValueError(f"policy must be 'hf' or 'simulated', not {config.policy!r}")
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig
    from selfprm.policies.tiny import SFTConfig, load_or_train_policy_model

    sft = SFTConfig(steps=config.sft_steps, warmup=min(100, max(1, config.sft_steps // 10)), seed=config.seed)
    t0 = time.perf_counter()
    model, tok, losses = load_or_train_policy_model(domain, out / "policy", config.n_sft_problems, config.lm, sft,
                                                    progress=progress)
    info = {"kind": "hf tiny causal LM (embedded), SFT from scratch", "sft_steps": config.sft_steps,
            "n_sft_problems": config.n_sft_problems, "temperature": config.temperature,
            "sft_final_loss": float(np.mean(losses[-20:])) if losses else math.nan,
            "sft_or_load_seconds": time.perf_counter() - t0}

    def make(seed: int):
        return HFPolicy(model, tok, domain, HFPolicyConfig(temperature=config.temperature,
                                                           max_new_tokens=config.max_new_tokens, seed=seed))

    return make, info


def run_label_efficiency(config: LabelEfficiencyConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    domain = ArithDomain(config.domain)
    make_policy, policy_info = _policy_factory(config, out, domain, progress)

    # the shared pool
    problems = domain.sample_problems(config.n_problems, seed=config.seed * 100 + 7, prefix="le")
    pool = sample_flat(make_policy(config.seed * 100 + 7), problems, config.samples_per_problem)
    n = max(1, len(pool))
    pool_info = {
        "trajectories": len(pool),
        "steps_per_trajectory": sum(len(t.steps) for t in pool) / n,
        "error_rate": sum(not t.outcome for t in pool) / n,
        "flawed_rate": sum(t.first_error != -1 for t in pool) / n,
        "truncated_rate": sum(t.truncated for t in pool) / n,
        "tokens_per_trajectory": sum(t.tokens_generated for t in pool) / n,
    }
    print(f"pool: {len(pool)} trajectories, {pool_info['steps_per_trajectory']:.1f} steps each, "
          f"{pool_info['error_rate']:.0%} wrong answers, {pool_info['flawed_rate']:.0%} with a step error", flush=True)

    entries = config.entries if config.entries is not None else default_entries(config.quick)
    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for name, entry in entries.items():
        if entry.needs_model and config.policy != "hf":
            skipped[name] = "needs a policy with a model (hf)"
            continue
        rows = []
        for b, kwargs in enumerate(entry.budgets):
            src = get_label_source(entry.source, **kwargs)
            if hasattr(src, "progress"):
                src.progress = False
            # every source sees the same sampling stream for the same budget
            policy = make_policy(config.seed * 1000 + 17 * b + 1)
            t0 = time.perf_counter()
            try:
                labels = _derive(src.label(pool, policy), entry.derive)
            except Exception as e:  # one failing source must not cost the whole study
                skipped[f"{name} {json.dumps(kwargs, default=str)}"] = f"{type(e).__name__}: {e}"
                print(f"  {name:10s} failed: {type(e).__name__}: {e}", flush=True)
                continue
            secs = time.perf_counter() - t0
            row = {"budget": kwargs, "policy_tokens": sum(l.policy_tokens for l in labels if l is not None),
                   "rollouts": sum(l.rollouts for l in labels if l is not None), "seconds": secs}
            row["tokens_per_trajectory"] = row["policy_tokens"] / n
            row.update(score_labels(pool, labels))
            rows.append(row)
            print(f"  {name:10s} {json.dumps(kwargs, default=str)[:60]:60s} tokens {row['policy_tokens']:>8d}  "
                  f"first-error acc {row['first_error_accuracy']:.3f}  step AUROC {row['step_auroc']:.3f}  "
                  f"({secs:.1f}s)", flush=True)
        results[name] = rows
        # the partial study on disk after every source, so a long run shows its progress
        atomic_write_text(out / "label_efficiency.partial.json",
                          json.dumps({"policy": policy_info, "pool": pool_info, "sources": results}, default=str))

    report = {
        "policy": policy_info,
        "domain_config": asdict(config.domain),
        "pool": pool_info,
        "sources": results,
        "skipped": skipped,
        "omega_vs_mc": omega_vs_mc(results),
        "quick": config.quick,
        "seed": config.seed,
        "seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(out / "label_efficiency.json", json.dumps(report, indent=2, default=str))
    (out / "label_efficiency.partial.json").unlink(missing_ok=True)
    plot_label_efficiency(report, out / "label_efficiency.png")
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
            pts = [(r["policy_tokens"], r[metric]) for r in rows if r["policy_tokens"] > 0]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name, color=col)
            else:  # free sources: a level line, since log scale has no zero
                for r in rows:
                    if not math.isnan(r[metric]):
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
