import json
import math

import pytest

from selfprm.cli import main
from selfprm.studies.demo import PRESETS, DemoConfig, run as run_demo
from selfprm.domains import ArithConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm import PRMTrainConfig
from selfprm.types import to_strict_json


def _tiny_config() -> DemoConfig:
    # One operation and 400 SFT steps (~8 s): a policy whose steps are sound about a third of the
    # time, so every metric is defined. (With 40 steps every step was wrong: AUROC NaN, which an
    # isinstance(float) check let through.)
    return DemoConfig(
        arith=ArithConfig(min_ops=1, max_ops=1),
        lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=64, n_positions=96),
        sft=SFTConfig(steps=400, batch_size=32, warmup=5),
        n_sft_problems=500,
        max_new_tokens=40,
        n_train_problems=12,
        samples_per_train_problem=2,
        n_dev_problems=6,
        samples_per_dev_problem=2,
        n_test_problems=6,
        mc_rollouts=2,
        prm=PRMTrainConfig(epochs=1, batch_size=8),
        spr_warmup_steps=1,  # 3 optimizer steps in all: one warm, two with the filter (and its log)
        source_kwargs={"omega": {"n_rollouts": 2}, "mcts": {"n_simulations": 2}, "tree": {"m_trees": 2, "l_rounds": 1},
                       "implicit": {"train_steps": 5},
                       "consensus": {"primary_kwargs": {"n_rollouts": 2, "soft": False}, "judge_kwargs": {"epochs": 1}}},
    )


