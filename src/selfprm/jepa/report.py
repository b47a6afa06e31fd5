"""Writing the study's results: JSON metrics, a markdown table and an accuracy plot."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_table(metrics: dict) -> str:
    """Methods x labels per intent, intent and slot accuracy (mean over label draws)."""
    methods = metrics["methods"]
    counts = list(next(iter(methods.values())))
    header = "| method | " + " | ".join(f"{k}/intent: intent acc · slot acc" for k in counts) + " |"
    lines = [header, "|---|" + "---|" * len(counts)]
    rows = {**methods, **{f"({name})": m for name, m in metrics.get("reference", {}).items()}}
    for name, per_k in rows.items():
        cells = [f"{per_k[k]['intent_accuracy']:.3f} · {per_k[k]['slot_accuracy']:.3f}" for k in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    zs = ["", "Zero-shot (held-out intents): slot accuracy · text token F1", "",
          "| method | " + " | ".join(counts) + " |", "|---|" + "---|" * len(counts)]
    for name, per_k in rows.items():
        cells = [f"{per_k[k]['zero_shot']['slot_accuracy']:.3f} · {per_k[k]['zero_shot']['text_token_f1']:.3f}" for k in counts]
        zs.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + zs) + "\n"


def plot_accuracy(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: the study runs on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for name, per_k in metrics["methods"].items():
        ks = [int(k) for k in per_k]
        for ax, key in zip(axes, ("intent_accuracy", "slot_accuracy"), strict=True):
            ax.errorbar(ks, [per_k[k][key] for k in per_k], yerr=[per_k[k].get(f"{key}_std", 0.0) for k in per_k],
                        marker="o", capsize=3, label=name)
    ticks = [int(k) for k in next(iter(metrics["methods"].values()))]
    for ax, title in zip(axes, ("intent accuracy", "slot accuracy"), strict=True):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.set_xlabel("labelled recordings per intent")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("UI-JEPA vs scratch vs MAE (synthetic UI recordings)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(metrics: dict, out_dir: Path) -> str:
    """Write jepa_metrics.json, jepa_report.md and jepa_accuracy.png; return the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "jepa_metrics.json").write_text(json.dumps(metrics, indent=2))
    table = markdown_table(metrics)
    seconds = metrics.get("seconds", {})
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
    (out_dir / "jepa_report.md").write_text(
        "# UI-JEPA label-efficiency study\n\n"
        "Intent and slot accuracy on held-out recordings of the seen intents, "
        "mean over label draws. `(random_frozen)` is the untrained encoder under the same probe.\n\n"
        f"{table}\nWall time: {timing}\n"
    )
    plot_accuracy(metrics, out_dir / "jepa_accuracy.png")
    return table
