"""The ``code`` domain: reference programs, the step oracle, sandboxed outcomes, the demo on it."""

import math

import numpy as np
import pytest

from selfprm.domains import DOMAINS
from selfprm.domains.code import CodeConfig, CodeDomain, sandboxed_tests
from selfprm.labels import get_label_source, run_label_source
from selfprm.policies.base import Prefix, TextCompletionPolicy, judge_texts


@pytest.fixture(scope="module")
def domain():
    return CodeDomain()


@pytest.fixture(scope="module")
def problem(domain):
    # f(x): a = 3x; xs = [x, 3x]; b = 4x; c = max(xs) = 3x    -> f(1)=3, f(2)=6, f(5)=15
    return domain.make_problem("hand", ["*3", "push", "+x", "max"], [1, 2, 5])


def test_a_problem_states_its_tests_and_its_reference_passes(domain, problem):
    assert problem.prompt == "Q:*3 push +x max T:f(1)=3 f(2)=6 f(5)=15"
    assert problem.meta["lines"] == ["a=x*3", "xs.append(a)", "b=a+x", "c=max(xs)"] and problem.answer == "c"
    assert DOMAINS.get("code") is CodeDomain
    # a reference back: @1 is the latest value, @2 the one before (pushes make none)
    refs = domain.make_problem("refs", ["*3", "+@2", "push", "-@2", "max"], [1, 2, 3])
    assert refs.meta["lines"] == ["a=x*3", "b=a+x", "xs.append(b)", "c=b-a", "d=max(xs)"]
    assert refs.meta["tests"] == [[1, 4], [2, 8], [3, 12]]
    for p in domain.sample_problems(20, seed=3):
        steps, ans = domain.worked_solution(p, np.random.default_rng(0))
        assert all(domain.judge_steps(p, steps)) and p.meta["ops"][-1] != "push"
        assert domain.make_trajectory(p, steps, ans).outcome is True


def test_step_labels_by_hand(domain, problem):
    judge = lambda steps: domain.judge_steps(problem, steps)  # noqa: E731
    assert judge(["a=x*3", "xs.append(a)", "b=a+x", "c=max(xs)"]) == [True] * 4
    # a wrong first value: every completion by the reference returns 2x, not 3x
    assert judge(["a=x*2", "xs.append(a)", "b=a+x", "c=max(xs)"]) == [False] * 4
    # pushing x instead of a: max(xs) is then x
    assert judge(["a=x*3", "xs.append(x)", "b=a+x", "c=max(xs)"]) == [True, False, False, False]
    # b is dead code (max(xs) ignores it): a wrong b still reaches a passing program
    assert judge(["a=x*3", "xs.append(a)", "b=a*x", "c=max(xs)"]) == [True] * 4
    # min instead of max gives x: wrong from there on
    assert judge(["a=x*3", "xs.append(a)", "b=a+x", "c=min(xs)"]) == [True, True, True, False]
    # a line outside the grammar leaves the state unknown for good, even if harmless in Python
    assert judge(["a=x*3", "pass", "xs.append(a)", "b=a+x"]) == [True, False, False, False]
    # an unknown name fails
    assert judge(["a=q*3"]) == [False]
    # squaring without bound makes the state unknown instead of stalling the parent
    assert judge(["a=x*3"] + ["a=a*a"] * 40)[-1] is False


def test_parse_and_render_round_trip(domain, problem):
    steps, ans = domain.worked_solution(problem, np.random.default_rng(0))
    text = domain.sft_text(problem, steps, ans)
    assert text == problem.prompt + "\na=x*3\nxs.append(a)\nb=a+x\nc=max(xs)\nA:c"
    got_steps, got_ans, truncated = domain.parse_completion(text[len(domain.render(problem)):])
    assert (got_steps, got_ans, truncated) == (steps, ans, False)
    src = domain.program(steps, ans)
    assert src == "def f(x):\n    xs=[x]\n    a=x*3\n    xs.append(a)\n    b=a+x\n    c=max(xs)\n    return c\n"
    assert domain.parse_program(src) == (steps, ans)
    with pytest.raises(ValueError, match="def f"):
        domain.parse_program("print(1)")
    assert set(text) <= set(domain.charset())


