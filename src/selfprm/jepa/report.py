"""Writing the study's results: JSON metrics, a markdown table and an accuracy plot."""

from __future__ import annotations

from pathlib import Path

from selfprm.report.tables import markdown_table as _table
from selfprm.types import atomic_write_text, write_json


def markdown_table(metrics: dict) -> str:
    """Methods x labels per intent, intent and slot accuracy (mean over label draws)."""
    methods = metrics["methods"]
    counts = list(next(iter(methods.values())))
    rows = {**methods, **{f"({name})": m for name, m in metrics.get("reference", {}).items()}}
    seen = _table(["method", *(f"{k}/intent: intent acc · slot acc" for k in counts)],
                  [[name, *(f"{per_k[k]['intent_accuracy']:.3f} · {per_k[k]['slot_accuracy']:.3f}" for k in counts)]
                   for name, per_k in rows.items()])
    zero_shot = _table(["method", *counts],
                       [[name, *(f"{per_k[k]['zero_shot']['slot_accuracy']:.3f} · "
                                 f"{per_k[k]['zero_shot']['text_token_f1']:.3f}" for k in counts)]
                        for name, per_k in rows.items()])
    return f"{seen}\n\nZero-shot (held-out intents): slot accuracy · text token F1\n\n{zero_shot}\n"


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
    write_json(out_dir / "jepa_metrics.json", metrics)
    table = markdown_table(metrics)
    seconds = metrics.get("seconds", {})
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
    atomic_write_text(out_dir / "jepa_report.md",
        "# UI-JEPA label-efficiency study\n\n"
        "Intent and slot accuracy on held-out recordings of the seen intents, "
        "mean over label draws. `(random_frozen)` is the untrained encoder under the same probe.\n\n"
        f"{table}\nWall time: {timing}\n"
    )
    plot_accuracy(metrics, out_dir / "jepa_accuracy.png")
    return table
