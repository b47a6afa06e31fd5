import argparse
import json
import math
from dataclasses import dataclass

import pytest

from selfprm.domains.arith import ArithConfig
from selfprm.cli import add_study_arguments, config_from_args
from selfprm.labels.base import LABEL_SOURCES
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.studies import label_efficiency as study
from selfprm.studies.label_efficiency import Budgeted, LabelEfficiencyConfig, omega_vs_mc, score_labels
from selfprm.studies.label_efficiency import run as run_label_efficiency
from selfprm.types import StepLabels


def test_score_labels_by_hand(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")  # first error -1
    bad = domain.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")  # first error 1
    labels = [StepLabels([0.9, 0.8, 0.7], "x", soft=True), StepLabels([0.9, 0.6, 0.1], "x", soft=True)]
    s = score_labels([good, bad], labels)
    # first errors: -1 == -1, 2 != 1 -> 1/2;  steps: sound 0.9 .8 .7 .9 vs unsound .6 .1 -> every pair ranked right
    assert s == {"first_error_accuracy": 0.5, "step_auroc": 1.0, "coverage": 1.0,
                 "first_error_accuracy_right_answers": 1.0, "first_error_accuracy_wrong_answers": 0.0}
    # a zero-weight (dropped) trajectory is left out and coverage says so
    dropped = StepLabels([0.9, 0.6, 0.1], "x", soft=True, weights=[0.0] * 3)
    s = score_labels([good, bad], [labels[0], dropped])
    assert s["first_error_accuracy"] == 1.0 and s["coverage"] == 0.5 and math.isnan(s["step_auroc"])


def test_omega_vs_mc_criterion_by_hand():
    row = lambda k, acc, tok: {"budget": {"n_rollouts": k}, "first_error_accuracy": acc, "policy_tokens": tok}  # noqa: E731
    res = {"mc": [row(2, 0.60, 1000), row(4, 0.70, 2000)], "mc_hard": [row(2, 0.65, 1000), row(4, 0.66, 2000)],
           "omega": [row(2, 0.64, 400), row(4, 0.67, 1100)]}
    [a, b] = omega_vs_mc(res)
    assert a["mc_accuracy"] == 0.65 and a["token_ratio"] == 2.5 and a["holds"]  # 0.01 below, 2.5x fewer
    assert b["mc_accuracy"] == 0.70 and not b["holds"]  # 0.03 below and only 1.8x fewer


def test_simulated_study_writes_json_and_png(tmp_path):
    cfg = LabelEfficiencyConfig(policy="simulated", n_problems=12, samples_per_problem=2, entries={
        "outcome": Budgeted("outcome", [{}]),
        "mc": Budgeted("mc", [{"n_rollouts": 2}]),
        "mc_hard": Budgeted("mc", [{"n_rollouts": 2}], derive="hard"),
        "omega": Budgeted("omega", [{"n_rollouts": 2}]),
        "tree": Budgeted("tree", [{"m_trees": 2, "l_rounds": 1}]),
        "implicit": Budgeted("implicit", [{"train_steps": 1}], needs_model=True),
    })
    rep = run_label_efficiency(cfg, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "label_efficiency.json").read_text())
    assert on_disk["sources"].keys() == {"outcome", "mc", "mc_hard", "omega", "tree"}
    assert "implicit" in on_disk["skipped"] and "simulated" in on_disk["policy"]["kind"]
    for name, rows in on_disk["sources"].items():
        for r in rows:
            assert {"policy_tokens", "rollouts", "first_error_accuracy", "step_auroc"} <= r.keys()
    assert on_disk["sources"]["outcome"][0]["policy_tokens"] == 0
    # mc_hard reads mc's rollouts: the same cost
    assert on_disk["sources"]["mc_hard"][0]["policy_tokens"] == on_disk["sources"]["mc"][0]["policy_tokens"] > 0
    assert on_disk["pool"]["steps_per_trajectory"] >= 8  # the study's default arith config: 8-10 operations
    assert len(rep["omega_vs_mc"]) == 1
    assert (tmp_path / "label_efficiency.png").stat().st_size > 1000


