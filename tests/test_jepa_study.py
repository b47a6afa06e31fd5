"""Probe/decoder sanity and one end-to-end run of the study at smoke-test size."""

import json

import pytest
import torch

from selfprm.jepa.intent import ProbeConfig, TextDecoderConfig, evaluate_heads, token_f1, train_probe, train_text_decoder
from selfprm.cli import main
from selfprm.studies import jepa as study
from selfprm.jepa.ui_streams import Intent


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
    dec = train_text_decoder(feats, intents, TextDecoderConfig(steps=250), torch.Generator().manual_seed(0), seed=0)
    assert dec.generate(feats[:1]) == ["set an alarm for 7:30"]
    assert token_f1("call ann", "video call ann") == pytest.approx(0.8)


@pytest.mark.slow
def test_run_study_end_to_end(tmp_path):
    metrics = study.compare(study.PRESETS["tiny"](), progress=False)
    assert set(metrics["methods"]) == {"jepa", "scratch", "mae"}
    for per_k in metrics["methods"].values():
        assert set(per_k) == {"1", "2"}
        for cell in per_k.values():
            assert 0.0 <= cell["intent_accuracy"] <= 1.0 and 0.0 <= cell["slot_accuracy"] <= 1.0
    history = metrics["pretraining"]["jepa"]["history"]
    assert history and all(h["embedding_std"] > 0 for h in history)
    assert metrics["pretraining"]["jepa"]["steps"] == metrics["pretraining"]["mae"]["steps"]

    # The CLI contract, at smoke-test size; a rerun reads the cached comparison back
    out = tmp_path / "jepa"
    result = main(["jepa", "--preset", "tiny", "--out", str(out), "--no-progress"])
    saved = json.loads((out / "jepa_metrics.json").read_text())
    mark = (out / "comparison" / ".stage-done.json").stat().st_mtime_ns
    assert main(["jepa", "--preset", "tiny", "--out", str(out), "--no-progress"])["methods"] == result["methods"]
    assert (out / "comparison" / ".stage-done.json").stat().st_mtime_ns == mark
    assert saved["methods"] == json.loads(json.dumps(result["methods"]))
    assert (out / "jepa_accuracy.png").stat().st_size > 1000
    assert "| jepa |" in (out / "jepa_report.md").read_text()
