"""Matplotlib figures (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_source_metrics(metrics: dict[str, Any], path: Path) -> None:
    """One panel per metric, a bar per label source; best-of-N panel shows the baselines as lines."""
    rows = metrics["label_sources"]
    names = list(rows)
    panels = [("step_auroc", "step AUROC vs oracle"), ("first_error_f1", "first-error F1"),
              ("bon_accuracy", f"best-of-{metrics.get('bon_n', 8)} accuracy")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels):
        vals = [rows[n][key] for n in names]
        ax.bar(names, vals, color=["#4c72b0" if n == "oracle" else "#dd8452" for n in names])
        ax.set_title(title)
        ax.set_ylim(0, 1)
        for i, v in enumerate(vals):
            ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
        if key == "bon_accuracy" and metrics.get("baselines"):
            styles = {"majority_vote": ("--", "majority vote"), "random_pick": (":", "random pick"),
                      "oracle_pick": ("-.", "oracle pick")}
            for b, (ls, label) in styles.items():
                ax.axhline(metrics["baselines"][b], ls=ls, color="gray", label=f"{label} {metrics['baselines'][b]:.2f}")
            ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{metrics['domain']}: PRMs trained on each label source")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_spr_kept(metrics: dict[str, Any], path: Path) -> bool:
    """Share of positive / negative pseudo-labelled steps SPR's filter kept during training."""
    series = {n: r["spr_kept_share"] for n, r in metrics["label_sources"].items() if "spr_kept_share" in r}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, s in series.items():
        ax.plot(s["step"], s["positive"], label=f"{name}: kept share, outcome-correct steps")
        ax.plot(s["step"], s["negative"], label=f"{name}: kept share, outcome-wrong steps")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("share of steps in the loss")
    ax.set_ylim(0, 1.05)
    ax.set_title("SPR dynamic filter (collapse = one curve falls to 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_cost_quality(metrics: dict[str, Any], path: Path) -> None:
    """Step AUROC against the policy tokens each source spent per labelled step."""
    rows = metrics["label_sources"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, r in rows.items():
        x = r["policy_tokens_per_step_label"]
        ax.scatter([x], [r["step_auroc"]], s=40)
        ax.annotate(name, (x, r["step_auroc"]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xlabel("policy tokens per labelled step (beyond sampling)")
    ax.set_ylabel("step AUROC of the trained PRM")
    ax.set_title("label quality against label cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
