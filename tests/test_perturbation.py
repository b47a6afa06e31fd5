"""The perturbation label source on a tiny hand-made solution."""

import numpy as np
import pytest

from selfprm.labels import get_label_source, run_label_source
from selfprm.labels.perturbation import PerturbationConfig, find_computations, perturb_solution, perturb_solutions
from selfprm.types import Problem, Trajectory


def solution():
    p = Problem("p", "Ann has 16 eggs. She eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?",
                answer="18")
    steps = ["First count the eggs she uses.",
             "She sells 16 - 3 - 4 = 9 eggs.",
             "She makes 9 * 2 = $18.",
             "The answer is 18."]
    return Trajectory(p, steps, final_answer="18", outcome=True)


def test_finds_only_computations_that_check():
    assert [(c.step, c.result) for c in find_computations("She sells 16 - 3 - 4 = 9 eggs.", 1)] == [(1, 9.0)]
    assert find_computations("She sells 16 - 3 - 4 = 8 eggs.") == []  # wrong arithmetic is never a base
    assert find_computations("20 x 40 = 800 seeds") and not find_computations("It is 5 = 5.")


@pytest.mark.parametrize("kind", ["result", "operator", "operand", "drop_term"])
def test_each_kind_corrupts_one_step_and_labels_it_first_error(kind):
    t = solution()
    got = perturb_solution(t, kind, np.random.default_rng(0), step=1)
    assert got is not None
    k = got.meta["perturbation"]["step"]
    assert k == 1 and got.meta["perturbation"]["kind"] == kind
    assert got.steps[0] == t.steps[0]  # steps before it untouched
    assert got.steps[1] != t.steps[1]
    assert find_computations(got.steps[1]) == [] or kind != "result"  # a changed result no longer checks
    assert got.first_error == 1 and got.outcome is None
    (lab,) = get_label_source("perturbation").label([got])
    assert lab.values == [1.0, 0.0, 0.0, 0.0]
    assert lab.weights == [1.0, 1.0, 0.0, 0.0]  # nothing is claimed after the first error
    assert t.steps[1] == "She sells 16 - 3 - 4 = 9 eggs."  # the original is not modified


def test_changed_value_propagates_to_later_steps():
    t = solution()
    got = perturb_solution(t, "drop_term", np.random.default_rng(0), step=1)
    # dropping "- 4" (or "- 3") changes 9 -> 13 (or 12); the next step recomputes and the answer follows
    new = int(got.meta["perturbation"]["to"])
    assert got.steps[1] == f"She sells {'16 - 3' if new == 13 else '16 - 4'} = {new} eggs."
    assert got.steps[2] == f"She makes {new} * 2 = ${2 * new}."
    assert got.steps[3] == f"The answer is {2 * new}."


def test_perturb_solutions_keeps_clean_copies_and_variants():
    t = solution()
    out = perturb_solutions([t], PerturbationConfig(variants=3, seed=1))
    clean = [o for o in out if o.meta["perturbation"] is None]
    bad = [o for o in out if o.meta["perturbation"] is not None]
    assert len(clean) == 1 and clean[0].steps == t.steps
    assert len(bad) == 3 and len({(b.meta["perturbation"]["step"], b.meta["perturbation"]["kind"],
                                   b.meta["perturbation"]["to"]) for b in bad}) == 3
    res = run_label_source("perturbation", out)
    assert res.labels[0].values == [1.0] * 4 and res.policy_tokens == 0
    # solutions not known to be correct are never used as a base
    wrong = solution()
    wrong.outcome = False
    assert perturb_solutions([wrong]) == []


def test_source_refuses_trajectories_it_did_not_make():
    with pytest.raises(ValueError, match="perturb_solutions"):
        get_label_source("perturbation").label([solution()])
