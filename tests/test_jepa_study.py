"""Probe/decoder sanity and one end-to-end run of the study at smoke-test size."""

import json

import pytest
import torch

from selfprm.jepa.intent import ProbeConfig, TextDecoderConfig, evaluate_heads, token_f1, train_probe, train_text_decoder
from selfprm.cli import main
from selfprm.studies import jepa as study
from selfprm.jepa.ui_streams import Intent


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Many tiny ops: one intra-op thread (see conftest), or two busy cores stall them for minutes."""
    yield


def _toy(n_per=6):
    intents, feats = [], []
    g = torch.Generator().manual_seed(0)
    for i, hour in enumerate(["7", "9", "11"]):
        for _ in range(n_per):
            intents.append(Intent("alarm", (("hour", hour), ("minute", "30"))))
            feats.append(torch.eye(8)[i] * 3 + 0.1 * torch.randn(8, generator=g))
    for i, who in enumerate(["ann", "ben"]):
        for _ in range(n_per):
            intents.append(Intent("call", (("contact", who),)))
            feats.append(torch.eye(8)[3 + i] * 3 + 0.1 * torch.randn(8, generator=g))
    return torch.stack(feats), intents


def test_probe_and_decoder_learn_separable_intents():
    feats, intents = _toy()
    heads = train_probe(feats, intents, ProbeConfig(steps=150), torch.Generator().manual_seed(0), seed=0)
    scores = evaluate_heads(heads, feats, intents)
    assert scores["intent_accuracy"] == 1.0 and scores["slot_accuracy"] == 1.0
    assert scores["slot_one_class"] == 0.0
    # a probe that answers one hour for every alarm is flagged, whatever its accuracy
    untrained = train_probe(feats, intents, ProbeConfig(steps=0), torch.Generator().manual_seed(0), seed=0)
    with torch.no_grad():
        for p in untrained.parameters():
            p.zero_()
    assert evaluate_heads(untrained, feats, intents)["slot_one_class"] == 1.0
    dec = train_text_decoder(feats, intents, TextDecoderConfig(steps=250), torch.Generator().manual_seed(0), seed=0)
    assert dec.generate(feats[:1]) == ["set an alarm for 7:30"]
    assert token_f1("call ann", "video call ann") == pytest.approx(0.8)




def test_attentive_probe_reads_the_token_that_carries_the_label(_one_thread):
    """Only one of 6 tokens differs between classes, at a different place per clip: a learned
    query that attends to it separates them; the token mean barely moves."""
    g = torch.Generator().manual_seed(0)
    intents, tokens = [], []
    for i, hour in enumerate(["7", "9"]):
        for j in range(8):
            x = 0.1 * torch.randn(6, 8, generator=g)
            x[j % 6, :4] = 0.0
            x[j % 6, 4 + i] = 3.0  # the label token
            x[j % 6, 6] = 3.0  # marks it as the one to read
            tokens.append(x)
            intents.append(Intent("alarm", (("hour", hour), ("minute", "30"))))
    feats = torch.stack(tokens)
    heads = train_probe(feats, intents, ProbeConfig(steps=150, heads=2), torch.Generator().manual_seed(0), seed=0)
    assert evaluate_heads(heads, feats, intents)["slot_accuracy"] == 1.0


def test_run_study_end_to_end(tmp_path, _one_thread):
    cfg = study.PRESETS["tiny"]()
    assert cfg.tasks == ("easy", "temporal") and cfg.pretrain.mask.masking == "tube"
    metrics = study.compare(cfg, progress=False)
    assert set(metrics["tasks"]) == {"easy", "temporal"}
    for task, result in metrics["tasks"].items():
        assert set(result["methods"]) == {"jepa", "scratch", "mae"}
        for per_k in result["methods"].values():
            assert set(per_k) == {"1", "2"}
            for cell in per_k.values():
                assert 0.0 <= cell["intent_accuracy"] <= 1.0 and 0.0 <= cell["slot_accuracy"] <= 1.0
                assert cell["slot_accuracy_sd"] == 0.0  # one seed in the tiny preset
                assert "zero_shot" in cell  # both tasks hold out intents (IIW-like)
                assert 0.0 <= cell["zero_shot"]["slot_accuracy"] <= 1.0
        for name in ("jepa", "mae"):
            (history,) = [r["history"] for r in result["pretraining"][name]]
            assert history and all(h["embedding_std"] > 0 and h["effective_rank"] >= 1.0 for h in history)
            (curve,) = result["curve"][name]
            assert [p["step"] for p in curve] == [0, cfg.pretrain.steps]  # checkpoints=2: start and end
            assert all(0.0 <= p["slot_accuracy"] <= 1.0 for p in curve)
        assert result["pretraining"]["jepa"][0]["steps"] == result["pretraining"]["mae"][0]["steps"]

    # The CLI contract, at smoke-test size; a rerun reads the cached comparison back
    out = tmp_path / "jepa"
    result = main(["jepa", "--preset", "tiny", "--out", str(out), "--no-progress"])
    saved = json.loads((out / "jepa_metrics.json").read_text())
    mark = (out / "comparison" / ".stage-done.json").stat().st_mtime_ns
    assert main(["jepa", "--preset", "tiny", "--out", str(out), "--no-progress"])["tasks"] == result["tasks"]
    assert (out / "comparison" / ".stage-done.json").stat().st_mtime_ns == mark
    assert saved["tasks"] == json.loads(json.dumps(result["tasks"]))
    assert (out / "jepa_accuracy.png").stat().st_size > 1000
    report = (out / "jepa_report.md").read_text()
    assert "| jepa |" in report and "## Task `temporal`" in report and "eff. rank" in report


def test_frame_masking_option_runs(_one_thread):
    cfg = study.PRESETS["tiny"]()
    cfg.tasks, cfg.label_counts = ("temporal",), (1,)
    cfg.pretrain.mask.masking = "frame"
    metrics = study.compare(cfg, progress=False)
    assert metrics["config"]["pretrain"]["mask"]["masking"] == "frame"
    assert metrics["tasks"]["temporal"]["pretraining"]["jepa"][0]["history"]


def test_full_preset_is_the_papers_protocol():
    cfg = study.PRESETS["full"]()
    assert cfg.seeds == (0, 1, 2) and cfg.label_counts == (1, 5, 10, 50)
    assert cfg.tasks == ("easy", "temporal") and cfg.pretrain.mask.masking == "tube"


@pytest.mark.slow
def test_quick_preset_runs(_one_thread):
    metrics = study.compare(study.PRESETS["quick"](), progress=False)
    for result in metrics["tasks"].values():
        assert set(result["methods"]) == {"jepa", "scratch", "mae"}


def test_each_seed_is_a_stage_so_more_seeds_reuse_the_finished_ones(tmp_path, _one_thread):
    cfg = study.PRESETS["tiny"]()
    cfg.tasks, cfg.label_counts = ("temporal",), (1,)
    study.run(cfg, tmp_path)
    mark = tmp_path / "temporal" / "seed-0" / ".stage-done.json"
    before = mark.stat().st_mtime_ns
    cfg.seeds = (0, 1)
    metrics = study.run(cfg, tmp_path)
    assert mark.stat().st_mtime_ns == before  # seed 0 read back, not pretrained again
    assert (tmp_path / "temporal" / "seed-1" / ".stage-done.json").exists()
    assert [r["seed"] for r in metrics["tasks"]["temporal"]["pretraining"]["jepa"]] == [0, 1]
