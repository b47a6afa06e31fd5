"""``selfprm eval processbench`` end to end on a tiny PRM, and the real-text backbones."""

import json
import math

import pytest
import torch

from selfprm.cli import main
from selfprm.eval.processbench import scores_from_predictions, split_result
from selfprm.prm.backbones import MINILM_SEPARATOR, causal_lm_prm, check_step_marker, freeze_bottom, load_minilm
from selfprm.prm.model import PRMConfig, ProcessRewardModel


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_minilm()[1]


def tiny_bert_prm(tokenizer, max_length=512):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    return ProcessRewardModel(BertModel(cfg), tokenizer, PRMConfig(step_separator=MINILM_SEPARATOR, max_length=max_length))


def test_minilm_marker_is_a_real_token_at_every_step_end(minilm_tokenizer):
    assert check_step_marker(minilm_tokenizer, MINILM_SEPARATOR)
    assert minilm_tokenizer(MINILM_SEPARATOR, add_special_tokens=False)["input_ids"] == [minilm_tokenizer.sep_token_id]
    prm = tiny_bert_prm(minilm_tokenizer)
    b = prm.encode(["What is 2+2?"], [["2+2 = 4.", "The answer is 4."]])
    at = b.input_ids[0, b.step_positions[0]].tolist()
    assert at == [minilm_tokenizer.sep_token_id] * 2


def test_long_solution_is_cut_from_the_left_never_dropped(minilm_tokenizer):
    prm = tiny_bert_prm(minilm_tokenizer, max_length=40)
    steps = [f"step {i} computes {i} + {i} = {2 * i}." for i in range(8)]
    (scores,) = prm.score_steps(["a long problem " * 20], [steps])
    assert len(scores) == 8
    assert math.isnan(scores[0]) and not math.isnan(scores[-1])  # the start goes first


def test_freeze_bottom_leaves_top_layers_trainable(minilm_tokenizer):
    prm = tiny_bert_prm(minilm_tokenizer)
    total = sum(p.numel() for p in prm.parameters())
    left = freeze_bottom(prm, 1)
    assert 0 < left < total
    assert not any(p.requires_grad for p in prm.backbone.embeddings.parameters())
    assert all(p.requires_grad for p in prm.backbone.encoder.layer[1].parameters())


def test_causal_lm_backbone_scores_steps(tmp_path, tiny_lm, char_tokenizer):
    tiny_lm.save_pretrained(tmp_path / "lm")
    char_tokenizer.save_pretrained(tmp_path / "lm")
    prm = causal_lm_prm(tmp_path / "lm", step_separator="\n", max_length=64, seed=0)
    (s,) = prm.score_steps(["1+2="], [["1+2=3", "3*2=6"]])
    assert len(s) == 2 and all(0.0 < x < 1.0 for x in s)


def test_cli_on_any_processbench_format_file(tmp_path, minilm_tokenizer):
    prm = tiny_bert_prm(minilm_tokenizer)
    prm.save_pretrained(tmp_path / "prm")
    recs = [{"id": f"r{i}", "problem": f"What is {i} + {i}?", "steps": [f"{i} + {i} = {2 * i}", f"The answer is {2 * i}."],
             "label": -1 if i % 2 else 1} for i in range(6)]
    (tmp_path / "gsm8k.json").write_text(json.dumps(recs))
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[:4]))
    res = main(["eval", "processbench", "--prm", str(tmp_path / "prm"),
                "--data", f"{tmp_path / 'gsm8k.json'},{tmp_path / 'mine.jsonl'}", "--out", str(tmp_path / "out"),
                "--batch-size", "4", "--no-progress"])
    assert res["threshold_source"] == "tuned on gsm8k"
    assert set(res["f1"]) == {"gsm8k", "mine", "average"}
    saved = json.loads((tmp_path / "out" / "processbench.json").read_text())
    assert saved["f1"] == res["f1"]
    # the F1 written agrees with the per-record predictions written next to it
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    mine = [r for r in rows if r["split"] == "mine"]
    again = split_result("mine", scores_from_predictions([r["prediction"] for r in mine], [2] * 4),
                         [r["label"] for r in mine], 0.5)
    assert again.f1 == res["f1"]["mine"]