@pytest.mark.slow
def test_demo_end_to_end_writes_metrics_report_and_plots_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    m = run_demo(_tiny_config(), out, progress=False)
    assert set(m["label_sources"]) == set(DemoConfig().sources)
    assert {"oracle", "outcome", "spr", "mc", "omega", "mcts", "tree", "implicit", "consensus"} <= set(m["label_sources"])
    assert PRESETS["quick"]().sources == ("oracle", "outcome", "spr", "mc")
    for name, row in m["label_sources"].items():
        for key in ("step_auroc", "first_error_f1", "bon_accuracy", "policy_tokens_per_step_label"):
            # NaN would pass isinstance(float): an undefined metric is a failure here
            assert isinstance(row[key], float) and math.isfinite(row[key]), (name, key, row[key])
    assert m["label_sources"]["mc"]["policy_tokens_per_step_label"] > 0
    assert m["label_sources"]["oracle"]["policy_tokens_per_step_label"] == 0
    # the ledger: free labels still pay for their PRM's training; rollouts pay for the policy's passes
    for name, row in m["label_sources"].items():
        assert set(row["cost"]) >= {"policy_tokens", "token_passes", "seconds"}
        assert row["cost"]["token_passes"] >= row["cost"]["prm_token_passes"] > 0, name
        assert row["seeds"] == 1 and row["sd"] == {"step_auroc": 0.0, "first_error_f1": 0.0, "bon_accuracy": 0.0}
    assert m["label_sources"]["mc"]["cost"]["label_token_passes"] > m["label_sources"]["mc"]["cost"]["policy_tokens"]
    assert m["label_sources"]["oracle"]["cost"]["label_token_passes"] == 0
    assert m["label_sources"]["spr"]["aggregation"] == "geomean" and m["label_sources"]["mc"]["aggregation"] == "min"
    assert m["label_sources"]["spr"]["kept_share"][0]["positive"]  # logged per seed
    assert any("spr" in d for d in m["deviations"])
    assert set(m["baselines"]) == {"majority_vote", "random_pick", "oracle_pick"}
    assert 0 <= m["policy"]["error_rate"] <= 1
    assert set(m["stage_seconds"]) == {"policy", "pool", "labels", "prms", "evaluation"}
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["label_sources"].keys() == m["label_sources"].keys()
    assert (out / "report.md").read_text().startswith("# selfprm demo")
    assert "## Deviations from the papers" in (out / "report.md").read_text()
    assert (out / "label_sources.png").stat().st_size > 1000
    assert "| mc |" in capsys.readouterr().out
    # a rerun with the same config loads every stage instead of redoing it, and gives the same table
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "metrics.json"
              and p.suffix not in (".md", ".png") and p.name != "config.json"}
    assert any("shards" in str(p) for p in before) and any("prm" in str(p) for p in before)
    m2 = run_demo(_tiny_config(), out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert to_strict_json(m2["label_sources"]) == to_strict_json(m["label_sources"])  # NaN-safe equality


@pytest.mark.slow
def test_demo_resumes_an_interrupted_labeling_job_from_its_shards(tmp_path):
    out = tmp_path / "demo"
    config = _tiny_config()
    config.label_shard_size = 8  # 24 train trajectories: three shards per source
    first = run_demo(config, out, progress=False)
    shards = out / "seed-0" / "labels" / "mc" / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    # simulate a job killed while writing the last shard: neither its completion mark nor the
    # stage's (written last) appeared
    (shards / "shard-00002.json").unlink()
    (out / "seed-0" / "labels" / "mc" / ".stage-done.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in shards.glob("shard-0000[01].*")}
    again = run_demo(config, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards were not redone
    assert (shards / "shard-00002.json").exists()
    assert again["label_sources"]["mc"]["policy_tokens"] == first["label_sources"]["mc"]["policy_tokens"]


@pytest.mark.slow
def test_demo_with_seeds_reports_mean_and_sd_over_independent_streams(tmp_path):
    config = _tiny_config()
    config.sources = ("oracle", "outcome")
    config.seeds = 2
    m = run_demo(config, tmp_path / "demo", progress=False)
    for name, row in m["label_sources"].items():
        vals = row["per_seed"]["step_auroc"]
        assert len(vals) == 2 and row["seeds"] == 2
        assert row["step_auroc"] == pytest.approx(sum(vals) / 2)
        assert row["sd"]["step_auroc"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    # independent streams: the two seeds sampled different pools from the one shared policy
    a, b = ((tmp_path / "demo" / f"seed-{k}" / "pool" / "train.jsonl").read_text() for k in (0, 1))
    assert a != b
    assert not (tmp_path / "demo" / "seed-1" / "policy").exists()
    assert "±" in (tmp_path / "demo" / "report.md").read_text()


def test_seed_streams_do_not_collide():
    from selfprm.studies.stages import seed_streams

    s0 = seed_streams(0, ["sft", "seed-0", "seed-1"])
    assert len(set(s0.values())) == 3 and s0 == seed_streams(0, ["sft", "seed-0", "seed-1"])
    assert set(s0.values()).isdisjoint(seed_streams(1, ["sft", "seed-0", "seed-1"]).values())


def test_cli_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "label-efficiency", "real", "rl", "jepa", "eval"):
        assert f"    {cmd} " in out or f"{{{cmd}," in out or f",{cmd}," in out or f",{cmd}}}" in out, cmd


def test_cli_demo_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--quick" in out and "--out" in out


def test_cli_demo_rejects_an_unknown_label_source_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="nope"):
        main(["demo", "--sources", "oracle,nope", "--out", str(tmp_path / "d"), "--no-progress"])
    assert not (tmp_path / "d").exists()


def test_a_changed_parameter_recomputes_exactly_the_stages_built_from_it(tmp_path):
    """The bug the run directory exists for: a stage keyed by hand on a subset of its inputs was
    served stale. Here a child's key follows any change of a parent's config."""
    from selfprm.rundir import RunDir

    run = RunDir(tmp_path)
    policy = run.stage("policy", {"sft_steps": 10})
    prm = run.stage("prm", {"epochs": 2}, [policy])
    grpo = run.stage("runs/prm-seed0", {"lr": 1e-4}, [policy, prm])
    search = run.stage("search", {"n": 4}, [policy, prm])
    for st in (policy, prm, grpo, search):
        st.begin()
        st.finish({"v": 1})
    prm2 = run.stage("prm", {"epochs": 3}, [policy])  # e.g. --prm-train.epochs 3
    assert not prm2.done()
    assert not run.stage("runs/prm-seed0", {"lr": 1e-4}, [policy, prm2]).done()
    assert not run.stage("search", {"n": 4}, [policy, prm2]).done()
    assert run.stage("policy", {"sft_steps": 10}).done()  # upstream stays
    # begin() on the new key wipes the old key's files; on the same key it keeps them (resume)
    (prm.path / "half.bin").write_text("x")
    run.stage("prm", {"epochs": 2}, [policy]).begin()
    assert (prm.path / "half.bin").exists()
    prm2.begin()
    assert not (prm.path / "half.bin").exists()


def test_cli_builds_flags_from_the_config_with_presets_and_dotted_overrides():
    import argparse

    from selfprm.cli import add_study_arguments, config_from_args
    from selfprm.studies import STUDIES

    study = STUDIES.get("demo")
    parser = argparse.ArgumentParser()
    add_study_arguments(parser, study)
    cfg = config_from_args(study, parser.parse_args(["--quick", "--sft.steps", "7", "--prm.head-lr", "0.1",
                                                     "--sources", "oracle,mc", "--no-surprise-features",
                                                     "--source-kwargs", '{"mc": {"n_rollouts": 2}}']))
    quick = PRESETS["quick"]()
    assert cfg.sft.steps == 7 and cfg.sft.batch_size == quick.sft.batch_size  # the rest of the preset stays
    assert cfg.prm.head_lr == 0.1 and cfg.prm.epochs == quick.prm.epochs
    assert cfg.sources == ("oracle", "mc") and cfg.surprise_features is False
    assert cfg.n_train_problems == quick.n_train_problems
    assert cfg.source_kwargs == {"mc": {"n_rollouts": 2}}
    full = config_from_args(study, parser.parse_args([]))
    assert full == DemoConfig()
    # every study's flags build, and each field has help text from its Parameters: block
    for name in STUDIES:
        p = argparse.ArgumentParser()
        add_study_arguments(p, STUDIES.get(name))
        undocumented = [a.dest for a in p._actions if a.dest not in ("help", "out", "preset", "no_progress")
                        and "." not in a.dest and not a.help]
        assert not undocumented, (name, undocumented)
