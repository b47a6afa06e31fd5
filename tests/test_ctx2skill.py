"""Ctx2Skill self-play: skill edits reach the Reasoner's prompt, routing, the replay, and a run
against a local OpenAI-compatible server process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from selfprm.domains.arith import ArithDomain
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.selfplay import roles
from selfprm.selfplay.ctx2skill import Ctx2SkillConfig, SelfPlay, run_ctx2skill, self_play
from selfprm.domains.arith import apply_op
from selfprm.selfplay.reasoner_lm import (ReasonerLMConfig, all_facts, chain_facts, entry_effect, reasoner_prompt,
                                         training_examples, weak_facts)
from selfprm.selfplay.replay import ReplayScore, select_balanced
from selfprm.selfplay.skills import Edit, SkillSet, apply_edits, parse_edits, parse_skills, parse_support


def test_skill_edit_changes_reasoner_prompt():
    task = ArithDomain().make_problem("t", 7, [("*", 8)])
    before = SkillSet(("3+4=7",))
    after = apply_edits(before, parse_edits("ADD: 7*8=6\nDELETE: 3+4=7"))
    assert after.entries == ("7*8=6",)
    m0, m1 = roles.reasoner_messages(before, task), roles.reasoner_messages(after, task)
    assert m0[0]["content"] == "# Skills\n- 3+4=7\n" and m1[0]["content"] == "# Skills\n- 7*8=6\n"
    # the tiny Reasoner's text changes the same way, and only in the skill part
    p0, p1 = (reasoner_prompt(m[0]["content"], m[1]["content"]) for m in (m0, m1))
    assert p0 != p1 and p1 == "# Skills\n- 7*8=6\nQ:7 *8\n"
    # the offline Generator applies the edits through its chat messages, oldest dropped past capacity
    reply = roles.offline_generator(roles.generator_messages(
        "reasoner", SkillSet(("1+1=2", "2+2=4")), [Edit("ADD", "7*8=6")], capacity=2))
    assert parse_skills(reply).entries == ("2+2=4", "7*8=6")


def test_bad_skill_file_and_edit_name_the_line():
    with pytest.raises(ValueError, match=r"f\.md:3"):
        parse_skills("# Skills\n- ok\nnot a bullet\n", "f.md")
    with pytest.raises(ValueError, match=r"edits:2"):
        parse_edits("ADD: x\nMAYBE: y", "edits")
    with pytest.raises(ValueError, match=r"ch:1"):
        roles.parse_task("Q:seven", ArithDomain(), source="ch")


def test_replay_picks_the_balanced_set():
    # set 0 passes only easy probes, set 2 only hard ones; set 1 balances both
    scores = [ReplayScore(1.0, 0.0), ReplayScore(0.75, 0.5), ReplayScore(0.25, 0.75)]
    assert select_balanced(scores) == 1
    assert select_balanced([ReplayScore(0.5, 0.5), ReplayScore(1.0, 0.0)]) == 1  # ties go to the later set
    with pytest.raises(ValueError):
        select_balanced([])


class FakeClient:
    """In-process stand-in for a chat server: offline rule roles, and a scripted Reasoner that
    gets a task right exactly when its skills hold the task's first fact or its start is even."""

    def __init__(self, domain):
        self.domain, self.calls, self.requests = domain, [], 0

    def chat(self, model, messages, **_):
        self.calls.append((model, messages))
        if model == "reasoner":
            task = roles.parse_task(messages[-1]["content"], self.domain)[0]
            table = roles.read_context(roles.context_document(self.domain, all_facts(self.domain)))
            keys = roles.chain_keys(task)
            right = task.meta["start"] % 2 == 0 or f"{keys[0]}={table[keys[0]]}" in messages[0]["content"]
            steps = [f"{k}={table[k] if right else (table[k] + 1) % 10}" for k in keys]
            return "\n".join(steps) + f"\nA:{task.answer if right else (int(task.answer) + 1) % 10}"
        return {"challenger": lambda: roles.offline_challenger(messages, self.domain),
                "judge": lambda: roles.offline_judge(messages, 0.0, 0),
                "proposer": lambda: roles.offline_proposer(messages),
                "generator": lambda: roles.offline_generator(messages)}[model]()


