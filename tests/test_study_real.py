"""``selfprm study real`` on a tiny subset: the data it trains on never meets what it evaluates."""

import argparse
import json

import pytest

from selfprm.data import key_of
from selfprm.cli import add_study_arguments, config_from_args
from selfprm.labels.human import first_error_labels as human_labels
from selfprm.studies import real
from selfprm.studies.real import PRESETS, RealStudyConfig, prepare_data
from selfprm.studies.real import run as run_study


def tiny_config(**kw):
    return RealStudyConfig(eval_per_split=6, train_examples=16, epochs=1, bo4_problems=4, max_length_train=96,
                           max_length_eval=192, perturb_variants=1, batch_size=8, prmbench_per_category=2, **kw)


def test_prmbench_categories_by_hand():
    from selfprm.types import Problem, Trajectory

    def traj(cat, labels):
        return Trajectory(problem=Problem(id=cat, prompt="q"), steps=["s"] * len(labels), oracle_labels=labels,
                          meta={"classification": cat})

    trajs = [traj("a", [True, True, False]), traj("a", [True, False]), traj("b", [True, True])]
    # a: sound steps 0.9, 0.2 (one missed), 0.8; erroneous 0.1, 0.7 (one missed); b: both sound, both kept
    scores = [[0.9, 0.2, 0.1], [0.8, 0.7], [0.6, 0.95]]
    out = real.prmbench_categories(scores, trajs, threshold=0.5)
    a = out["a"]  # TP 2, FN 1, TN 1, FP 1: F1 = 2/3 for sound steps, 1/2 for erroneous ones
    assert a["f1"] == pytest.approx(2 / 3) and a["negative_f1"] == pytest.approx(0.5)
    assert a["prmscore"] == pytest.approx((2 / 3 + 0.5) / 2) and a["records"] == 2 and a["steps"] == 5
    assert a["step_auroc"] == pytest.approx(5 / 6)  # 3 sound x 2 erroneous pairs: only 0.2 < 0.7 is misordered
    assert out["b"]["negative_f1"] is None and out["b"]["prmscore"] is None  # no erroneous step: undefined
    # a PRM that calls every step sound: the erroneous class scores 0, as PRMBench's code has it (not undefined)
    one = real.prmbench_categories([[0.9, 0.9, 0.9], [0.9, 0.9], [0.9, 0.9]], trajs)["a"]
    assert one["negative_f1"] == 0.0 and one["f1"] == pytest.approx(2 * 0.6 * 1 / 1.6)
    assert one["prmscore"] == pytest.approx(0.75 / 2)
    assert out["overall"]["records"] == 3 and out["overall"]["steps"] == 7
    # a NaN score (a step cut by truncation) is left out
    assert real.prmbench_categories([[float("nan"), 0.2, 0.1], [0.8, 0.7], [0.6, 0.95]], trajs)["a"]["steps"] == 4


@pytest.mark.needs_data
def test_prmbench_on_the_shared_subset():
    trajs = real.prmbench_sample(RealStudyConfig(prmbench_per_category=5, seed=1))
    cats = {}
    for t in trajs:
        cats[t.meta["classification"]] = cats.get(t.meta["classification"], 0) + 1
    assert len(cats) == 9 and max(cats.values()) == 5  # eight error kinds and the multi-solution items
    assert len(real.prmbench_sample(RealStudyConfig())) == 394
    # scores equal to the labels get every category right; flipped ones get every category wrong
    exact = real.prmbench_categories([[float(y) for y in t.oracle_labels] for t in trajs], trajs)
    flipped = real.prmbench_categories([[1.0 - y for y in t.oracle_labels] for t in trajs], trajs)
    for cat, row in exact.items():
        if row["negative_f1"] is not None:  # a category with erroneous steps
            assert row["prmscore"] == 1.0 and row["step_auroc"] == 1.0, cat
            assert flipped[cat]["prmscore"] == 0.0 and flipped[cat]["step_auroc"] == 0.0, cat
    assert exact["multi_solutions"]["negative_f1"] is None  # no injected error


