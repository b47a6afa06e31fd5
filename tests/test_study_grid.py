"""``selfprm study``: the grid's cache, the replacement ratio, Kendall's tau and the fuzzy judge."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.arith_fuzzy import FuzzyArithDomain, FuzzyJudgeConfig, is_fluent
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.studies import study
from selfprm.studies.study import StudyConfig, crossing, ece, kendall_tau, replacement_ratios


def tiny_config(**kw) -> StudyConfig:
    base = dict(domains=("arith", "arith-fuzzy"), judge_errors=(0.3,), sources=("oracle", "outcome"),
                trajectories=(4, 8), lm=TinyLMConfig(n_embd=32, n_layer=1), sft=SFTConfig(steps=5, batch_size=8),
                n_sft_problems=50, n_dev_problems=3, n_test_problems=3, max_new_tokens=48,
                prm=PRMTrainConfig(epochs=1, batch_size=8), bootstrap=20, real=False)
    base.update(kw)
    return StudyConfig(**base)


@pytest.fixture
def begun(monkeypatch):
    """Names of the stages that (re)computed: every computation starts with ``Stage.begin``."""
    from selfprm.rundir import Stage

    names: list[str] = []
    orig = Stage.begin

    def spy(self):
        names.append(self.name)
        return orig(self)

    monkeypatch.setattr(Stage, "begin", spy)
    return names


def test_cache_rerun_and_one_changed_parameter(tmp_path, begun):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "run"
    first = study.run(tiny_config(), out, progress=False)
    assert len(first["cells"]) == 2 * 2 * 2 * 3  # variants x sources x N x seeds
    assert (out / "study.json").exists() and (out / "index.html").exists()
    n_first = len(begun)
    assert any(n.endswith("/prm/oracle/n8") for n in begun)
    begun.clear()
    again = study.run(tiny_config(), out, progress=False)
    assert begun == []  # nothing recomputed
    assert [c["step_auroc"] for c in again["cells"]] == [c["step_auroc"] for c in json.loads(
        (out / "study.json").read_text())["cells"]]
    # the judge's rate reaches only the fuzzy variant: its judge, labels, PRMs and evaluations
    study.run(tiny_config(judge_errors=(0.1,)), out, progress=False)
    assert begun and all(n.startswith("arith-fuzzy@0.1/") for n in begun), begun
    assert len(begun) < n_first
    # exact labels read no outcome: the fuzzy variant's oracle cells are the crisp ones, never recomputed
    assert not any("/oracle/" in n for n in begun), begun
    fuzzy = {(c["seed"], c["trajectories"]): c for c in first["cells"]
             if c["domain"] == "arith-fuzzy" and c["source"] == "oracle"}
    crisp = {(c["seed"], c["trajectories"]): c for c in first["cells"]
             if c["domain"] == "arith" and c["source"] == "oracle"}
    assert fuzzy.keys() == crisp.keys() and all(fuzzy[k]["step_auroc"] == crisp[k]["step_auroc"] for k in fuzzy)
    assert all(c["domain_key"] == "arith-fuzzy@0.3" for c in fuzzy.values())
    # a new N trains only that N's PRMs (and evaluates them)
    begun.clear()
    study.run(tiny_config(judge_errors=(0.1,), trajectories=(4, 8, 6)), out, progress=False)
    assert begun and all("/n6" in n for n in begun), begun


def test_engine_and_address_reach_the_label_stage(tmp_path, monkeypatch):
    import torch

    from selfprm.studies import stages

    torch.set_num_threads(1)
    seen = []

    def spy(*args, engine="local", address="", **kw):  # records what the study asks for, labels in process
        seen.append((engine, address))
        return stages.label_stage(*args, **kw)

    monkeypatch.setattr(study, "label_stage", spy)
    cfg = tiny_config(domains=("arith",), sources=("oracle", "outcome"), trajectories=(4,), engine="ray",
                      address="127.0.0.1:6379")
    study.run(cfg, tmp_path, progress=False)
    assert seen and set(seen) == {("ray", "127.0.0.1:6379")}
    assert json.loads((tmp_path / "study.json").read_text())["config"]["engine"] == "ray"


def test_tools_pools_are_written_with_the_calculator_running():
    import torch

    from selfprm.domains.tools import ToolsDomain
    from selfprm.policies.tiny import build_char_tokenizer, build_tiny_lm
    from selfprm.policies.hf import HFPolicy
    from selfprm.policies.tool_calling import ToolCallingPolicy

    torch.set_num_threads(1)
    domain = ToolsDomain()
    tok = build_char_tokenizer(domain.charset())
    lm = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32), seed=0)
    cfg = tiny_config(domains=("tools",), max_new_tokens=24)
    policy = study._writer(cfg, domain, lm, tok, seed=5)
    assert isinstance(policy, ToolCallingPolicy)  # HFPolicy would write the tool's answers itself
    problems = domain.sample_problems(2, seed=1)
    first = policy.sample(problems, 2)
    assert [len(g) for g in first] == [2, 2] and all(t.problem.id == p.id for g, p in zip(first, problems) for t in g)
    policy.reseed(5)  # repeatable from its seed, as a resumed label shard needs
    assert [[t.steps for t in g] for g in policy.sample(problems, 2)] == [[t.steps for t in g] for g in first]
    assert not isinstance(study._writer(cfg, study._make_domain("arith", cfg), lm, tok, 0), ToolCallingPolicy)
    with pytest.raises(ValueError, match="ToolCallingPolicy"):  # the silent bug is a loud error now
        HFPolicy(lm, tok, domain)


def test_prm_epochs_give_every_n_its_minimum_of_steps():
    assert study.prm_epochs(30, 32, 2, 24) == 24  # one step an epoch
    assert study.prm_epochs(120, 32, 2, 24) == 6  # four steps an epoch
    assert study.prm_epochs(800, 32, 2, 24) == 2  # 25 steps an epoch: the configured epochs already suffice


def test_crossing_interpolates_in_log_n():
    # from 0.6 at 100 to 0.8 at 400: 0.7 is reached half way in log N, at 200
    assert crossing([100, 400], [0.6, 0.8], 0.7) == pytest.approx(200.0)
    assert crossing([100, 400], [0.6, 0.8], 0.5) == 100.0
    assert crossing([100, 400], [0.6, 0.8], 0.9) is None


def _cells(curves: dict[str, dict[int, list[float]]], key: str = "arith") -> list[dict]:
    rows = []
    for src, by_n in curves.items():
        for n, per_seed in by_n.items():
            for seed, v in enumerate(per_seed):
                rows.append({"source": src, "domain": key, "domain_key": key, "judge_error": 0.0, "trajectories": n,
                             "seed": seed, "step_auroc": v, "first_error_f1": v, "bon_accuracy": v,
                             "policy_tokens": 10 * n if src != "oracle" else 0, "token_passes": 100.0 * n})
    return rows


def test_replacement_ratio_on_a_hand_made_curve():
    cells = _cells({"oracle": {100: [0.7, 0.7, 0.7], 400: [0.9, 0.9, 0.9]},
                    "outcome": {100: [0.6, 0.6, 0.6], 400: [0.8, 0.8, 0.8]}})
    rr = replacement_ratios(cells, "arith", "outcome", n_boot=50)
    # the oracle's 0.7 at N0=100 is reached by outcome at 200: twice the trajectories, no spread over seeds
    assert rr["100"]["ratio"] == pytest.approx(2.0)
    assert rr["100"]["lo"] == pytest.approx(2.0) and rr["100"]["hi"] == pytest.approx(2.0)
    assert rr["100"]["policy_tokens"] == pytest.approx(2000.0)
    # the oracle's 0.9 at 400 is never reached: null ratio, and how close it came
    assert rr["400"]["ratio"] is None and rr["400"]["hi"] is None and rr["400"]["best"] == pytest.approx(0.8)


def test_replacement_ratio_band_spreads_with_the_seeds():
    cells = _cells({"oracle": {100: [0.7, 0.7, 0.7], 400: [0.9, 0.9, 0.9]},
                    "outcome": {100: [0.5, 0.6, 0.65], 400: [0.75, 0.8, 0.85]}})
    r = replacement_ratios(cells, "arith", "outcome", n_boot=300)["100"]
    assert r["lo"] < r["ratio"] < r["hi"]


def test_kendall_tau_by_hand():
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # 6 pairs: one discordant (the last two swapped) -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # ties: tau-b, as scipy computes it
    from scipy.stats import kendalltau

    a, b = [0.3, 0.3, 0.5, 0.9, 0.1], [0.2, 0.4, 0.4, 0.8, 0.1]
    assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_ece_by_hand():
    # two bins: scores 0.15 (1 of 2 sound) and 0.85 (2 of 2 sound): 0.5*|0.15-0.5| + 0.5*|0.85-1|
    err, table = ece([0.15, 0.15, 0.85, 0.85], [True, False, True, True])
    assert err == pytest.approx(0.5 * 0.35 + 0.5 * 0.15)
    assert [b[2] for b in table] == [2, 2]


def test_fuzzy_judge_error_rate_and_leniency():
    dom = ArithDomain(ArithConfig())
    judge = FuzzyJudgeConfig(error_rate=0.2, lenient_factor=2.0, seed=3)
    fuzzy = FuzzyArithDomain(ArithConfig(), judge)
    rng = np.random.default_rng(0)
    problems = dom.sample_problems(3000, seed=1)
    trajs = []
    for p in problems:
        steps, ans = dom.worked_solution(p, rng)
        wrong = rng.random() < 0.5
        if wrong:  # a fluent wrong answer half the time, a hesitant (redo) one otherwise
            ans = str((int(ans) + 1) % 10)
            if rng.random() < 0.5:
                steps = steps + ["redo:" + steps[-1]]
        trajs.append(dom.make_trajectory(p, steps, ans))
    judged = fuzzy.rejudge(trajs)
    assert [t.meta["true_outcome"] for t in judged] == [t.outcome for t in trajs]
    assert [t.oracle_labels for t in judged] == [t.oracle_labels for t in trajs]  # step oracle stays exact

    def err(pred):
        part = [(j.outcome != t.outcome) for t, j in zip(trajs, judged) if pred(t)]
        return float(np.mean(part)), len(part)

    right, n1 = err(lambda t: t.outcome)
    hesitant, n2 = err(lambda t: not t.outcome and not is_fluent(t.steps, t.truncated))
    fluent, n3 = err(lambda t: not t.outcome and is_fluent(t.steps, t.truncated))
    assert min(n1, n2, n3) > 300
    assert right == pytest.approx(0.2, abs=0.05) and hesitant == pytest.approx(0.2, abs=0.06)
    assert fluent == pytest.approx(0.4, abs=0.07)  # lenient: fluent wrong answers pass twice as often
    # deterministic in the text: the same solution gets the same verdict again
    assert [t.outcome for t in fuzzy.rejudge(trajs)] == [t.outcome for t in judged]
    assert all(not t.outcome for t in FuzzyArithDomain(ArithConfig(), FuzzyJudgeConfig(0.0)).rejudge(trajs)
               if not t.meta["true_outcome"])


def test_config_checks_names_and_seeds():
    with pytest.raises(Exception, match="nope"):
        tiny_config(domains=("arith", "nope"))
    with pytest.raises(ValueError, match="oracle"):
        tiny_config(sources=("outcome",))
    with pytest.raises(ValueError, match="seeds"):
        tiny_config(seeds=2)
    assert "code" in StudyConfig().domains
    with pytest.raises(ValueError, match="--address"):  # a cluster address means nothing to the local engine
        tiny_config(address="10.0.0.1:6379")


def test_rankings_tau_from_cells():
    cells = _cells({"oracle": {10: [0.9]}, "a": {10: [0.5]}, "b": {10: [0.7]}})
    for c in cells:  # best-of-N reverses a and b
        c["bon_accuracy"] = {"oracle": 0.9, "a": 0.7, "b": 0.5}[c["source"]]
    r = study.rankings(cells)["arith"]
    assert r["by_first_error_f1"] == ["oracle", "b", "a"] and r["by_bon"] == ["oracle", "a", "b"]
    assert r["tau"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_tiny_study_end_to_end_with_tools(tmp_path):
    import torch

    torch.set_num_threads(1)
    res = study.run(tiny_config(domains=("arith", "arith-fuzzy", "tools", "code")), tmp_path, progress=False)
    keys = {c["domain_key"] for c in res["cells"]}
    assert keys == {"arith", "arith-fuzzy@0.3", "tools", "code"}
    for c in res["cells"]:
        for k in ("source", "domain", "judge_error", "trajectories", "seed", "step_auroc", "first_error_f1",
                  "bon_accuracy", "policy_tokens", "token_passes"):
            assert k in c
    on_disk = json.loads((tmp_path / "study.json").read_text())
    assert set(on_disk["replacement_ratio"]) == keys and set(on_disk["rank_tau"]) == keys
    assert on_disk["answer"] and "skipped" in on_disk["real"]
    assert (tmp_path / "index.html").read_text().count("data:image/png;base64,") >= 6


def test_real_section_bands_over_seeds(tmp_path, monkeypatch):
    from selfprm.rundir import RunDir
    from selfprm.studies import real as real_study

    seen = []

    def fake_run(cfg, out, progress=True):  # the real study's result shape, F1 moving with the seed
        seen.append(cfg.seed)
        k = len(seen)

        def pb(score):  # PRMBench per category; the human PRM's "deception" score is undefined
            return {"deception": {"records": 4, "prmscore": score, "step_auroc": 0.6},
                    "overall": {"records": 4, "prmscore": score, "step_auroc": 0.6}}

        return {"sources": {"human": {"f1": {"average": 0.5 + 0.01 * k}, "prmbench": pb(None)},
                            "outcome": {"f1": {"average": 0.4 + 0.01 * k}, "prmbench": pb(0.5 + 0.02 * k)}}}

    monkeypatch.setattr(real_study, "run", fake_run)
    res = study.run_real(tiny_config(real=True, real_seeds=5, bootstrap=200), RunDir(tmp_path), progress=False)
    assert len(set(seen)) == 5  # five independent seeds
    h = res["sources"]["human"]
    assert h["f1"] == pytest.approx(0.53) and h["lo"] < 0.53 < h["hi"]
    gap = res["sources"]["outcome"]["gap_vs_human"]  # paired by seed: exactly -0.1 with no spread
    assert gap["f1"] == pytest.approx(-0.1) and gap["lo"] == pytest.approx(-0.1) and gap["hi"] == pytest.approx(-0.1)
    pb = res["prmbench"]["outcome"]["deception"]
    assert pb["records"] == 4 and pb["prmscore"]["mean"] == pytest.approx(0.56)
    assert pb["prmscore"]["lo"] < 0.56 < pb["prmscore"]["hi"] and pb["step_auroc"]["mean"] == pytest.approx(0.6)
    assert math.isnan(res["prmbench"]["human"]["deception"]["prmscore"]["mean"])  # undefined stays undefined
    # and the page shows the table from the JSON
    from selfprm.report.study_page import _real

    page = _real({"real": json.loads(json.dumps(res))})
    assert "PRMBench error categories" in page and "0.56 [" in page and "n/a" in page
    assert "skipped" in study.run_real(tiny_config(), RunDir(tmp_path))


def test_a_pool_with_almost_no_flawed_trajectory_is_flagged_on_the_page():
    from selfprm.report.study_page import _failures
    from selfprm.studies.study import failures

    pools = {"code/seed-0": {"trajectories": 400, "wrong_answers": 0.0025, "flawed": 0.0025, "lucky": 0.0,
                             "recovered": 0.0, "steps_per_trajectory": 5.2},
             "arith/seed-0": {"trajectories": 400, "wrong_answers": 0.3, "flawed": 0.35, "lucky": 0.02,
                              "recovered": 0.03, "steps_per_trajectory": 4.0},
             "all-wrong/seed-0": {"trajectories": 10, "wrong_answers": 1.0, "flawed": 1.0, "lucky": 0.0,
                                  "recovered": 0.0, "steps_per_trajectory": 3.0}}
    f = failures([], pools)
    assert [p["pool"] for p in f["one_sided_pools"]] == ["code/seed-0", "all-wrong/seed-0"]
    html = _failures({"failures": f, "cells": []})
    assert "One-sided pools" in html and "code/seed-0" in html
    assert "One-sided pools" not in _failures({"failures": failures([], {"arith/seed-0": pools["arith/seed-0"]}),
                                               "cells": []})