def test_routing_failed_to_reasoner_and_solved_to_challenger():
    cfg = Ctx2SkillConfig(rounds=1, tasks_per_round=8, n_test=4, judge_noise=0.0)
    dom = ArithDomain(cfg.reasoner.domain)
    client = FakeClient(dom)
    test = dom.sample_problems(4, seed=1)
    m = self_play(SelfPlay(cfg, client, dom), test, {"challenger": 3, "random": 4}, progress=False)
    tasks = [ln.split(" =>")[0] for ln in next(r for mo, msgs in client.calls if mo == "challenger"
                                                  for r in [roles.offline_challenger(msgs, dom)]).splitlines()]
    odd = {t for t in tasks if int(t[2:].split()[0]) % 2 == 1}
    props = {msgs[-1]["content"].split("\n")[0]: msgs[-1]["content"] for mo, msgs in client.calls if mo == "proposer"}
    routed = {side: {ln[len("### Task: "):] for ln in body.splitlines() if ln.startswith("### Task: ")}
              for side, body in props.items()}
    assert odd and routed["Side: reasoner"] == odd  # failed tasks reach the Reasoner's Proposer
    assert routed.get("Side: challenger", set()) == set(tasks) - odd  # solved ones the Challenger's
    # the Reasoner's new skills are the true first facts of the failed tasks (odd starts)
    assert m["judge_agreement"] == 1.0 and m["replay_guard_used"] == 0
    learnt = parse_skills(m["latest_reasoner_skills"]).entries
    assert learnt and all(int(e[0]) % 2 == 1 for e in learnt)
    assert m["curve"][-1]["evolved"] >= m["curve"][0]["evolved"]


def test_offline_proposer_diagnoses_the_wrong_step_and_judge_noise_is_measured():
    dom = ArithDomain()
    ctx = roles.context_document(dom, all_facts(dom))
    t = dom.make_problem("t", 7, [("+", 1), ("*", 8)])  # 7+1=8, 8*8=4
    msgs = roles.proposer_messages("reasoner", ctx, SkillSet(), [(t, "7+1=8\n8*8=5\nA:5")], 1)
    assert roles.offline_proposer(msgs) == "ADD: 8*8=4"
    jm = roles.judge_messages(t, "4", "7+1=8\n8*8=4\nA:4")
    assert roles.offline_judge(jm, 0.0, 0) == "PASS" and roles.offline_judge(jm, 1.0, 0) == "FAIL"


def test_weak_facts_never_appear_true_in_training():
    cfg = ReasonerLMConfig(n_examples=300)
    weak = {f"{a}{op}{b}={(a * b) % 10}" for a, op, b in weak_facts(cfg)}
    texts = training_examples(cfg)
    assert len(weak) == cfg.n_weak
    # a weak fact's true value is in neither the context nor the solution, so only a skill can teach it
    lines = [ln.removeprefix("- ") for prompt, comp in texts for ln in (prompt + comp).split("\n")]
    assert any(ln[:ln.find("=")] in {w.split("=")[0] for w in weak} for ln in lines)  # weak keys do occur
    assert not weak & set(lines)


def test_offline_server_process_answers_and_stops(tmp_path: Path):
    from selfprm.selfplay.offline_server import serve_offline

    dom = ArithDomain()
    with serve_offline(None, dom.config, 0.0, 0, tmp_path / "server.log", start_timeout=60, max_seconds=120) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as r:
            assert "judge" in [m["id"] for m in json.loads(r.read())["data"]]
        from selfprm.policies.openai_chat import ChatClient

        t = dom.make_problem("t", 2, [("*", 3)])
        assert ChatClient(url).chat("judge", roles.judge_messages(t, "6", "2*3=6\nA:6")) == "PASS"
        req = urllib.request.Request(url + "/v1/chat/completions", data=b'{"model": "judge"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400
    with pytest.raises(urllib.error.URLError):  # the process is gone
        urllib.request.urlopen(url + "/health", timeout=2)


def tiny_config(**kw) -> Ctx2SkillConfig:
    rl = ReasonerLMConfig(n_examples=300, lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=256),
                          sft=SFTConfig(steps=15, batch_size=16, warmup=5))
    return Ctx2SkillConfig(reasoner=rl, rounds=2, tasks_per_round=4, n_test=6, probes_per_round=1, probe_problems=40,
                           **kw)


