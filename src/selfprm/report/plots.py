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
        sds = [rows[n].get("sd", {}).get(key, 0.0) for n in names]
        ax.bar(names, vals, yerr=sds, capsize=3, color=["#4c72b0" if n == "oracle" else "#dd8452" for n in names])
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
    # one curve pair per row and seed (``kept_share`` is a list over seeds)
    series = {n: r["kept_share"] for n, r in metrics["label_sources"].items() if r.get("kept_share")}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, per_seed in series.items():
        for k, s in enumerate(per_seed):
            if not s:
                continue
            tag = f"{name} seed {k}" if len(per_seed) > 1 else name
            ax.plot(s["step"], s["positive"], color="C0", alpha=0.8, label=f"{tag}: outcome-correct steps")
            ax.plot(s["step"], s["negative"], color="C3", alpha=0.8, label=f"{tag}: outcome-wrong steps")
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
    """Step AUROC against each row's cost: policy tokens generated per labelled step (left) and
    every token position through any model, labelling and PRM training (right)."""
    rows = metrics["label_sources"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (xlabel, getx) in zip(axes, (
            ("policy tokens generated per labelled step", lambda r: r["policy_tokens_per_step_label"]),
            ("token passes through any model (labels + PRM training)", lambda r: r["cost"]["token_passes"]))):
        for name, r in rows.items():
            x, y = getx(r), r["step_auroc"]
            ax.errorbar([x], [y], yerr=[r.get("sd", {}).get("step_auroc", 0.0)], fmt="o", capsize=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("step AUROC of the trained PRM")
    axes[1].set_xscale("log")
    fig.suptitle("label quality against its cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
