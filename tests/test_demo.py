import json

import pytest

from selfprm.cli import main
from selfprm.demo import DemoConfig, run_demo
from selfprm.domains import ArithConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm import PRMTrainConfig
from selfprm.types import to_strict_json


def _tiny_config() -> DemoConfig:
    return DemoConfig(
        domain=ArithConfig(min_ops=2, max_ops=3),
        lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=96),
        sft=SFTConfig(steps=40, batch_size=32, warmup=5),
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
    assert DemoConfig.quick().sources == ("oracle", "outcome", "spr", "mc")
    for name, row in m["label_sources"].items():
        for key in ("step_auroc", "first_error_f1", "bon_accuracy", "policy_tokens_per_step_label"):
            assert isinstance(row[key], float), (name, key)
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
    before = {p: p.stat().st_mtime_ns for p in (out / "pool").iterdir()} | {
        p: p.stat().st_mtime_ns for p in (out / "labels").glob("*.shards/*")}
    m2 = run_demo(_tiny_config(), out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert to_strict_json(m2["label_sources"]) == to_strict_json(m["label_sources"])  # NaN-safe equality


@pytest.mark.slow
def test_demo_resumes_an_interrupted_labeling_job_from_its_shards(tmp_path):
    out = tmp_path / "demo"
    config = _tiny_config()
    config.label_shard_size = 8  # 24 train trajectories: three shards per source
    first = run_demo(config, out, progress=False)
    shards = out / "labels" / "mc.shards"
    assert sorted(p.name for p in shards.glob("*.json")) == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    # simulate a job killed while writing the last shard: its completion mark never appeared
    (shards / "shard-00002.json").unlink()
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
    for cmd in ("demo", "eval", "study", "jepa"):
        assert cmd in out


def test_cli_demo_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--quick" in out and "--out" in out


def test_cli_demo_rejects_an_unknown_label_source_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="nope"):
        main(["demo", "--sources", "oracle,nope", "--out", str(tmp_path / "d"), "--no-progress"])
    assert not (tmp_path / "d").exists()