def test_right_and_wrong_programs_in_the_sandbox(domain, problem):
    tests = problem.meta["tests"]
    right = domain.program(problem.meta["lines"], "c")
    wrong = domain.program(["a=x*3", "xs.append(a)", "b=a+x", "c=min(xs)"], "c")
    crash = domain.program(["a=x/0"], "a")
    cheat = "class A:\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return A()\n"
    assert sandboxed_tests([(right, tests), (wrong, tests), (crash, tests), (cheat, tests)]) == [True, False, False, False]
    assert sandboxed_tests([(right, tests), (wrong, tests)], batched=False) == [True, False]
    # through the domain: outcome from the sandbox, labels from the oracle, truncated fails
    t = domain.from_text(problem, ["a=x*3"], "xs.append(a)\nb=a+x\nc=min(xs)\nA:c", 9)
    assert t.outcome is False and t.oracle_labels == [True, True, True, False] and t.first_error == 3
    t = domain.from_text(problem, [], "a=x*3\nxs.append(a)\nb=a+x\nc=max(xs)\nA:c", 30)
    assert t.outcome is True and t.first_error == -1
    many = domain.from_texts([(problem, [], "a=x*3\nxs.append(a)\nb=a+x\nc=max(xs)\nA:c", 30),
                              (problem, [], "a=x*3\nxs.append(x)\n", 10)])
    assert [t.outcome for t in many] == [True, False] and many[1].truncated


class _ScriptedPolicy:
    """Writes the reference with the first line wrong every other time (a stand-in for the LM)."""

    def __init__(self, domain):
        self.domain, self.calls = domain, 0

    def sample(self, problems, n):
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes, n):
        out = []
        for p in prefixes:
            group = []
            for j in range(n):
                self.calls += 1
                lines = list(p.problem.meta["lines"][len(p.steps):])
                if lines and (self.calls % 2):
                    lines[0] = lines[0].replace("x", "q", 1) if "x" in lines[0] else "a=q+1"
                group.append(self.domain.from_text(p.problem, p.steps, "".join(s + "\n" for s in lines)
                                                   + "A:" + p.problem.answer, 5))
            out.append(group)
        return out


def test_label_sources_run_unchanged_on_code(domain):
    problems = domain.sample_problems(6, seed=1)
    policy = _ScriptedPolicy(domain)
    pool = [t for g in policy.sample(problems, 2) for t in g]
    assert {t.outcome for t in pool} == {True, False}
    res = run_label_source(get_label_source("mc", n_rollouts=2), pool, policy)
    flat = [v for l in res.labels for v in l.values]
    assert len(flat) == sum(len(t.steps) for t in pool) and res.policy_tokens > 0
    assert any(v < 0.5 for v in flat) and any(v >= 0.5 for v in flat)


class _ScriptedCompletions(TextCompletionPolicy):
    """A text-completion backend writing the rest of the reference, first line wrong every other time."""

    def __init__(self, domain, problems):
        self.domain, self.problems, self.calls, self._texts = domain, problems, 0, 0

    def complete(self, prompts, n):
        self.calls += 1
        out = []
        for prompt in prompts:
            group = []
            for _ in range(n):
                self._texts += 1
                p = next(q for q in self.problems if prompt.startswith(q.prompt + "\n"))
                done = len([ln for ln in prompt.split("\n")[1:] if ln])
                lines = list(p.meta["lines"][done:])
                if lines and self._texts % 2:
                    lines[0] = "a=q+1"
                group.append(("".join(s + "\n" for s in lines) + "A:" + p.answer, 5))
            out.append(group)
        return out


def _count_sandbox_runs(monkeypatch) -> list[int]:
    import selfprm.sandbox as sandbox

    real, runs = sandbox.run_sandboxed, []

    def counting(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sandbox, "run_sandboxed", counting)
    return runs