def test_cli_arguments():
    ap = argparse.ArgumentParser()
    add_study_arguments(ap, study)
    args = ap.parse_args([])
    assert args.out == "runs/label_efficiency" and args.preset == "full"
    assert config_from_args(study, args) == LabelEfficiencyConfig()
    quick = config_from_args(study, ap.parse_args(["--quick", "--seed", "3"]))
    assert quick.seed == 3 and quick.policy == "simulated" and quick.entries["mc"].budgets == [
        {"n_rollouts": k} for k in (1, 2, 4)]
    assert config_from_args(study, ap.parse_args(["--quick", "--policy", "hf"])).policy == "hf"
    sized = config_from_args(study, ap.parse_args(["--n-problems", "40", "--samples-per-problem", "3"]))
    assert (sized.n_problems, sized.samples_per_problem) == (40, 3)
    with pytest.raises(ValueError, match="policy"):
        config_from_args(study, ap.parse_args(["--policy", "nope"]))


@dataclass
class _Broken:
    """A source that raises: the study must fail on it, not record it as done."""

    name: str = "broken"
    prm_loss: str = "bce"

    def label(self, trajectories, policy=None, *, progress=False):
        raise RuntimeError("rollout server went away")


@pytest.fixture
def broken_source():
    LABEL_SOURCES.register("broken", _Broken)
    yield "broken"
    LABEL_SOURCES._entries.pop("broken")


def test_a_failing_source_fails_the_study_and_keeps_the_finished_cells(tmp_path, broken_source):
    cfg = LabelEfficiencyConfig(policy="simulated", n_problems=6, samples_per_problem=2, entries={
        "outcome": Budgeted("outcome", [{}]), "broken": Budgeted("broken", [{}]), "mc": Budgeted("mc", [{"n_rollouts": 1}])})
    with pytest.raises(RuntimeError, match="broken.*rollout server went away"):
        run_label_efficiency(cfg, tmp_path, progress=False)
    assert not (tmp_path / "label_efficiency.json").exists()  # no report that looks complete
    done = {p.parent.parent.name for p in tmp_path.glob("cells/*/*/.stage-done.json")}
    assert done == {"outcome", "mc"}  # the cells before and after the failure ran and are kept
    # a rerun without the broken source finishes from the kept cells, relabelling nothing
    del cfg.entries["broken"]
    marks = {p: p.stat().st_mtime_ns for p in tmp_path.glob("cells/*/*/.stage-done.json")}
    rep = run_label_efficiency(cfg, tmp_path, progress=False)
    assert set(rep["sources"]) == {"outcome", "mc"} and not rep.get("failed")
    assert {p: p.stat().st_mtime_ns for p in marks} == marks


@pytest.mark.slow
def test_label_efficiency_end_to_end_with_the_tiny_hf_policy(tmp_path):
    cfg = LabelEfficiencyConfig(
        policy="hf", arith=ArithConfig(min_ops=2, max_ops=3), lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=96),
        sft=SFTConfig(steps=20, warmup=2), n_sft_problems=200, max_new_tokens=30, n_problems=3, samples_per_problem=2,
        entries={
            "mc": Budgeted("mc", [{"n_rollouts": 1}]),
            "omega": Budgeted("omega", [{"n_rollouts": 1}]),
            "mcts": Budgeted("mcts", [{"n_simulations": 2}]),
            "tree": Budgeted("tree", [{"m_trees": 2, "l_rounds": 1}]),
            "consensus": Budgeted("consensus", [{"primary_kwargs": {"n_rollouts": 1}, "judge_kwargs": {"epochs": 1}}]),
            "implicit": Budgeted("implicit", [{"train_steps": 2}], needs_model=True),
        })
    rep = run_label_efficiency(cfg, tmp_path, progress=False)
    assert set(rep["sources"]) == {"mc", "omega", "mcts", "tree", "consensus", "implicit"}
    assert rep["sources"]["implicit"][0]["policy_tokens"] == 0
    assert rep["sources"]["mc"][0]["policy_tokens"] > 0
    assert (tmp_path / "policy" / "model" / "config.json").exists()  # the policy is cached under DIR
    assert (tmp_path / "label_efficiency.png").exists()
