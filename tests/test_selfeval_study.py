"""``selfprm selfeval``: the config, the command's flags, the Ctx2Skill hand-off, and one tiny run end to end."""

import json
from dataclasses import replace
import math

import pytest

from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rl.grpo import GRPOConfig
from selfprm.rl.pcl import DualTrackConfig
from selfprm.studies import STUDIES
from selfprm.studies.selfeval import PRESETS, SelfEvalConfig, run, table


def tiny(**kw) -> SelfEvalConfig:
    base = dict(
        parts=("pcl", "self_knowledge"), seeds=1, lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128),
        sft=SFTConfig(steps=80, batch_size=16, warmup=5), n_sft_problems=200,
        dual_track=DualTrackConfig(problems=4, samples=2, steps=10, max_new_tokens=40),
        grpo=GRPOConfig(steps=1, prompts_per_step=2, group_size=2, eval_every=1, max_new_tokens=40, ppo_epochs=1),
        n_train_problems=4, n_eval_problems=4, bon_problems=3, bon_n=2, prm_pool_problems=6, prm_pool_samples=2,
        prm_train=PRMTrainConfig(epochs=1, batch_size=8), judge_problems=4, judge_samples=2, stability_trajectories=3,
        pushback_trajectories=3, n_bins=3, cross_sft_steps=20,
        prm_sources=("oracle", "outcome"))  # (SPR drops truncated solutions: most of an 80-step SFT policy's)
    return SelfEvalConfig(**{**base, **kw})


def test_config_checks_parts_and_the_oracle_prm():
    with pytest.raises(ValueError, match="unknown part"):
        SelfEvalConfig(parts=("pcl", "nope"))
    with pytest.raises(ValueError, match="oracle"):
        SelfEvalConfig(prm_sources=("outcome",))
    assert SelfEvalConfig(parts=("pcl",), prm_sources=("outcome",)).prm_sources == ("outcome",)
    assert set(PRESETS) == {"full", "quick"} and PRESETS["quick"]().seeds == 1 and PRESETS["full"]().seeds == 3


def test_the_command_builds_the_config_from_flags():
    from selfprm.cli import _build_parser, config_from_args

    argv = ["selfeval", "--quick", "--out", "x", "--parts", "pcl,self_knowledge", "--ctx2skill", '{"rounds": 1}',
            "--pcl-kwargs", '{"w_cons": 2.0}', "--dual-track.steps", "7"]
    cfg = config_from_args(STUDIES.get("selfeval"), _build_parser(argv).parse_args(argv))
    assert cfg.parts == ("pcl", "self_knowledge") and cfg.ctx2skill == {"rounds": 1}
    assert cfg.pcl_kwargs == {"w_cons": 2.0} and cfg.dual_track.steps == 7 and cfg.seeds == 1


def test_the_ctx2skill_part_runs_one_self_play_per_seed_with_the_overrides(tmp_path, monkeypatch):
    import selfprm.selfplay.ctx2skill as c2s

    seen = []
    acc = {0: (0.5, 0.25, 0.3), 1: (0.7, 0.25, 0.4)}

    def fake(config, out, *, progress=True):
        seen.append((config, out))
        e, n, r = acc[config.seed]
        return {"accuracy": {"evolved": e, "none": n, "random": r}, "rounds": config.rounds,
                "vs_none": {"evolved": {"fixed": e, "broken": 0.0}, "random": {"fixed": r, "broken": 0.0}},
                "judge_agreement": 0.9, "replay_guard_used": 1}

    monkeypatch.setattr(c2s, "run_ctx2skill", fake)
    plotted = []
    monkeypatch.setattr(c2s, "plot_curve", lambda per, path: plotted.append((len(per), path)))
    m = run(SelfEvalConfig(parts=("ctx2skill",), seeds=2, ctx2skill={"rounds": 1}), tmp_path, progress=False)
    # each seed its own Reasoner (a training run), draws and folder
    assert [(c.seed, c.reasoner.seed, c.rounds) for c, _ in seen] == [(0, 0, 1), (1, 1, 1)]
    assert [o for _, o in seen] == [tmp_path / "ctx2skill" / "seed-0", tmp_path / "ctx2skill" / "seed-1"]
    c = m["ctx2skill"]
    assert c["accuracy"]["evolved"] == pytest.approx(0.6) and c["accuracy"]["none"] == 0.25
    assert c["accuracy"]["evolved_std"] == pytest.approx(0.1414, abs=1e-3) and c["accuracy"]["none_std"] == 0.0
    assert c["rounds"] == 1 and c["seeds"] == 2 and c["replay_guard_used"] == 2 and c["replay_guard_rounds"] == 2
    assert json.loads((tmp_path / "selfeval_metrics.json").read_text()) == m
    assert plotted == [(2, tmp_path / "ctx2skill_accuracy.png")]
    assert "| 0.600 ± 0.141 | 0.250 ± 0.000 | 0.350 ± 0.071 |" in (tmp_path / "selfeval_table.md").read_text()


