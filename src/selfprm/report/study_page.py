"""The study's page: one self-contained HTML file rendered from ``study.json`` alone.

Plots are PNGs embedded as base64 ``data:`` URIs, the CSS is inline, there is no script and no
link to anything outside the file, so the page opens offline and can be mailed as one file.
:func:`render_page` is a pure function of the JSON: every number and figure on the page comes
from it, nothing is typed in by hand.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfprm.types import atomic_write_text  # noqa: E402

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.answer { background: #f3f6fa; border-left: 4px solid #4c72b0; padding: .8em 1em; line-height: 1.5; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; } th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; }
.note { color: #666; font-size: .9em; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _num(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return html.escape(str(x))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_num(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _mean(xs: list[Any]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def _sd(xs: list[Any]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _f(x: Any) -> float:
    """A JSON number for plotting: null (an undefined metric) becomes NaN, which is not drawn."""
    return math.nan if x is None else float(x)


def _keys(cells: list[dict]) -> list[str]:
    return list(dict.fromkeys(c["domain_key"] for c in cells))


def _sources(cells: list[dict]) -> list[str]:
    return list(dict.fromkeys(c["source"] for c in cells))


def _curves(cells: list[dict], key: str, metric: str) -> dict[str, tuple[list[int], list[float], list[float]]]:
    out = {}
    for s in _sources(cells):
        mine = [c for c in cells if c["domain_key"] == key and c["source"] == s]
        ns = sorted({c["trajectories"] for c in mine})
        vals = [[c[metric] for c in mine if c["trajectories"] == n] for n in ns]
        if ns:
            out[s] = (ns, [_mean(v) for v in vals], [_sd(v) for v in vals])
    return out


def _panels(keys: list[str]) -> tuple[Any, list[tuple[Any, str]]]:
    """One panel per domain key side by side (one empty "(none)" panel when there is none)."""
    keys = list(keys) or ["(none)"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.3), squeeze=False)
    return fig, list(zip(axes[0], keys))


def _axes(ax, title: str, xlabel: str, ylabel: str, logx: bool = False) -> None:
    """A panel's title, axis labels and legend (a log x axis where N or a cost spans decades)."""
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def fig_label_quality(study: dict) -> str:
    """Label accuracy against the oracle per policy token spent on a step label."""
    q = study.get("label_quality", [])
    keys = list(dict.fromkeys(r["domain_key"] for r in q))
    fig, panels = _panels(keys)
    for ax, key in panels:
        for s in dict.fromkeys(r["source"] for r in q if r["domain_key"] == key):
            rows = [r for r in q if r["domain_key"] == key and r["source"] == s]
            ax.scatter([r["policy_tokens_per_step_label"] + 1 for r in rows], [_f(r["label_accuracy"]) for r in rows],
                       label=s, s=18)
        _axes(ax, key, "policy tokens per step label + 1", "label accuracy vs oracle", logx=True)
    fig.tight_layout()
    return _png(fig)


def fig_curves(study: dict, metric: str) -> str:
    """``metric`` against training trajectories per source (mean ± sd over seeds), one panel per domain."""
    cells = study["cells"]
    keys = _keys(cells)
    fig, panels = _panels(keys)
    for ax, key in panels:
        for s, (ns, m, sd) in _curves(cells, key, metric).items():
            ax.errorbar(ns, m, yerr=sd, marker="o", capsize=3, label=s, lw=2.5 if s == "oracle" else 1.2)
        _axes(ax, key, "training trajectories", metric.replace("_", " "), logx=True)
    fig.tight_layout()
    return _png(fig)


def fig_ratios(study: dict) -> str:
    """Replacement ratio (with its band) against the oracle's N, per source, one panel per domain."""
    rr = study["replacement_ratio"]
    keys = list(rr)
    fig, panels = _panels(keys)
    for ax, key in panels:
        for s, by_n in rr.get(key, {}).items():
            pts = [(int(n), r) for n, r in sorted(by_n.items(), key=lambda kv: int(kv[0])) if r["ratio"] is not None]
            if pts:
                ns = [n for n, _ in pts]
                ax.plot(ns, [r["ratio"] for _, r in pts], marker="o", label=s)
                lo = [r["lo"] if r["lo"] is not None else r["ratio"] for _, r in pts]
                hi = [r["hi"] if r["hi"] is not None else r["ratio"] for _, r in pts]
                ax.fill_between(ns, lo, hi, alpha=0.2)
            missed = [int(n) for n, r in by_n.items() if r["ratio"] is None]
            if missed:
                ax.scatter(missed, [1.0] * len(missed), marker="x", color="gray", label=f"{s}: never")
        ax.axhline(1.0, ls=":", color="gray")
        _axes(ax, key, "oracle-label trajectories N", "self-labelled trajectories / N", logx=True)
    fig.tight_layout()
    return _png(fig)


