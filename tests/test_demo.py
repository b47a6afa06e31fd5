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
        domain=ArithConfig(min_ops=1, max_ops=1),
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
        source_kwargs={"omega": {"n_rollouts": 2}, "mcts": {"n_simulations": 2}, "tree": {"m_trees": 2, "l_rounds": 1},
                       "implicit": {"train_steps": 5},
                       "consensus": {"primary_kwargs": {"n_rollouts": 2, "soft": False}, "second_kwargs": {"n_rollouts": 2}}},
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
    assert set(m["baselines"]) == {"majority_vote", "random_pick", "oracle_pick"}
    assert 0 <= m["policy"]["error_rate"] <= 1
    assert set(m["stage_seconds"]) == {"policy", "pool", "labels", "prms", "evaluation"}
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["label_sources"].keys() == m["label_sources"].keys()
    assert (out / "report.md").read_text().startswith("# selfprm demo")
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
    shards = out / "labels" / "mc" / "shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    # simulate a job killed while writing the last shard: neither its completion mark nor the
    # stage's (written last) appeared
    (shards / "shard-00002.json").unlink()
    (out / "labels" / "mc" / ".stage-done.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in shards.glob("shard-0000[01].*")}
    again = run_demo(config, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards were not redone
    assert (shards / "shard-00002.json").exists()
    assert again["label_sources"]["mc"]["policy_tokens"] == first["label_sources"]["mc"]["policy_tokens"]


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
