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


def test_spr_reference_model_is_metastones_head_layer_and_gradient_scale(char_tokenizer):
    from selfprm.policies.tiny import TinyLMConfig, build_tiny_lm
    from selfprm.prm.model import SPR_REFERENCE

    lm = build_tiny_lm(char_tokenizer, TinyLMConfig(n_layer=2, n_head=2, n_embd=16, n_positions=64), seed=0)
    prm = ProcessRewardModel(lm, char_tokenizer, PRMConfig(step_separator="\n", **SPR_REFERENCE))
    c = 16
    assert [type(m).__name__ for m in prm.head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert prm.head[0].weight.shape == (2 * c, c) and prm.head[2].p == 0.5 and prm.head[3].weight.shape == (1, 2 * c)
    # the head reads the penultimate hidden states: changing the last layer leaves the scores alone
    prm.eval()
    before = prm.score_steps(["1+2="], [["1+2=3", "3*2=6"]])
    with torch.no_grad():
        for p in prm.backbone.layers[-1].parameters():
            p.add_(1.0)
    assert prm.score_steps(["1+2="], [["1+2=3", "3*2=6"]]) == before
    # 1e-4 of the head's gradient reaches the backbone (the value is unchanged)
    b = prm.encode(["1+2="], [["1+2=3", "3*2=6"]])
    prm.zero_grad()
    prm(b).sum().backward()
    g_scaled = prm.backbone.embed_tokens.weight.grad.abs().sum()
    full = ProcessRewardModel(lm, char_tokenizer, PRMConfig(step_separator="\n", **{**SPR_REFERENCE, "backbone_grad_scale": 1.0}))
    full.head.load_state_dict(prm.head.state_dict())
    full.eval()
    full.zero_grad()
    full(b).sum().backward()
    assert g_scaled / full.backbone.embed_tokens.weight.grad.abs().sum() == pytest.approx(1e-4, rel=1e-3)


def _separable_spr_case(char_tokenizer):
    """Wrong solutions write a second step no right one does: separable outcome pseudo-labels."""
    from selfprm.policies.tiny import TinyLMConfig, build_tiny_lm
    from selfprm.types import Problem, Trajectory

    lm = build_tiny_lm(char_tokenizer, TinyLMConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64), seed=0)
    trajs = []
    for i in range(40):
        ok = i % 2 == 0
        a = i % 7
        steps = [f"{a}+1={a + 1}", f"{a + 1}*1={a + 1}" if ok else "9*9=9"]
        trajs.append(Trajectory(Problem(f"p{i}", f"Q:{a} +1 *1"), steps, "x", ok, [True, ok]))
    return lm, trajs, [StepLabels([float(t.outcome)] * 2, "spr") for t in trajs]


def test_spr_learns_both_classes_on_a_separable_case(char_tokenizer):
    """The failure that slipped by: SPR's filter collapsing to one class (AUROC 0.5). Here wrong
    solutions write a digit no right one does, so the pseudo-labels are separable and SPR must
    rank the steps of right solutions above those of wrong ones."""
    from selfprm.eval.metrics import step_auroc
    from selfprm.prm.model import SPR_REFERENCE

    lm, trajs, labels = _separable_spr_case(char_tokenizer)
    torch.manual_seed(0)  # the head's initialisation and dropout
    prm = ProcessRewardModel(lm, char_tokenizer, PRMConfig(step_separator="\n", **SPR_REFERENCE))
    train_prm(prm, list(zip(trajs, labels)), PRMTrainConfig(loss="spr", epochs=15, batch_size=8, head_lr=1e-2),
              progress=False)
    scores = prm.score_trajectories(trajs)
    auc = step_auroc([s[1:] for s in scores], [[t.outcome] for t in trajs])  # the step that tells them apart
    assert auc > 0.9, auc
    # a collapsed head (one constant score) would rank nothing: AUROC 0.5
    assert len({round(s[1], 6) for s in scores}) > 1


@pytest.mark.parametrize("warmup,fallback", [(0, False), (30, False), (0, True)])
def test_spr_filter_from_a_one_sided_head_stays_one_sided_and_the_warm_start_recovers(char_tokenizer, warmup, fallback):
    """Why the studies guard SPR: a head whose logits all share one sign keeps only that class in
    the filtered loss (the other's kept share is 0 at every step), so nothing pulls it back and its
    scores rank nothing. Class-balanced BCE before the filter (the warm start), or in place of a
    one-sided filtered batch (the fallback), turns that head round."""
    from selfprm.eval.metrics import step_auroc
    from selfprm.prm.model import SPR_REFERENCE

    lm, trajs, labels = _separable_spr_case(char_tokenizer)
    torch.manual_seed(0)
    prm = ProcessRewardModel(lm, char_tokenizer, PRMConfig(step_separator="\n", **SPR_REFERENCE))
    with torch.no_grad():
        prm.head[-1].bias.fill_(3.0)  # every step starts on the positive side
    assert min(min(s) for s in prm.score_trajectories(trajs)) > 0.5
    hist = train_prm(prm, list(zip(trajs, labels)), PRMTrainConfig(
        loss="spr", epochs=15, batch_size=8, head_lr=5e-2, log_every=1, spr_warmup_steps=warmup,
        spr_one_sided_fallback=fallback), progress=False)
    auc = step_auroc([s[1:] for s in prm.score_trajectories(trajs)], [[t.outcome] for t in trajs])
    if not warmup and not fallback:
        assert max(hist.spr_kept_neg) == 0.0 and min(hist.spr_kept_pos) == 1.0  # absorbing: one class only
        assert min(min(s) for s in prm.score_trajectories(trajs)) > 0.5
        assert auc < 0.6, auc  # and it ranks nothing
        assert hist.spr_fallback_steps == 0
    else:
        if warmup:
            assert hist.spr_kept_neg[0] > 0.2  # the filter starts with both classes in the loss
        else:
            assert hist.spr_fallback_steps > 0 and hist.spr_kept_neg[0] == 0.0
        assert auc > 0.9, auc