def fig_crisp_fuzzy(study: dict) -> str:
    """Each source's step AUROC and first-error F1 at its largest N against the judge's error rate."""
    noise = study["failures"].get("judge_noise", [])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, metric in zip(axes, ("step_auroc", "first_error_f1")):
        for s in dict.fromkeys(r["source"] for r in noise):
            rows = sorted([r for r in noise if r["source"] == s and r["metric"] == metric],
                          key=lambda r: r["judge_error"])
            if rows:
                xs = [0.0] + [r["judge_error"] for r in rows]
                ys = [_f(rows[0]["crisp"])] + [_f(r["fuzzy"]) for r in rows]
                es = [_f(rows[0]["crisp_sd"])] + [_f(r["fuzzy_sd"]) for r in rows]
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s)
        ax.set_xlabel("judge error rate (0 = crisp arith)")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def fig_rankings(study: dict) -> str:
    """First-error F1 against best-of-N per source, one panel per domain, tau in the title."""
    ranks = study["rankings"]
    keys = list(ranks)
    fig, panels = _panels(keys)
    for ax, key in panels:
        r = ranks.get(key)
        if r:
            for s in r["first_error_f1"]:
                xy = (_f(r["first_error_f1"][s]), _f(r["bon_accuracy"][s]))
                if not any(math.isnan(v) for v in xy):
                    ax.scatter(*xy)
                    ax.annotate(s, xy, fontsize=7)
            ax.set_title(f"{key}: tau = {_num(r['tau'], 2)}", fontsize=9)
        ax.set_xlabel("first-error F1")
        ax.set_ylabel("best-of-N accuracy")
    fig.tight_layout()
    return _png(fig)


def fig_calibration(study: dict) -> str:
    """Reliability of step scores (bins pooled over seeds) at each domain's largest N."""
    cells = study["cells"]
    keys = _keys(cells)
    fig, panels = _panels(keys)
    for ax, key in panels:
        mine = [c for c in cells if c["domain_key"] == key]
        n = max(c["trajectories"] for c in mine)
        for s in _sources(mine):
            bins = [b for c in mine if c["source"] == s and c["trajectories"] == n for b in c.get("reliability", [])]
            if bins:
                bins.sort()
                ax.plot([b[0] for b in bins], [b[1] for b in bins], marker=".", ls="", label=s)
        ax.plot([0, 1], [0, 1], ls=":", color="gray")
        _axes(ax, f"{key} (N={n})", "step score", "share of steps sound")
    fig.tight_layout()
    return _png(fig)


def _ratio_table(study: dict) -> str:
    rows = []
    for key, by_src in study["replacement_ratio"].items():
        for s, by_n in by_src.items():
            for n, r in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                rows.append([key, s, int(n), r["ratio"] if r["ratio"] is not None else "never",
                             r["lo"], r["hi"], r.get("target"), r.get("best"), r.get("policy_tokens"),
                             r.get("token_passes")])
    return _table(["domain", "source", "oracle N", "ratio", "lo", "hi", "oracle AUROC", "best AUROC",
                   "policy tokens", "token passes"], rows)


def _failures(study: dict) -> str:
    f = study["failures"]
    parts = []
    col = f.get("collapses", [])
    parts.append(f"<h3>Collapses</h3><p>{len(col)} of {len(study['cells'])} PRMs collapsed (step AUROC ≤ 0.55, "
                 "or every test step on one side of the threshold).</p>")
    if col:
        parts.append(_table(["domain", "source", "N", "seed", "step AUROC", "share predicted unsound"],
                            [[c["domain_key"], c["source"], c["trajectories"], c["seed"], c["step_auroc"],
                              c["predicted_unsound_share"]] for c in col[:30]]))
    one_sided = f.get("one_sided_pools", [])
    if one_sided:
        parts.append("<h3>One-sided pools</h3><p>These training pools hold almost no flawed (or no sound) "
                     "trajectories, so their PRMs had little to learn and their step metrics little to measure; "
                     "read their cells with that in mind:</p>")
        parts.append(_table(["pool", "trajectories", "flawed"], [[p["pool"], p["trajectories"], p["flawed"]]
                                                                for p in one_sided]))
    pools = f.get("pools", {})
    if pools:
        parts.append("<h3>Lucky answers and recovered errors</h3><p>Right answers with a wrong step are "
                     "<em>lucky</em> (no redo line) or <em>recovered</em> (a redo line fixed the step). Share of "
                     "each training pool:</p>")
        parts.append(_table(["pool", "trajectories", "wrong answers", "flawed", "lucky", "recovered"],
                            [[k, p["trajectories"], p["wrong_answers"], p["flawed"], p["lucky"], p["recovered"]]
                             for k, p in pools.items()]))
    for what in ("lucky", "recovered"):
        rows = [[k, v["count"], v["flagged"], v["sd"]] for k, v in f.get("flagged", {}).get(what, {}).items()]
        if rows:
            parts.append(f"<p>Share of {what} test solutions whose first error the PRM flags (mean, sd over cells):</p>")
            parts.append(_table(["domain/source", f"{what} solutions", "flagged", "sd"], rows))
    noise = f.get("judge_noise", [])
    if noise:
        parts.append("<h3>Judge noise</h3>")
        parts.append(_table(["domain", "source", "metric", "N", "crisp", "sd", "fuzzy", "sd", "drop"],
                            [[r["domain_key"], r["source"], r["metric"], r["trajectories"], r["crisp"], r["crisp_sd"],
                              r["fuzzy"], r["fuzzy_sd"], r["drop"]] for r in noise]))
    return "".join(parts)