@pytest.mark.slow
def test_run_ctx2skill_end_to_end_against_server_process(tmp_path: Path):
    import torch

    torch.set_num_threads(1)
    cfg = tiny_config()
    m = run_ctx2skill(cfg, tmp_path, progress=False)
    assert set(m["accuracy"]) == {"evolved", "none", "random"}
    assert all(0.0 <= v <= 1.0 for v in m["accuracy"].values())
    assert m["rounds"] == 2 and [p["round"] for p in m["curve"]] == [0, 1, 2]
    assert 0.0 <= m["judge_agreement"] <= 1.0 and m["judged_tasks"] == 8
    assert 0 <= m["replay_guard_used"] <= 2 and m["chat_requests"] > 8 + 6 * 3
    eff = m["entry_effect"]  # the single-entry probe ran through the server: 4 skill files per weak task
    assert eff["n"] >= 1 and set(eff) == {"none", "true", "wrong", "true_with_distractors", "n"}
    assert (tmp_path / "ctx2skill_accuracy.png").stat().st_size > 0
    assert json.loads((tmp_path / "ctx2skill_metrics.json").read_text())["rounds"] == 2
    # a rerun is read from the run directory, not played again
    again = run_ctx2skill(cfg, tmp_path, progress=False)
    assert again["accuracy"] == m["accuracy"] and again["chat_requests"] == m["chat_requests"]
    assert replace(cfg, rounds=3) != cfg


def test_generator_keeps_recurring_entries_past_capacity():
    skills = SkillSet(("1+1=2", "2+2=4", "3*3=9"))
    edits = [Edit("ADD", "7*8=6")]
    # oldest-first would drop 1+1=2; by support the once-proposed 2+2=4 goes (3*3=9 is newer, equal support)
    assert apply_edits(skills, edits, 3).entries == ("2+2=4", "3*3=9", "7*8=6")
    support = {"1+1=2": 3, "2+2=4": 1, "3*3=9": 1, "7*8=6": 1}
    assert apply_edits(skills, edits, 3, support).entries == ("1+1=2", "3*3=9", "7*8=6")
    # the offline Generator reads the same tally from its chat message
    msgs = roles.generator_messages("reasoner", skills, edits, 3, support)
    assert "least supported" in msgs[0]["content"] and "## Support\n3 1+1=2\n" in msgs[1]["content"]
    assert parse_skills(roles.offline_generator(msgs)).entries == ("1+1=2", "3*3=9", "7*8=6")
    with pytest.raises(ValueError, match=r"sup:2"):
        parse_support("3 1+1=2\nmany 2+2=4\n", "sup")


def test_proposer_repeats_a_recurring_failure_and_the_loop_tallies_it():
    dom = ArithDomain()
    ctx = roles.context_document(dom, all_facts(dom))
    t1, t2 = dom.make_problem("a", 8, [("*", 8)]), dom.make_problem("b", 8, [("*", 8)])
    msgs = roles.proposer_messages("reasoner", ctx, SkillSet(), [(t1, "8*8=5\nA:5"), (t2, "8*8=1\nA:1")], 2)
    assert roles.offline_proposer(msgs) == "ADD: 8*8=4\nADD: 8*8=4"
    cfg = Ctx2SkillConfig(rounds=1, tasks_per_round=2, n_test=1)
    sp = SelfPlay(cfg, FakeClient(dom), dom)
    new = sp.evolve("reasoner", SkillSet(), [(t1, "8*8=5\nA:5"), (t2, "8*8=1\nA:1")], 2, cfg.capacity)
    assert new.entries == ("8*8=4",) and sp.support == {"8*8=4": 2}