def test_mc_labelling_on_code_runs_one_sandbox_per_continuation_batch(monkeypatch):
    domain = CodeDomain()  # a fresh verdict cache
    problems = domain.sample_problems(4, seed=5)
    policy = _ScriptedCompletions(domain, problems)
    pool = [t for g in policy.sample(problems, 2) for t in g]
    runs = _count_sandbox_runs(monkeypatch)
    policy.calls = 0
    res = run_label_source(get_label_source("mc", n_rollouts=2, batch_prefixes=3), pool, policy)
    n_prefixes = len({(t.problem.id, tuple(t.steps[:i + 1])) for t in pool for i in range(len(t.steps))})
    assert policy.calls == math.ceil(n_prefixes / 3) >= 2
    # one sandboxed process per continuation batch at most (fewer where every program was seen),
    # against one per distinct program before batching
    assert 1 <= len(runs) <= policy.calls < n_prefixes
    flat = [v for l in res.labels for v in l.values]
    assert any(v < 0.5 for v in flat) and any(v >= 0.5 for v in flat)
    # the batch gives the verdicts judging one completion at a time gives
    items = [(p, [], "".join(s + "\n" for s in p.meta["lines"]) + "A:" + p.answer, 3) for p in problems]
    items.append((problems[0], [], "a=q+1\nA:a", 2))
    batched = judge_texts(CodeDomain(), items)
    alone = [CodeDomain().from_text(*it) for it in items]
    assert [(t.steps, t.outcome, t.oracle_labels, t.truncated) for t in batched] == \
        [(t.steps, t.outcome, t.oracle_labels, t.truncated) for t in alone]
    assert [t.outcome for t in batched] == [True] * len(problems) + [False]


def _count_batches(monkeypatch) -> list[int]:
    """The sizes of the batches CodeDomain judges, call by call; judging one completion alone fails."""
    sizes: list[int] = []
    real = CodeDomain.from_texts

    def counting(self, items):
        sizes.append(len(items))
        return real(self, items)

    monkeypatch.setattr(CodeDomain, "from_texts", counting)
    monkeypatch.setattr(CodeDomain, "from_text", lambda *a: pytest.fail("judged one completion alone"))
    return sizes


def test_lm_policy_and_rollouts_judge_each_batch_at_once(monkeypatch):
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig
    from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
    from selfprm.rl.rollout import sample_rollouts

    domain = CodeDomain()
    tok = build_char_tokenizer(domain.charset())
    model = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=96))
    sizes = _count_batches(monkeypatch)
    prefixes = [Prefix(p, []) for p in domain.sample_problems(3, seed=2)]
    groups = HFPolicy(model, tok, domain, HFPolicyConfig(max_new_tokens=12)).continue_from(prefixes, 2)
    assert sizes == [6] and [len(g) for g in groups] == [2, 2, 2]
    sizes.clear()
    rolls = sample_rollouts(model, tok, domain, prefixes, 2, max_new_tokens=12, batch_size=4)
    assert sizes == [4, 2] and [r.group for r in rolls] == [0, 0, 1, 1, 2, 2]


def test_batched_judging_leaves_other_domains_and_wrappers_alone():
    from selfprm.domains.arith import ArithDomain
    from selfprm.rl.pcl import PostCompletionDomain

    arith = ArithDomain()
    p = arith.sample_problems(1, seed=0)[0]
    steps, ans = arith.worked_solution(p, np.random.default_rng(0))
    items = [(p, [], "\n".join(steps) + "\nA:" + ans, 7), (p, steps[:1], "junk\n", 2)]
    assert judge_texts(arith, items) == [arith.from_text(*it) for it in items]
    # PCL delegates by __getattr__: the batch call must not bypass its own from_text
    code = CodeDomain()
    q = code.sample_problems(1, seed=0)[0]
    text = "".join(s + "\n" for s in q.meta["lines"]) + "A:" + q.answer
    got = judge_texts(PostCompletionDomain(code), [(q, [], text + "#f1a1r2", 3)])
    assert got[0].meta["post_completion"] == "f1a1r2" and got[0].outcome is True