def _real(study: dict) -> str:
    real = study.get("real", {})
    if "skipped" in real:
        return f"<p class='note'>Not run: {html.escape(real['skipped'])}</p>"
    gap = lambda r, k: r.get("gap_vs_human", {}).get(k)  # noqa: E731
    rows = [[s, r["f1"], r["lo"], r["hi"], gap(r, "f1"), gap(r, "lo"), gap(r, "hi")]
            for s, r in real.get("sources", {}).items()]
    out = (f"<p>ProcessBench average F1 over {real.get('seeds')} seeds, 95 % bootstrap interval over seeds, and the "
           "gap to the human-label PRM paired by seed:</p>")
    out += _table(["source", "F1", "lo", "hi", "gap vs human", "lo", "hi"], rows)
    pb = real.get("prmbench", {})
    if "skipped" in pb:
        out += f"<p class='note'>PRMBench categories not run: {html.escape(pb['skipped'])}</p>"
    elif pb:
        cats = [c for c in next(iter(pb.values())) if c != "overall"] + ["overall"]
        out += ("<h3>PRMBench error categories</h3><p>PRMScore (mean of the F1 of sound and of erroneous steps at "
                "a 0.5 step threshold, PRMBench's metric) per error category, mean over seeds with its 95 % "
                "bootstrap interval; records per category in the header.</p>")
        recs = next(iter(pb.values()))
        out += _table(["source"] + [f"{c} ({recs[c]['records']})" for c in cats],
                      [[s] + [_band(r[c]["prmscore"]) for c in cats] for s, r in pb.items()])
        out += "<p>Step AUROC per category (threshold-free):</p>"
        out += _table(["source"] + cats, [[s] + [_band(r[c]["step_auroc"]) for c in cats] for s, r in pb.items()])
    return out


def _band(b: dict) -> str:
    """``mean [lo, hi]``, or n/a where the metric was undefined."""
    if b.get("mean") is None or (isinstance(b["mean"], float) and math.isnan(b["mean"])):
        return "n/a"
    return f"{b['mean']:.2f} [{b['lo']:.2f}, {b['hi']:.2f}]"


def render_page(study_json: dict[str, Any], out_html: str | Path) -> Path:
    """Write the page for ``study_json`` (the content of ``study.json``) to ``out_html``."""
    s = study_json
    ranks = s["rankings"]
    sections = [
        "<h1>Can self-generated step labels replace exact ones?</h1>",
        f"<div class='answer'>{html.escape(s['answer'])}</div>",
        "<h2>Label quality per token</h2>", _img(fig_label_quality(s), "label quality per token"),
        "<h2>PRM quality against training trajectories</h2>",
        _img(fig_curves(s, "step_auroc"), "step AUROC curves"),
        _img(fig_curves(s, "first_error_f1"), "first-error F1 curves"),
        "<h2>Replacement ratio</h2><p>Self-labelled trajectories needed to match the step AUROC of the oracle-label "
        "PRM on N trajectories, over N; band: 2.5–97.5 % over a bootstrap of seeds.</p>",
        _img(fig_ratios(s), "replacement ratio"), _ratio_table(s),
        "<h2>Crisp vs fuzzy outcome</h2>", _img(fig_crisp_fuzzy(s), "crisp vs fuzzy"),
        "<h2>Rankings: best-of-N vs first-error F1</h2>", _img(fig_rankings(s), "rankings"),
        _table(["domain", "N", "by first-error F1", "by best-of-N", "Kendall tau"],
               [[k, r["trajectories"], ", ".join(r["by_first_error_f1"]), ", ".join(r["by_bon"]), r["tau"]]
                for k, r in ranks.items()]),
        "<h2>Calibration</h2><p>Reliability of step scores against the exact labels; ECE per source at the "
        "largest N (mean over seeds):</p>", _img(fig_calibration(s), "calibration"),
        _table(["domain", "source", "ECE"],
               [[k, src, _mean([c["step_ece"] for c in s["cells"] if c["domain_key"] == k and c["source"] == src
                                and c["trajectories"] == max(x["trajectories"] for x in s["cells"]
                                                             if x["domain_key"] == k)])]
                for k in _keys(s["cells"]) for src in _sources(s["cells"])]),
        "<h2>Where it fails</h2>", _failures(s),
        "<h2>Real text</h2>", _real(s),
        "<h2>Deviations</h2><ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in s.get("deviations", [])) + "</ul>",
    ]
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>selfprm study</title>"
           f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")
    out = Path(out_html)
    atomic_write_text(out, doc)
    return out