class ScriptedReasoner:
    """Copies a step's value from its skill file when an entry states it, else answers from memory,
    which is wrong exactly on the facts in ``weak`` (the trained tiny Reasoner's behaviour by construction)."""

    def __init__(self, domain, weak):
        self.domain, self.weak = domain, weak

    def __call__(self, skills: SkillSet, task) -> str:
        m = self.domain.config.modulus
        stated = {e.split("=")[0]: int(e.split("=")[1]) for e in skills.entries}
        a, steps = task.meta["start"], []
        for op, b in task.meta["chain"]:
            key, true = f"{a}{op}{b}", apply_op(a, op, b, m)
            a = stated.get(key, (true + 1) % m if (a, op, b) in self.weak else true)
            steps.append(f"{key}={a}")
        return "\n".join(steps) + f"\nA:{a}"


def test_a_true_entry_raises_accuracy_on_the_tasks_that_need_it_and_a_wrong_one_does_not():
    # scripted Reasoner (the trained tiny one costs minutes; run_ctx2skill reports its own entry_effect)
    dom = ArithDomain(ReasonerLMConfig().domain)
    weak = set(weak_facts(ReasonerLMConfig()))
    probs = dom.sample_problems(200, seed=3)
    eff = entry_effect(ScriptedReasoner(dom, weak), dom, probs, weak, n_distractors=7, seed=1)
    assert eff["n"] == sum(any(f in weak for f in chain_facts(p)) for p in probs) > 5
    assert eff["none"] == 0.0 and eff["true"] == 1.0 and eff["true_with_distractors"] == 1.0
    assert eff["wrong"] == 0.0
    with pytest.raises(ValueError, match="none of the problems"):
        entry_effect(ScriptedReasoner(dom, weak), dom, probs[:1], set(), seed=1)


def test_near_miss_distractors_share_the_needed_fact_s_operation():
    cfg = ReasonerLMConfig(n_examples=60, p_hard=1.0)
    n_entries = 0
    for prompt, comp in training_examples(cfg):
        need = comp.split("\n")[0].split("=")[0]  # one operation per task: '7*8'
        op = next(c for c in need[1:] if c in "+-*")
        for e in (ln[2:] for ln in prompt.split("\n") if ln.startswith("- ")):
            n_entries += 1
            assert op in e[1:e.index("=")]  # a near miss keeps the operation (the needed fact itself too)
    assert n_entries > 60


def test_offline_reasoner_retrieves_the_entries_its_task_names(monkeypatch):
    from selfprm.selfplay import reasoner_lm
    from selfprm.selfplay.offline_server import OfflinePlayers

    skills = SkillSet(("7*8=6", "7*3=1", "2*8=6", "6+1=7", "9+1=0", "Multiply carefully."))
    # the first step's key must match whole; a later step's by operation and operand (its value is unknown)
    assert roles.relevant_entries(skills, "Q:7 *8").entries == ("7*8=6",)
    assert roles.relevant_entries(skills, "Q:7 *8 +1").entries == ("7*8=6", "6+1=7", "9+1=0")
    assert roles.relevant_entries(skills, "Q:4 *8").entries == ()
    assert roles.relevant_entries(skills, "not a task").entries == ()
    # the offline server's Reasoner sees only those entries; with retrieval off, the whole file
    monkeypatch.setattr(reasoner_lm, "greedy_answer", lambda model, tok, prompt, max_new_tokens: prompt)
    task = ArithDomain().make_problem("t", 7, [("*", 8)])
    for retrieval, seen in ((True, "# Skills\n- 7*8=6\nQ:7 *8\n"),
                            (False, reasoner_prompt(skills.render(), "Q:7 *8"))):
        players = OfflinePlayers(None, ArithDomain(), retrieval=retrieval)
        players.model = players.tok = object()
        assert players.reply("reasoner", roles.reasoner_messages(skills, task), 48) == seen


def test_fixed_and_broken_by_hand():
    from selfprm.selfplay.ctx2skill import fixed_and_broken

    base = [False, False, False, False, True, True]
    new = [True, False, True, False, True, False]  # fixes 2 of 4 failures, breaks 1 of 2 solved
    assert fixed_and_broken(base, new) == {"fixed": 0.5, "broken": 0.5, "base_wrong": 4, "base_right": 2}
    assert fixed_and_broken([True], [True])["fixed"] is None
