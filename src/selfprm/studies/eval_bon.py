"""``selfprm eval bon --prm prm/ --data traj.jsonl [--n N]``: best-of-N accuracy of a saved PRM.

The data is a file of sampled solutions with their outcomes (``selfprm generate``'s output, or any
stepwise JSONL with ``problem_id``, ``completions``, ``final_answer`` and ``outcome``), grouped by
``problem_id``. For each problem the PRM scores the first ``n`` solutions (each solution's step
scores aggregated by ``--aggregation``: ``min`` by default, the weakest step) and picks the highest;
beside it stand majority vote over final answers, the expected accuracy of a random pick and the
oracle pick (right when any solution is), all from :func:`selfprm.eval.metrics.best_of_n`.

Prints one table; with ``--out DIR`` writes ``DIR/bon.json`` (the figures and the config) and
``DIR/bon_scores.jsonl`` (every solution's step scores, its aggregate and whether the PRM picked it).
Problems with fewer than ``n`` solutions are left out and counted.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from selfprm.studies.generate import user_error
from selfprm.types import RecordError, Trajectory

OUT_HELP = "folder for bon.json and bon_scores.jsonl (none: print only)"
WRITES_OWN_CONFIG = True  # the config goes into bon.json, once the inputs are checked
PRESETS: dict = {}


@dataclass
class BestOfNEvalConfig:
    """Best-of-N accuracy of a saved PRM on sampled solutions with outcomes.

    Parameters:
        prm: folder of a saved selfprm PRM (``selfprm train``'s ``--out``).
        data: sampled solutions with ``outcome`` and ``problem_id`` (e.g. from ``selfprm generate``).
        n: solutions per problem to pick from (none: the fewest any problem has).
        aggregation: step scores -> solution score: ``min``, ``product``, ``last`` or ``geomean``.
        batch_size: solutions per scoring batch.
        device: ``auto`` (cuda when there is one), ``cpu`` or ``cuda``.
    """

    prm: str
    data: str
    n: int | None = None
    aggregation: str = "min"
    batch_size: int = 16
    device: str = "auto"

    def __post_init__(self) -> None:
        from selfprm.prm.aggregate import AGGREGATIONS

        if not (Path(self.prm) / "prm_config.json").is_file():
            raise ValueError(f"--prm {self.prm}: not a saved selfprm PRM (no prm_config.json)")
        if not Path(self.data).is_file():
            raise ValueError(f"--data {self.data}: no such file")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"--aggregation {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.n is not None and self.n < 1:
            raise ValueError(f"--n must be at least 1, got {self.n}")


Config = BestOfNEvalConfig


def read_groups(path: str | Path) -> "OrderedDict[str, list[Trajectory]]":
    """Solutions grouped by ``problem_id`` in file order; a record without ``outcome`` or
    ``problem_id`` is an error naming its line."""
    from selfprm.types import iter_jsonl, record_to_trajectory

    groups: OrderedDict[str, list[Trajectory]] = OrderedDict()
    for line, rec in iter_jsonl(path):
        traj, _ = record_to_trajectory(rec, path, line)
        for name in ("problem_id", "outcome"):
            if not isinstance(rec, dict) or rec.get(name) is None:
                raise RecordError(path, line, name, "missing (best-of-N groups by problem and needs each outcome)")
        groups.setdefault(traj.problem.id, []).append(traj)
    return groups


def format_table(res: dict) -> str:
    from selfprm.report.tables import markdown_table

    b = res["best_of_n"]
    rows = [["PRM (" + res["aggregation"] + ")", b["prm"]], ["majority vote", b["majority_vote"]],
            ["random pick", b["random_pick"]], ["oracle pick", b["oracle_pick"]]]
    head = (f"best-of-{res['n']} on {res['problems']} problems ({res['data']}"
            + (f"; {res['skipped_problems']} with fewer than {res['n']} solutions left out" if res["skipped_problems"] else "")
            + ")")
    return head + "\n\n" + markdown_table(["pick", "accuracy"], rows)


def run(config: BestOfNEvalConfig, out: str | Path | None = None, *, progress: bool = True) -> dict:
    """Score the first ``n`` solutions of every problem, pick, compare; returns the figures."""
    import torch

    from selfprm.eval.metrics import best_of_n
    from selfprm.eval.processbench import score_trajectories_sorted
    from selfprm.prm.aggregate import aggregate
    from selfprm.prm.model import ProcessRewardModel
    from selfprm.rundir import config_blob
    from selfprm.types import atomic_write_text, to_strict_json, write_json

    try:
        groups = read_groups(config.data)
    except (RecordError, OSError) as e:
        raise user_error("eval bon", e) from None
    if not groups:
        raise user_error("eval bon", ValueError(f"{config.data}: no solutions"))
    n = config.n if config.n is not None else min(len(g) for g in groups.values())
    kept = {pid: g[:n] for pid, g in groups.items() if len(g) >= n}
    if not kept:
        raise user_error("eval bon", ValueError(f"--n {n}: no problem in {config.data} has that many solutions"))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    prm = ProcessRewardModel.from_pretrained(config.prm, device=device)
    flat = [t for g in kept.values() for t in g]
    step_scores = score_trajectories_sorted(prm, flat, config.batch_size, progress=progress, desc="best-of-n")
    scores = [aggregate(s, config.aggregation) for s in step_scores]
    it = iter(scores)
    triples = [[(t.final_answer, bool(t.outcome), next(it)) for t in g] for g in kept.values()]
    bo = best_of_n(triples, n)
    res = {"prm": str(config.prm), "data": str(config.data), "n": n, "aggregation": config.aggregation,
           "problems": bo.problems, "skipped_problems": len(groups) - len(kept),
           "best_of_n": {"prm": bo.prm, "majority_vote": bo.majority_vote, "random_pick": bo.random_pick,
                         "oracle_pick": bo.oracle_pick},
           "config": config_blob(config)}
    print(format_table(res), flush=True)
    if out:
        from selfprm.search.best_of_n import best_of_n_pick

        folder = Path(out)
        rows, k = [], 0
        for pid, g in kept.items():
            pick = best_of_n_pick([t.final_answer for t in g], scores[k:k + n])
            for j, t in enumerate(g):
                rows.append(json.dumps(to_strict_json({"problem_id": pid, "final_answer": t.final_answer,
                                                       "outcome": t.outcome, "score": scores[k + j],
                                                       "step_scores": step_scores[k + j], "picked": j == pick})))
            k += n
        atomic_write_text(folder / "bon_scores.jsonl", "".join(r + "\n" for r in rows))
        write_json(folder / "bon.json", res)
    return res