def test_the_table_marks_a_judge_without_text_as_having_no_pushback():
    sk = {"prm:oracle": {"level": "step", "ece": 0.1, "brier": 0.2, "auroc": 0.9, "overconfidence": -0.05,
                         "stability_sd": 0.01, "pushback_flip_rate": None}}
    md = table({"self_knowledge": sk})
    assert "| prm:oracle | step | 0.100 | 0.200 | 0.900 | -0.050 | 0.010 | — |" in md


@pytest.mark.slow
def test_a_tiny_run_end_to_end_writes_the_schema_and_resumes(tmp_path, one_torch_thread):
    m = run(tiny(), tmp_path, progress=False)
    p = m["pcl"]
    for k in ("accuracy", "baseline_accuracy", "ece", "brier", "auroc", "inference_extra_tokens"):
        assert k in p and (p[k] is None or isinstance(p[k], float))
    assert p["inference_extra_tokens"] == 0.0  # generation stopped at the marker
    assert p["evaluation_mode_tokens"] > 0 and p["grpo_samples"] == p["baseline_grpo_samples"] == 4
    assert set(p["bon"]) >= {"self_eval", "prm:oracle", "prm:outcome"}
    assert set(p["within_problem_auroc"]) == set(p["bon"])  # each verifier's ranking within a problem, and its sd
    sk = m["self_knowledge"]
    assert set(sk) == {"prm:oracle", "prm:outcome", "pcl_self_eval"}
    assert all(sk[j]["pushback_flip_rate"] is None for j in ("prm:oracle", "prm:outcome"))
    assert 0.0 <= sk["pcl_self_eval"]["pushback_flip_rate"] <= 1.0
    # a judge scores what it can (PCL's tiny self-evaluation may not follow its template: unscored)
    assert all(0.0 <= sk[j]["brier"] <= 1.0 for j in sk if sk[j]["n_scored"]) and sk["prm:oracle"]["n_scored"] > 0
    # the spread is defined exactly where some step could be rewritten (a tiny policy's steps may not parse)
    assert all(math.isnan(sk[j]["stability_sd"]) == (sk[j]["stability"]["steps"] == 0) for j in sk)
    assert set(m["self_vs_cross"]["auroc"]) == {"long_sft", "short_sft"}
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Self-knowledge" in (tmp_path / "selfeval_table.md").read_text()
    # a rerun trains nothing again and measures the same
    again = run(tiny(), tmp_path, progress=False)
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(m, sort_keys=True, default=str)



def test_the_seed_band_plot_of_ctx2skill(tmp_path):
    from selfprm.selfplay.ctx2skill import plot_curve

    per = [{"curve": [{"round": r, "evolved": 0.5 + 0.1 * r + 0.01 * k, "latest": 0.5} for r in range(3)],
            "accuracy": {"none": 0.5, "random": 0.55}} for k in range(3)]
    plot_curve(per, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_ctx2skill_overrides_reach_the_reasoner_and_its_capacity():
    from selfprm.selfplay.ctx2skill import Ctx2SkillConfig
    from selfprm.studies.selfeval import ctx2skill_config

    base = Ctx2SkillConfig()
    cfg = ctx2skill_config(base, {"rounds": 2, "reasoner": {"max_skills": 5, "sft": {"steps": 7}},
                                  "reasoner.n_examples": 11})
    assert cfg.rounds == 2 and cfg.reasoner.sft.steps == 7 and cfg.reasoner.n_examples == 11
    # a retrieving offline Reasoner reads only what its task names: its file may outgrow its window
    assert cfg.capacity == 64 and base.reasoner.sft.steps != 7
    assert replace(cfg, offline_retrieval=False).capacity == 5  # else the capacity follows the Reasoner's
    assert cfg.reasoner.sft.batch_size == base.reasoner.sft.batch_size
    with pytest.raises(ValueError, match="'reasoner.nope'"):
        ctx2skill_config(base, {"reasoner": {"nope": 1}})
    assert ctx2skill_config(base, PRESETS["quick"]().ctx2skill).rounds >= 1
