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
    m = run(SelfEvalConfig(parts=("ctx2skill",), seeds=2, ctx2skill={"rounds": 1}), tmp_path, progress=False)
    # each seed its own Reasoner (a training run), draws and folder
    assert [(c.seed, c.reasoner.seed, c.rounds) for c, _ in seen] == [(0, 0, 1), (1, 1, 1)]
    assert [o for _, o in seen] == [tmp_path / "ctx2skill" / "seed-0", tmp_path / "ctx2skill" / "seed-1"]
    c = m["ctx2skill"]
    assert c["accuracy"]["evolved"] == pytest.approx(0.6) and c["accuracy"]["none"] == 0.25
    assert c["accuracy"]["evolved_std"] == pytest.approx(0.1414, abs=1e-3) and c["accuracy"]["none_std"] == 0.0
    assert c["rounds"] == 1 and c["seeds"] == 2 and c["replay_guard_used"] == 2 and c["replay_guard_rounds"] == 2
    assert json.loads((tmp_path / "selfeval_metrics.json").read_text()) == m
    assert "| 0.600 ± 0.141 | 0.250 ± 0.000 | 0.350 ± 0.071 |" in (tmp_path / "selfeval_table.md").read_text()


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