def test_pcl_over_code_judges_a_batch_in_one_call(monkeypatch):
    from selfprm.policies.base import judge_texts
    from selfprm.rl.pcl import PostCompletionDomain

    code = CodeDomain()
    q = code.sample_problems(1, seed=0)[0]
    text = "".join(s + "\n" for s in q.meta["lines"]) + "A:" + q.answer
    sizes = _count_batches(monkeypatch)
    got = judge_texts(PostCompletionDomain(code), [(q, [], text + "#f1a1r2", 3), (q, [], "a=1\nA:a#f0", 2),
                                                   (q, [], text, 3)])
    assert sizes == [3]  # one sandboxed batch, the marker and evaluation cut off before it
    assert [t.outcome for t in got] == [True, False, True]
    assert [t.meta["post_completion"] for t in got] == ["f1a1r2", "f0", None]


@pytest.mark.slow
def test_demo_runs_on_code(tmp_path):
    """A tiny demo on ``code``: the pipeline runs, the pool holds both sound and unsound steps."""
    from selfprm.policies.tiny import SFTConfig, TinyLMConfig
    from selfprm.prm import PRMTrainConfig
    from selfprm.studies.demo import DemoConfig, run as run_demo

    # no back references: a policy after 150 SFT steps then writes some steps right (~7% measured)
    easy = CodeConfig(min_ops=2, max_ops=3, op_weights={"const": 0.5, "input": 0.2, "push": 0.15, "reduce": 0.15})
    cfg = DemoConfig(domain="code", code=easy,
                     lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=64, n_positions=128),
                     sft=SFTConfig(steps=150, batch_size=32, warmup=5), n_sft_problems=400, max_new_tokens=48,
                     n_train_problems=10, samples_per_train_problem=2, n_dev_problems=5, samples_per_dev_problem=2,
                     n_test_problems=5, bon_n=4, mc_rollouts=2, sources=("oracle", "outcome", "mc"),
                     prm=PRMTrainConfig(epochs=1, batch_size=8))
    m = run_demo(cfg, tmp_path / "demo", progress=False)
    assert m["domain"] == "code" and m["domain_config"]["max_ops"] == 3
    assert 0 < m["policy"]["step_error_rate"] < 1, m["policy"]  # both label classes present
    assert set(m["label_sources"]) == {"oracle", "outcome", "mc"}
    assert m["label_sources"]["mc"]["policy_tokens"] > 0
    assert all(math.isfinite(r["label_accuracy_vs_oracle"]) for r in m["label_sources"].values())


def test_the_studies_pick_the_code_domain():
    import argparse

    from selfprm.cli import add_study_arguments, config_from_args
    from selfprm.studies import demo, label_efficiency
    from selfprm.studies.demo import DemoConfig, study_domain
    from selfprm.studies.label_efficiency import LabelEfficiencyConfig

    cfg = DemoConfig(domain="code")
    d = study_domain(cfg.domain, cfg.arith, cfg.code)
    assert isinstance(d, CodeDomain) and d.config == CodeConfig()
    assert type(study_domain("arith", cfg.arith, cfg.code)).__name__ == "ArithDomain"
    with pytest.raises(ValueError, match="domain must be"):
        DemoConfig(domain="cobol")
    with pytest.raises(ValueError, match="simulated"):
        LabelEfficiencyConfig(domain="code", policy="simulated")
    assert LabelEfficiencyConfig(domain="code").code == CodeConfig()
    # the command line as the issue words it: `selfprm demo --domain code`, arith's knobs under --arith.
    for mod in (demo, label_efficiency):
        ap = argparse.ArgumentParser()
        add_study_arguments(ap, mod)
        got = config_from_args(mod, ap.parse_args(["--domain", "code", "--code.max-ops", "5", "--arith.min-ops", "2"]))
        assert (got.domain, got.code.max_ops, got.arith.min_ops) == ("code", 5, 2)
        assert config_from_args(mod, ap.parse_args([])).domain == "arith"
