"""The learning-curve plot and the markdown table of ``selfprm rl``."""

from __future__ import annotations

from typing import Any


def plot_learning_curves(metrics: dict[str, Any], path) -> None:
    """Held-out accuracy against sampled solutions, mean over seeds with a ±1 std band; one panel per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = metrics["methods"]
    doms = sorted({m["domain"] for m in methods.values()})
    fig, axes = plt.subplots(1, len(doms), figsize=(6 * len(doms), 4), squeeze=False)
    for ax, d in zip(axes[0], doms):
        for name, m in methods.items():
            if m["domain"] != d:
                continue
            xs = [p[0] for p in m["accuracy"]]
            ys = [p[1] for p in m["accuracy"]]
            sd = m.get("accuracy_std") or [0.0] * len(ys)
            ax.plot(xs, ys, marker="o", ms=3, label=f"{name} (n={m['seeds']})")
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.15)
        init = metrics.get("initial_accuracy_by_domain", {}).get(d)
        if init is not None:
            ax.axhline(init, color="grey", ls=":", lw=1, label="SFT start")
        ax.set_title(f"GRPO variants on {d}")
        ax.set_xlabel("sampled solutions")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(metrics: dict[str, Any]) -> str:
    """One row per method: final accuracy (mean ± std over seeds) and its gain over the baseline of its domain."""
    from selfprm.report.tables import cell, markdown_table as table
    from selfprm.search.curves import at_equal_tokens

    methods = metrics["methods"]
    base = {"arith": methods.get("outcome"), "tools": methods.get("outcome_tools")}
    init = metrics.get("initial_accuracy_by_domain", {})
    rows = []
    for name, m in methods.items():
        b = base.get(m["domain"])
        if b is None or b is m:
            vs = "baseline" if b is m else "—"
        else:
            diff = m["final_accuracy"] - b["final_accuracy"]
            # "beats" only when the gap is larger than the seeds' spread of both
            noise = max(m.get("final_accuracy_std", 0.0), b.get("final_accuracy_std", 0.0))
            if min(m["seeds"], b["seeds"]) < 2:
                verdict = "one seed: no verdict"
            else:
                verdict = "better" if diff > noise else ("worse" if diff < -noise else "tie")
            vs = f"{diff:+.3f} ({verdict})"
        rows.append([name, m["domain"], str(m["seeds"]), str(m["samples"]), init.get(m["domain"]),
                     f"{m['final_accuracy']:.3f} ± {m.get('final_accuracy_std', 0.0):.3f}", vs])
    lines = [table(["method", "domain", "seeds", "samples", "SFT start", "final accuracy", "vs outcome-only GRPO"], rows)]
    s = metrics.get("search")
    if s:
        search_rows = [[key, f"N={n}", cell(tok, ".0f"), acc]
                       for key in ("majority_vote", "best_of_n", "weighted_majority") for tok, acc, n in s.get(key, [])]
        search_rows += [["beam", f"{c['beam_width']}x{c['expansions_per_beam']} lookahead {c['lookahead']}",
                         cell(tok, ".0f"), acc] for tok, acc, c in s.get("beam", [])]
        lines += ["", f"Search on {s['problems']} problems (T={s.get('temperature')}, aggregation {s['aggregation']}):", "",
                  table(["method", "setting", "policy tokens / problem", "accuracy"], search_rows)]
        beam_rows = [[f"{c['beam_width']}x{c['expansions_per_beam']}+{c['lookahead']}", cell(tok, ".0f"), acc,
                      *(at_equal_tokens(s, k, tok) for k in ("majority_vote", "best_of_n", "weighted_majority"))]
                     for tok, acc, c in s.get("beam", [])]
        if beam_rows:
            lines += ["", "Beam search beside the sampling methods at the same tokens (interpolated in log tokens):", "",
                      table(["beam", "tokens", "beam acc.", "majority vote", "best-of-N", "weighted majority"], beam_rows)]
    return "\n".join(lines) + "\n"
