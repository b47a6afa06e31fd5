"""Fast checks of ``selfprm rl``'s config, row summaries and report (no model is trained)."""

import pytest

from selfprm.rl.report import markdown_table, plot_learning_curves
from selfprm.studies.rl import PRESETS, RLConfig, _summarise, reward_of


def test_reward_is_read_off_the_row_name():
    assert reward_of("outcome") == reward_of("outcome_tools") == "outcome"
    assert reward_of("prm:mc") == "prm:mc" and reward_of("prm:path") == "prm:path"
    assert reward_of("spr_online") == "spr_online" and reward_of("prime") == "prime"
    assert reward_of("some_new_method") == "some_new_method"


def test_config_checks_regimes_and_sources():
    with pytest.raises(ValueError):
        RLConfig(regimes=("short", "dense"))
    with pytest.raises(Exception):
        RLConfig(prm_sources=("oracle", "no_such_source"))
    with pytest.raises(ValueError, match="no settings"):
        RLConfig(methods=("outcome", "spr_online:nothing"))
    assert RLConfig().row_variants["spr_online:step"] == {"advantage": "step"}
    assert "spr_online:step" in RLConfig().methods
    full, quick = PRESETS["full"](), PRESETS["quick"]()
    assert full.prm_sources == ("oracle", "outcome", "spr", "mc", "omega", "implicit", "tree")
    assert full.regimes == quick.regimes == ("short", "sparse")
    assert full.token_budget > 0 and quick.token_budget > 0  # methods compare at equal policy tokens
    assert quick.seeds == 1 and quick.prm_sources == full.prm_sources and quick.methods == full.methods  # every row runs


def _rec(accs, toks, samples=(0, 8, 16)):
    return {"accuracy": [[s, a] for s, a in zip(samples, accs)], "tokens": [[t, a] for t, a in zip(toks, accs)],
            "samples": samples[-1], "seconds": 1.0, "domain": "arith", "policy_tokens": toks[-1]}


def test_summary_shifts_the_token_curve_by_the_label_cost_and_spreads_over_seeds():
    recs = [_rec([0.2, 0.4, 0.6], [0, 100, 200]), _rec([0.2, 0.2, 0.4], [0, 120, 220])]
    m = _summarise(recs, "tokens", offset=1000)
    assert [x for x, _ in m["tokens"]] == [1000, 1110, 1210]
    assert [a for _, a in m["tokens"]] == pytest.approx([0.2, 0.3, 0.5])
    assert m["final_accuracy"] == pytest.approx(0.5) and m["final_accuracy_std"] == pytest.approx(0.02 ** 0.5)  # sample sd (ddof 1) of 0.6, 0.4
    assert m["seeds"] == 2 and m["policy_tokens"] == 210
    assert m["tokens_per_sample"] == pytest.approx((200 / 16 + 220 / 16) / 2) and m["final_kl"] is None  # no KL kept
    recs[0]["kl"], recs[1]["kl"] = [0.0, 0.1], [0.0, 0.3]
    assert _summarise(recs, "tokens")["final_kl"] == pytest.approx(0.2)
    assert [x for x, _ in _summarise(recs, "tokens")["tokens"]] == [0, 110, 210]


def _metrics():
    def row(final, sd, reward, regime, label=None, seeds=3):
        m = {"accuracy": [[0, 0.2], [8, final]], "tokens": [[label or 0, 0.2], [(label or 0) + 500, final]],
             "accuracy_std": [0.0, sd], "final_accuracy": final, "final_accuracy_std": sd, "seeds": seeds,
             "policy_tokens": 500, "reward": reward, "regime": regime, "domain": "arith", "samples": 16,
             "accuracy_per_seed": [[0.2, final]] * seeds}
        if label is not None:
            m.update(label_policy_tokens=label, label_token_passes=10 * label)
        return m
    return {"regimes": {
        "short": {"sft_accuracy": 0.4, "methods": {
            "outcome": row(0.5, 0.01, "outcome", "short"),
            "prm:oracle": row(0.7, 0.01, "prm:oracle", "short", label=300),
            "prm:mc": row(0.45, 0.01, "prm:mc", "short", label=900)}},
        "sparse": {"sft_accuracy": 0.1, "methods": {
            "outcome": row(0.1, 0.02, "outcome", "sparse"),
            "prm:mc": row(0.3, 0.02, "prm:mc", "sparse", label=1500)}},
        "tools": {"sft_accuracy": 0.3, "methods": {"outcome_tools": row(0.3, 0.0, "outcome", "tools", seeds=1),
                                                   "toolpo": row(0.35, 0.0, "toolpo", "tools", seeds=1)}}},
        "search": None}


def test_table_has_a_row_per_reward_per_regime_with_verdicts(tmp_path):
    t = markdown_table(_metrics())
    lines = {tuple(c.strip() for c in line.strip("|").split("|")) for line in t.splitlines() if line.startswith("|")}
    by = {(c[0], c[1]): c for c in lines if len(c) > 2}
    assert by[("short", "prm:oracle")][5] == "0.700 ± 0.010"
    assert by[("short", "prm:oracle")][8] == "+0.200 (better)" and by[("short", "prm:oracle")][9] == "baseline"
    assert by[("short", "prm:mc")][9] == "-0.250 (worse)" and by[("short", "prm:mc")][6] == "900"
    assert by[("short", "prm:mc")][7] == "1400"  # labels + GRPO
    assert by[("sparse", "prm:mc")][8] == "+0.200 (better)" and by[("sparse", "prm:mc")][9] == "—"
    assert by[("tools", "toolpo")][8] == "+0.050 (one seed: no verdict)"
    assert by[("tools", "outcome_tools")][8] == "baseline"
    # the closest self-supervised reward, per regime that has the oracle-PRM row
    assert "Regime short: the self-supervised reward closest to prm:oracle (0.700) is prm:mc, -0.250 ± 0.000" in t
    assert "Regime sparse:" not in t
    plot_learning_curves(_metrics(), tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_closest_self_supervised_reward_to_the_oracle_prm_is_paired_by_seed():
    from selfprm.rl.report import closest_to_reference, is_self_supervised

    def row(finals):
        return {"accuracy_per_seed": [[0.2, f] for f in finals], "final_accuracy": sum(finals) / len(finals)}

    methods = {"outcome": row([0.50, 0.50, 0.50]),  # the baseline: never a candidate, however close
               "prm:oracle": row([0.50, 0.60, 0.70]),
               "prm:mc": row([0.40, 0.50, 0.60]),  # -0.1 at every seed
               "prime": row([0.55, 0.60, 0.80]),  # +0.05, 0, +0.1: mean +0.05
               "r3": row([0.50, 0.60, 0.70])}  # reads demonstrations: not self-supervised
    c = closest_to_reference(methods)
    assert c["row"] == "prime" and c["gap"] == pytest.approx(0.05) and c["gap_sd"] == pytest.approx(0.05)
    assert set(c["gaps"]) == {"prm:mc", "prime"} and c["gaps"]["prm:mc"]["gap_sd"] == pytest.approx(0.0, abs=1e-12)
    assert closest_to_reference({k: v for k, v in methods.items() if k != "prm:oracle"}) is None
    assert [r for r in ("spr_online:step", "tree_grpo", "srl", "prm:oracle", "outcome_tools") if is_self_supervised(r)] \
        == ["spr_online:step", "tree_grpo"]
