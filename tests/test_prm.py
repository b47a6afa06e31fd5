import math

import pytest
import torch

from selfprm.prm import AGGREGATIONS, PRMConfig, PRMTrainConfig, ProcessRewardModel, aggregate, train_prm
from selfprm.types import StepLabels


def _prm(tiny_lm, tok, **kw):
    torch.manual_seed(0)
    return ProcessRewardModel(tiny_lm, tok, PRMConfig(**kw)).eval()


def test_one_pass_scores_equal_prefix_by_prefix_scores(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer)
    steps = ["7+5=2", "2*3=6", "6-4=2", "2+0=2"]
    full = prm.score_steps(["Q:7 +5 *3 -4"], [steps])[0]
    prefix = [prm.score_steps(["Q:7 +5 *3 -4"], [steps[: i + 1]])[0][-1] for i in range(len(steps))]
    assert len(full) == 4
    assert full == pytest.approx(prefix, abs=1e-5)  # a decoder reads each step with its prefix only


def test_batched_scores_do_not_depend_on_padding(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer)
    a = prm.score_steps(["Q:1 +1"], [["1+1=2"]])[0]
    b = prm.score_steps(["Q:1 +1", "Q:3 *3 +4 -1"], [["1+1=2"], ["3*3=9", "9+4=3", "3-1=2"]])
    assert b[0] == pytest.approx(a, abs=1e-5) and len(b[1]) == 3


def test_step_ends_are_read_at_the_separator(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer)
    b = prm.encode(["Q:1 +1"], [["1+1=2", "2+0=2"]])
    ids = b.input_ids[0].tolist()
    nl = char_tokenizer.convert_tokens_to_ids("\n")
    assert [ids[p] for p in b.step_positions[0].tolist()] == [nl, nl]
    assert char_tokenizer.decode(ids[: b.step_positions[0, 0] + 1], skip_special_tokens=True) == "Q:1 +1\n1+1=2\n"


def test_long_inputs_are_cut_from_the_left_of_the_problem(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer, max_length=20)
    prompt = "Q:1" + " +1" * 10  # 33 characters: longer than the limit on its own
    b = prm.encode([prompt], [["1+1=2", "2+1=3"]])
    assert b.input_ids.shape[1] == 20 and bool(b.step_mask.all())
    text = char_tokenizer.decode(b.input_ids[0].tolist(), skip_special_tokens=True)
    assert text.endswith("+1\n1+1=2\n2+1=3\n") and not text.startswith("Q:")
    assert b.input_ids[0, 0].item() == char_tokenizer.bos_token_id  # the start token stays
    # steps that cannot fit at all are reported unscored, never silently dropped
    s = prm.score_steps([prompt], [["1+1=2"] * 5])[0]
    assert len(s) == 5 and math.isnan(s[0]) and not math.isnan(s[-1])


def test_training_fits_hand_labels_and_save_load_roundtrip(tmp_path, domain, tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer)
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3)])
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6"], "6")
    bad = domain.make_trajectory(p, ["7+5=2", "2*3=5"], "5")
    data = [(good, StepLabels([1.0, 1.0], "oracle")), (bad, StepLabels([1.0, 0.0], "oracle"))] * 8
    hist = train_prm(prm, data, PRMTrainConfig(epochs=60, batch_size=16, lr=3e-3, head_lr=3e-2), progress=False)
    assert hist.loss[-1] < hist.loss[0] * 0.5
    s_good, s_bad = prm.score_trajectories([good, bad])
    assert s_good[1] > 0.5 > s_bad[1]
    prm.save_pretrained(tmp_path / "prm")
    again = ProcessRewardModel.from_pretrained(tmp_path / "prm")
    a_good, a_bad = again.score_trajectories([good, bad])
    assert a_good == pytest.approx(s_good, abs=1e-5) and a_bad == pytest.approx(s_bad, abs=1e-5)


