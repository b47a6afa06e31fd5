"""Writing the study's results: JSON metrics, markdown tables and accuracy plots, per task."""

from __future__ import annotations

from pathlib import Path

from selfprm.report.tables import markdown_table as _table
from selfprm.types import atomic_write_text, write_json


def _pm(cell: dict, key: str) -> str:
    return f"{cell[key]:.3f} ± {cell.get(f'{key}_sd', 0.0):.3f}"


def task_tables(result: dict) -> str:
    """Methods x labels per intent (mean ± sd over seeds), then the curve and collapse checks."""
    methods = result["methods"]
    counts = list(next(iter(methods.values())))
    rows = {**methods, **{f"({name})": m for name, m in result.get("reference", {}).items()}}
    parts = [
        "Seen intents: intent accuracy · slot accuracy (mean ± sd over seeds)\n",
        _table(["method", *(f"{k}/intent" for k in counts)],
               [[name, *(f"{_pm(per_k[k], 'intent_accuracy')} · {_pm(per_k[k], 'slot_accuracy')}" for k in counts)]
                for name, per_k in rows.items()]),
    ]
    if all("zero_shot" in per_k[k] for per_k in rows.values() for k in counts):
        parts += ["\nHeld-out intents (zero-shot): slot accuracy · text token F1\n",
                  _table(["method", *(f"{k}/intent" for k in counts)],
                         [[name, *(f"{_pm(per_k[k]['zero_shot'], 'slot_accuracy')} · "
                                   f"{_pm(per_k[k]['zero_shot'], 'text_token_f1')}" for k in counts)]
                          for name, per_k in rows.items()])]
    else:
        parts.append("\nNo held-out intents in this task.\n")
    one_class = [f"{name} at {k}/intent ({per_k[k]['slot_one_class']:.0%} of seeds)" for name, per_k in rows.items()
                 for k in counts if per_k[k].get("slot_one_class", 0.0) > 0]
    if one_class:
        parts.append("\nDegenerate seen-intent slot heads (one predicted value for a slot whose true values "
                     "vary, so their slot accuracy is that value's share): " + "; ".join(one_class) + "\n")
    curve_rows = []
    for name, per_seed in result.get("curve", {}).items():
        for seed_i, points in enumerate(per_seed):
            history = result["pretraining"][name][seed_i]["history"]
            for point in points:
                # The collapse record nearest (at or before) the snapshot's step.
                logged = [h for h in history if h["step"] <= point["step"]] or history[:1]
                h = logged[-1] if logged else {}
                curve_rows.append([name, str(result["pretraining"][name][seed_i]["seed"]), str(point["step"]),
                                   f"{point.get('intent_accuracy', float('nan')):.3f}",
                                   f"{point['slot_accuracy']:.3f}",
                                   f"{h.get('embedding_std', float('nan')):.3f}",
                                   f"{h.get('effective_rank', float('nan')):.2f}"])
    if curve_rows:
        k = result["curve"][next(iter(result["curve"]))][0][0]["labels_per_intent"]
        parts += [f"\nProbe accuracy ({k} labels per intent) against pretraining steps, with the collapse checks "
                  "logged nearest before that step (clip-embedding std per dimension, effective rank)\n",
                  _table(["method", "seed", "step", "intent acc", "slot acc", "emb std", "eff. rank"], curve_rows)]
    return "\n".join(parts) + "\n"


def markdown_table(metrics: dict) -> str:
    return "\n".join(f"## Task `{task}`\n\n{task_tables(result)}" for task, result in metrics["tasks"].items())


def plot_accuracy(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: the study runs on servers and in CI
    import matplotlib.pyplot as plt

    tasks = list(metrics["tasks"])
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.4 * len(tasks)), sharex=True, squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        methods = metrics["tasks"][task]["methods"]
        for name, per_k in methods.items():
            ks = [int(k) for k in per_k]
            for ax, key in zip(row, ("intent_accuracy", "slot_accuracy"), strict=True):
                ax.errorbar(ks, [per_k[k][key] for k in per_k], yerr=[per_k[k].get(f"{key}_sd", 0.0) for k in per_k],
                            marker="o", capsize=3, label=name)
        ticks = [int(k) for k in next(iter(methods.values()))]
        for ax, title in zip(row, ("intent accuracy", "slot accuracy"), strict=True):
            ax.set_xscale("log")
            ax.set_xticks(ticks, [str(k) for k in ticks])
            ax.set_title(f"{task}: {title}")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        row[0].legend()
    for ax in axes[-1]:
        ax.set_xlabel("labelled recordings per intent")
    fig.suptitle("UI-JEPA vs scratch vs MAE (synthetic UI recordings; mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(metrics: dict, out_dir: Path) -> str:
    """Write jepa_metrics.json, jepa_report.md and jepa_accuracy.png; return the tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "jepa_metrics.json", metrics)
    table = markdown_table(metrics)
    seconds = metrics.get("seconds", {})
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
    atomic_write_text(out_dir / "jepa_report.md",
        "# UI-JEPA label-efficiency study\n\n"
        f"Seeds: {metrics.get('seeds')}. Accuracy on held-out recordings, mean ± sd over seeds. "
        "`(random_frozen)` is the untrained encoder under the same attentive probe.\n\n"
        f"{table}\nWall time: {timing}\n"
    )
    plot_accuracy(metrics, out_dir / "jepa_accuracy.png")
    return table