@pytest.mark.needs_data
def test_no_problem_in_both_training_and_evaluation():
    data = prepare_data(tiny_config())
    eval_keys = {key_of(t) for ts in data.eval_sets.values() for t in ts}
    assert {k: len(v) for k, v in data.eval_sets.items()} == {s: 6 for s in ("gsm8k", "math", "olympiadbench", "omnimath")}
    assert not eval_keys & {key_of(t) for t in data.human_train}
    train_keys = {key_of(t) for t in data.outcome_train} | {key_of(t) for t in data.references}
    bo4_keys = {key_of(g[0]) for g in data.bo4_groups}
    assert not eval_keys & train_keys and not bo4_keys & train_keys
    assert all(len(g) == 4 for g in data.bo4_groups) and len(data.bo4_groups) == 4
    # human labels: 1 before the first error, 0 at it, nothing claimed after
    t = next(t for t in data.human_train if 0 <= t.first_error < len(t.steps) - 1)
    lab = human_labels(t)
    k = t.first_error
    assert lab.values[k] == 0.0 and all(v == 1.0 for v in lab.values[:k]) and lab.weights[k + 1:] == [0.0] * (len(t.steps) - k - 1)


@pytest.mark.needs_data
@pytest.mark.slow
def test_study_real_end_to_end_and_resume(tmp_path, monkeypatch):
    c = tiny_config()
    res = run_study(c, tmp_path, progress=False)
    saved = json.loads((tmp_path / "real_metrics.json").read_text())
    assert set(saved["sources"]) == {"human", "outcome", "spr", "perturbation"}
    for name, r in saved["sources"].items():
        assert set(r["f1"]) == {"gsm8k", "math", "olympiadbench", "omnimath", "average"}
        # F1 is undefined (null) only on a split whose evaluation sample lacks erroneous or
        # error-free solutions; everywhere else it is a number in [0, 1]
        for split, f1 in r["f1"].items():
            if split == "average":
                assert f1 is not None and 0.0 <= f1 <= 1.0
                continue
            acc = r["accuracy"][split]
            assert (f1 is None) == (acc["error"] is None or acc["correct"] is None), (name, split, f1, acc)
            assert f1 is None or 0.0 <= f1 <= 1.0
        assert r["train_examples"] == 16 and r["train_seconds"] > 0
        assert 0.0 <= r["best_of_4"] <= 1.0
    assert 0.0 <= saved["best_of_4"]["majority_vote"] <= 1.0
    assert "Qwen2.5-Math-PRM-7B *(published, 7B)*" in (tmp_path / "real_metrics.md").read_text()
    assert "73.5" in (tmp_path / "real_metrics.md").read_text()
    assert (tmp_path / "real_f1.png").stat().st_size > 0
    # every PRM scored on PRMBench per error category (8 kinds + multi-solution items, and overall)
    for name, r in saved["sources"].items():
        pb = r["prmbench"]
        assert "overall" in pb and len(pb) >= 9, (name, sorted(pb))
        assert sum(v["records"] for k, v in pb.items() if k != "overall") == pb["overall"]["records"]
        assert pb["overall"]["step_auroc"] is None or 0.0 <= pb["overall"]["step_auroc"] <= 1.0
    assert "PRMBench" in (tmp_path / "real_metrics.md").read_text()
    assert "Qwen2.5-Math-PRM-7B" not in json.dumps(saved)  # published figures are not in the measured JSON

    # a rerun resumes from the per-source files instead of training again
    def boom(*a, **k):
        raise AssertionError("retrained a finished source")

    monkeypatch.setattr("selfprm.prm.train.train_prm", boom)
    again = run_study(c, tmp_path, progress=False)
    assert again["sources"]["human"]["f1"] == res["sources"]["human"]["f1"]


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    add_study_arguments(parser, real)
    args = parser.parse_args([])
    assert args.out == "runs/real" and args.preset == "full"
    assert config_from_args(real, args) == RealStudyConfig()
    assert PRESETS["quick"]().eval_per_split is not None
    assert config_from_args(real, parser.parse_args(["--sources", "human,spr"])).sources == ("human", "spr")
    with pytest.raises(ValueError, match="mc"):
        config_from_args(real, parser.parse_args(["--sources", "human,mc"]))