def test_spr_training_logs_kept_shares(domain, tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer)
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3)])
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6"], "6")
    bad = domain.make_trajectory(p, ["7+5=2", "2*3=5"], "5")
    data = [(good, StepLabels([1.0, 1.0], "spr")), (bad, StepLabels([0.0, 0.0], "spr"))] * 4
    hist = train_prm(prm, data, PRMTrainConfig(loss="spr", epochs=3, batch_size=4, log_every=1, spr_warmup_steps=2),
                     progress=False)
    assert len(hist.spr_step) == len(hist.loss) - 2 and hist.spr_step[0] == 2  # warm start, then the filter
    assert all(0 <= x <= 1 for x in hist.spr_kept_pos + hist.spr_kept_neg)


def test_aggregations_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "product") == pytest.approx(0.36)
    assert aggregate(s, "geomean") == pytest.approx(0.36 ** (1 / 3))
    assert aggregate([math.nan, 0.7], "min") == 0.7 and aggregate([], "min") == 0.0
    assert set(AGGREGATIONS) == {"min", "product", "last", "geomean"}
    with pytest.raises(ValueError):
        aggregate(s, "max")


def _token_logprobs(lm, tok, prompt, steps):
    """log p(x_t | x_<t) of every token of each ``step\\n``, straight from the causal LM."""
    ids = [tok.bos_token_id] + tok(prompt + "\n", add_special_tokens=False)["input_ids"]
    spans = []
    for s in steps:
        a = len(ids)
        ids += tok(s + "\n", add_special_tokens=False)["input_ids"]
        spans.append((a, len(ids)))
    with torch.no_grad():
        lp = lm(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    return [[lp[t - 1, ids[t]].item() for t in range(a, b)] for a, b in spans]


def test_surprise_features_are_the_step_tokens_log_probs(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer, surprise_features=True)
    steps = ["7+5=2", "2*3=5", "5-4=1"]
    per_step = _token_logprobs(tiny_lm, char_tokenizer, "Q:7 +5 *3 -4", steps)
    b = prm.encode(["Q:7 +5 *3 -4"], [steps])
    hidden = prm.backbone(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
    feats = prm._surprise(hidden, b)[0].tolist()
    mins = [min(x) for x in per_step]
    for j, (s_min, mean, run_min) in enumerate(feats):
        assert s_min == pytest.approx(mins[j], abs=1e-4)
        assert mean == pytest.approx(sum(per_step[j]) / len(per_step[j]), abs=1e-4)
        assert run_min == pytest.approx(min(mins[: j + 1]), abs=1e-4)  # carries an early surprise forward


def test_surprise_scores_stay_one_pass_and_padding_free(tiny_lm, char_tokenizer):
    prm = _prm(tiny_lm, char_tokenizer, surprise_features=True)
    steps = ["7+5=2", "2*3=6", "6-4=2"]
    full = prm.score_steps(["Q:7 +5 *3 -4"], [steps])[0]
    prefix = [prm.score_steps(["Q:7 +5 *3 -4"], [steps[: i + 1]])[0][-1] for i in range(len(steps))]
    assert full == pytest.approx(prefix, abs=1e-5)
    both = prm.score_steps(["Q:1 +1", "Q:7 +5 *3 -4"], [["1+1=2"], steps])
    assert both[1] == pytest.approx(full, abs=1e-5)


def test_surprise_features_need_an_lm_head_and_survive_save_load(tmp_path, tiny_lm, char_tokenizer):
    from selfprm.prm.model import base_model

    with pytest.raises(ValueError, match="LM head"):
        ProcessRewardModel(base_model(tiny_lm), char_tokenizer, PRMConfig(surprise_features=True))
    prm = _prm(tiny_lm, char_tokenizer, surprise_features=True)
    s = prm.score_steps(["Q:7 +5"], [["7+5=2"]])
    prm.save_pretrained(tmp_path / "p")
    again = ProcessRewardModel.from_pretrained(tmp_path / "p")
    assert again.config.surprise_features and again.score_steps(["Q:7 +5"], [["7+5=2"]])[0] == pytest.approx(s[0], abs=1e-5)
