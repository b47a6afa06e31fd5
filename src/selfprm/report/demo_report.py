"""The demo's table (printed and in ``report.md``) and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfprm.report.tables import cell, markdown_table
from selfprm.report.plots import plot_cost_quality, plot_source_metrics, plot_spr_kept
from selfprm.types import atomic_write_text


def _pm(r: dict[str, Any], key: str) -> str:
    """``mean ± sd`` over seeds (the mean alone with one seed)."""
    if r.get("seeds", 1) > 1:
        return f"{cell(r[key])} ± {cell(r['sd'][key])}"
    return cell(r[key])


def format_table(metrics: dict[str, Any]) -> str:
    bon = f"best-of-{metrics.get('bon_n', 8)}"
    rows = [[name, r["prm_loss"], _pm(r, "step_auroc"), _pm(r, "first_error_f1"), _pm(r, "bon_accuracy"),
             cell(r["policy_tokens_per_step_label"], ".1f"), cell(r["cost"]["token_passes"] / 1e6, ".2f"),
             cell(r["label_accuracy_vs_oracle"], ".1%")]
            for name, r in metrics["label_sources"].items()]
    b = metrics.get("baselines") or {}
    sd = metrics.get("baselines_sd") or {}
    for key, label in (("majority_vote", "*majority vote*"), ("random_pick", "*random pick*"), ("oracle_pick", "*oracle pick*")):
        if key in b:
            val = f"{cell(b[key])} ± {cell(sd[key])}" if metrics.get("seeds", 1) > 1 else cell(b[key])
            rows.append([label, "", "", "", val, "", "", ""])
    return markdown_table(["label source", "PRM loss", "step AUROC", "first-error F1", bon, "policy tokens / step label",
                           "compute (M token passes)", "labels agree w/ oracle"], rows)


def write_demo_report(metrics: dict[str, Any], out: Path) -> str:
    out = Path(out)
    table = format_table(metrics)
    plot_source_metrics(metrics, out / "label_sources.png")
    has_spr = plot_spr_kept(metrics, out / "spr_filter.png")
    plot_cost_quality(metrics, out / "cost_quality.png")
    p = metrics["policy"]
    parts = [
        f"# selfprm demo — `{metrics['domain']}`",
        "",
        "Can PRMs trained on self-supervised step labels replace exact step labels? Each row trains the same "
        "PRM (initialised from the policy) on one source's labels for the same trajectories and evaluates it "
        f"on {metrics['test_problems']} held-out problems against the exact oracle.",
        "",
        table,
        "",
        f"*Policy*: tiny causal LM trained from scratch, sampled at T={p['temperature']}; wrong final answer on "
        f"{p['error_rate']:.1%} of test solutions, {p['step_error_rate']:.1%} of steps unsound, "
        f"{p['lucky_or_recovered_rate']:.1%} of solutions right despite an unsound step (recovered or lucky), "
        f"{p['truncated_rate']:.1%} truncated; {p['steps_per_solution']:.1f} steps and "
        f"{p['tokens_per_solution']:.1f} tokens per solution.",
        "",
        "*Cost*: policy tokens generated to make the labels, per labelled step, beyond sampling the pool itself "
        f"({metrics['pool_tokens_per_step']:.1f} tokens per step, shared by every source); *compute*: every token "
        "position run through any model for the row, in millions — the policy's generation for the labels, models "
        "a source trains or scores with (each forward and backward pass counted), and training the row's PRM.",
        "",
        (f"*Spread*: mean ± sd (sample sd) over {metrics['seeds']} seeds, each with its own pool, labels and PRMs "
         "on independent random streams; the SFT policy is shared." if metrics.get("seeds", 1) > 1
         else "*Spread*: one seed; `--seeds 3` gives mean ± sd."),
        "",
        "*First-error F1* (ProcessBench's metric): threshold tuned on a dev split, F1 = harmonic mean of the accuracy "
        "on erroneous and on error-free solutions. *Best-of-N* aggregates step scores with "
        f"`{metrics['aggregation']}`.",
        "",
        "![label sources](label_sources.png)",
        "",
        "![cost and quality](cost_quality.png)",
    ]
    for name, r in metrics["label_sources"].items():
        for k, s in enumerate(r.get("kept_share") or []):
            if not s:
                continue
            parts += [
                "",
                f"## SPR's dynamic filter (`{name}`, seed {k})",
                "",
                "Share of steps the filter kept in the loss (prediction agrees with the outcome pseudo-label), "
                f"first → last logged step: outcome-correct steps {s['positive'][0]:.2f} → {s['positive'][-1]:.2f}, "
                f"outcome-wrong steps {s['negative'][0]:.2f} → {s['negative'][-1]:.2f}. "
                "A share falling to 0 means the head has collapsed to one class.",
            ]
    if has_spr:
        parts += ["", "![SPR filter](spr_filter.png)"]
    parts += ["", "## Deviations from the papers", ""]
    parts += [f"- {d}" for d in metrics.get("deviations", [])] or ["- none: every row runs the method its name cites."]
    atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
    return table
