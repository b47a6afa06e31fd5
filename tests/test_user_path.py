"""The user's path through the CLI: ``generate`` -> ``label`` -> ``train`` -> ``eval bon``, on arith.

Tiny policies are saved to disk so ``hf:PATH`` loads them as a user's model would be (an untrained
one for the mechanics, one after a few seconds of SFT for the end-to-end run); every command runs
through :func:`selfprm.cli.main`. Beyond the happy path: interrupted runs redo only
what is missing (policy calls counted), malformed input fails with one error naming the file, line
or option and leaves nothing behind, and the labelled file is what ``datasets`` / TRL read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from selfprm.cli import main
from selfprm.domains import ArithDomain
from selfprm.policies.hf import HFPolicy
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
from selfprm.types import write_trajectories

N_PROBLEMS = 4
MAX_NEW = "24"  # an untrained policy rarely stops: keep its solutions short


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on one intra-op thread: a second one only waits on the first when the cores are
    shared (see ``one_torch_thread`` in conftest; this one spans the module's fixtures too)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A saved tiny policy and a problems file, shared by the tests (each writes elsewhere)."""
    root = tmp_path_factory.mktemp("user_path")
    domain = ArithDomain()
    tok = build_char_tokenizer(domain.charset())
    lm = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), seed=0)
    lm.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    lines = [json.dumps({"id": p.id, "problem": p.prompt}) for p in domain.sample_problems(N_PROBLEMS, seed=0)]
    (root / "problems.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def sft_policy(work):
    """A policy that has seen worked solutions (150 SFT steps, a few seconds): it ends its solutions
    and gets some right, so outcomes, labels and picks are not all one class."""
    import torch

    from selfprm.policies.tiny import SFTConfig, train_policy_model

    with torch.random.fork_rng():
        model, tok, _ = train_policy_model(ArithDomain(), 200, TinyLMConfig(n_layer=1, n_head=2, n_embd=64, n_positions=128),
                                           SFTConfig(steps=150, batch_size=32, warmup=10), progress=False)
    model.save_pretrained(work / "sft_policy")
    tok.save_pretrained(work / "sft_policy")
    return work / "sft_policy"


@pytest.fixture
def calls(monkeypatch):
    """Counts the prefixes every policy call samples from (a problem is an empty prefix)."""
    seen = {"prefixes": 0}
    original = HFPolicy.continue_from

    def counting(self, prefixes, n):
        seen["prefixes"] += len(prefixes)
        return original(self, prefixes, n)

    monkeypatch.setattr(HFPolicy, "continue_from", counting)
    return seen


def generate(work: Path, out: Path, *extra: str) -> dict:
    return main(["generate", "--policy", f"hf:{work / 'policy'}", "--problems", str(work / "problems.jsonl"),
                 "--n", "2", "--domain", "arith", "--max-new-tokens", MAX_NEW, "--out", str(out), "--no-progress",
                 *extra])


def label(work: Path, src: Path, out: Path, source: str, *extra: str) -> dict:
    return main(["label", "--source", source, "--policy", f"hf:{work / 'policy'}", "--in", str(src), "--out", str(out),
                 "--no-progress", *extra])


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def worked_solutions_file(path: Path, n: int = 6) -> Path:
    """Labelled-ready solutions without a policy: the domain's worked solutions (half of them
    with a wrong final answer), each with its outcome and oracle."""
    import numpy as np

    domain, rng = ArithDomain(), np.random.default_rng(0)
    trajs = []
    for i, p in enumerate(domain.sample_problems(n, seed=1)):
        steps, answer = domain.worked_solution(p, rng)
        trajs.append(domain.make_trajectory(p, steps, answer if i % 2 else "x", tokens_generated=len(steps)))
    write_trajectories(path, trajs)
    return path


# ----------------------------------------------------------------------------- the whole path


@pytest.mark.slow
def test_generate_label_train_eval_end_to_end(work, sft_policy, tmp_path):
    policy = f"hf:{sft_policy}"
    traj, n = tmp_path / "traj.jsonl", 4
    gen = main(["generate", "--policy", policy, "--problems", str(work / "problems.jsonl"), "--n", str(n),
                "--domain", "arith", "--max-new-tokens", "64", "--out", str(traj), "--no-progress"])
    assert gen["problems"] == N_PROBLEMS and gen["solutions"] == n * N_PROBLEMS
    recs = [json.loads(line) for line in traj.read_text().splitlines()]
    assert len(recs) == n * N_PROBLEMS and all(isinstance(r["outcome"], bool) for r in recs)
    assert all(isinstance(r["completions"], list) and "label_source" not in r for r in recs)
    assert 0 < sum(r["outcome"] for r in recs) < len(recs)  # both outcomes occur
    meta = json.loads((tmp_path / "traj.meta.json").read_text())
    assert meta["policy_tokens"] == sum(r["tokens_generated"] for r in recs) > 0
    assert meta["correct"] == sum(r["outcome"] for r in recs) and meta["config"]["n"] == n

    for source, extra in (("outcome", []), ("mc", ["--source-kwargs", '{"n_rollouts": 2}'])):
        res = main(["label", "--source", source, "--policy", policy, "--in", str(traj),
                    "--out", str(tmp_path / f"{source}.jsonl"), "--no-progress", *extra])
        cost = json.loads((tmp_path / f"{source}.cost.json").read_text())
        assert cost == json.loads(json.dumps(res))  # what is returned is what is written
        assert cost["labeled"] == len(recs) and cost["labeled_steps"] == sum(len(r["completions"]) for r in recs)
        assert set(cost) >= {"policy_tokens", "token_passes", "seconds", "rollouts", "prm_loss"}
    assert json.loads((tmp_path / "outcome.cost.json").read_text())["policy_tokens"] == 0
    mc_cost = json.loads((tmp_path / "mc.cost.json").read_text())
    prefixes = {(r["problem_id"], tuple(r["completions"][: i + 1])) for r in recs for i in range(len(r["completions"]))}
    assert mc_cost["rollouts"] == 2 * len(prefixes) > 0  # 2 rollouts from every distinct step prefix
    assert mc_cost["policy_tokens"] > 0 and mc_cost["prm_loss"] == "soft_bce"
    # the rollouts sampled as the generate run did (its meta file), not at the defaults
    assert mc_cost["policy_settings"] == {"domain": "arith", "template": None, "temperature": 1.0, "max_new_tokens": 64}

    for source, loss in (("outcome", "bce"), ("mc", "soft_bce")):  # --loss auto follows the labels
        summary = main(["train", "--backbone", str(sft_policy), "--data", str(tmp_path / f"{source}.jsonl"),
                        "--out", str(tmp_path / f"prm_{source}"), "--epochs", "2", "--batch-size", "4", "--lr", "1e-3",
                        "--no-progress"])
        assert summary["loss"] == loss and summary["decoder"] and summary["examples"] == len(recs)
        assert not (tmp_path / f"prm_{source}" / "checkpoint.pt").exists()  # done: the checkpoint is gone

    from selfprm.prm.model import ProcessRewardModel

    prm = ProcessRewardModel.from_pretrained(tmp_path / "prm_mc")
    (scores,) = prm.score_steps([recs[0]["prompt"]], [recs[0]["completions"]])
    assert len(scores) == len(recs[0]["completions"])

    res = main(["eval", "bon", "--prm", str(tmp_path / "prm_mc"), "--data", str(traj), "--out", str(tmp_path / "bon"),
                "--no-progress"])
    assert res["n"] == n and res["problems"] == N_PROBLEMS
    assert json.loads((tmp_path / "bon" / "bon.json").read_text())["best_of_n"] == res["best_of_n"]
    # every figure agrees with the solutions file and the per-solution scores written beside it
    rows = [json.loads(line) for line in (tmp_path / "bon" / "bon_scores.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in rows] == [r["outcome"] for r in recs]
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    picked = [next(r for r in g if r["picked"]) for g in by_problem.values()]
    assert all(p["score"] == max(r["score"] for r in g) for p, g in zip(picked, by_problem.values()))
    bo = res["best_of_n"]
    assert bo["prm"] == pytest.approx(sum(p["outcome"] for p in picked) / N_PROBLEMS)
    assert bo["oracle_pick"] == pytest.approx(sum(any(r["outcome"] for r in g) for g in by_problem.values()) / N_PROBLEMS)
    assert bo["random_pick"] == pytest.approx(sum(r["outcome"] for r in rows) / len(rows))


def test_generate_on_math_problems(work, tmp_path):
    """``--domain math`` reads any problem/answer JSONL and checks answers with math-verify; the
    policy here is the char-level toy (it cannot read the words), so only the wiring is checked."""
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"id": "p1", "problem": "What is 2+3?", "answer": "5"}\n'
                        '{"id": "p2", "question": "What is 2*3?", "answer": 6}\n')
    res = main(["generate", "--policy", f"hf:{work / 'policy'}", "--problems", str(problems), "--n", "2",
                "--template", "plain", "--max-new-tokens", "16", "--out", str(tmp_path / "traj.jsonl"), "--no-progress"])
    assert res["domain"] == "math" and res["solutions"] == 4
    recs = [json.loads(line) for line in (tmp_path / "traj.jsonl").read_text().splitlines()]
    assert [r["problem_id"] for r in recs] == ["p1", "p1", "p2", "p2"]
    assert [r["answer"] for r in recs] == ["5", "5", "6", "6"] and all(isinstance(r["outcome"], bool) for r in recs)
    assert recs[0]["prompt"] == "What is 2+3?" and "labels" not in recs[0]  # no oracle on math: no labels yet
    # label reads the domain from the generate run's meta file
    cost = main(["label", "--source", "mc", "--policy", f"hf:{work / 'policy'}", "--in", str(tmp_path / "traj.jsonl"),
                 "--out", str(tmp_path / "mc.jsonl"), "--source-kwargs", '{"n_rollouts": 1}', "--no-progress"])
    assert cost["policy_settings"]["domain"] == "math" and cost["policy_settings"]["max_new_tokens"] == 16


# ----------------------------------------------------------------------------- resume


def test_generate_resumes_without_redoing_finished_problems(work, tmp_path, calls, monkeypatch):
    traj = tmp_path / "traj.jsonl"
    generate(work, traj, "--shard-size", "1")
    assert calls["prefixes"] == N_PROBLEMS
    first = traj.read_text()
    shards = tmp_path / "traj.jsonl.shards"
    # a run killed after three of its four shards: the merged file and the last shard are missing
    traj.unlink()
    (shards / "shard-00003.jsonl").unlink()
    (shards / "shard-00003.json").unlink()
    calls["prefixes"] = 0
    res = generate(work, traj, "--shard-size", "1")
    assert calls["prefixes"] == 1 and res["shards_resumed"] == 3
    assert traj.read_text() == first  # the redone shard was reseeded: the same solutions
    # a rerun of a finished job loads no policy at all
    import selfprm.policies.spec as spec

    load = spec.load_policy
    monkeypatch.setattr(spec, "load_policy", lambda *a, **k: pytest.fail("a finished job loaded the policy"))
    assert generate(work, traj, "--shard-size", "1")["shards_resumed"] == N_PROBLEMS
    # another config (here: another seed) starts over rather than reusing these shards
    monkeypatch.setattr(spec, "load_policy", load)
    calls["prefixes"] = 0
    generate(work, traj, "--shard-size", "1", "--seed", "1")
    assert calls["prefixes"] == N_PROBLEMS


def test_label_resumes_after_an_interrupted_run(work, tmp_path, monkeypatch):
    traj = tmp_path / "traj.jsonl"
    generate(work, traj)
    mc = ["--source-kwargs", '{"n_rollouts": 2}', "--shard-size", "4"]  # 8 solutions: 2 shards
    label(work, traj, tmp_path / "once.jsonl", "mc", *mc)  # an uninterrupted run, to compare with

    real = HFPolicy.continue_from
    seen = {"prefixes": 0, "kill": True}

    def policy(self, prefixes, n):
        # the sharded labeller reseeds the policy to seed * 1_000_003 + shard: seed 1 is shard 1
        if seen["kill"] and self.config.seed == 1:
            raise RuntimeError("killed")
        seen["prefixes"] += len(prefixes)
        return real(self, prefixes, n)

    monkeypatch.setattr(HFPolicy, "continue_from", policy)
    out = tmp_path / "labeled.jsonl"
    with pytest.raises(RuntimeError, match="killed"):
        label(work, traj, out, "mc", *mc)
    assert seen["prefixes"] > 0 and not out.exists()
    assert (tmp_path / "labeled.jsonl.shards" / "shard-00000.json").exists()
    assert not (tmp_path / "labeled.jsonl.shards" / "shard-00001.json").exists()

    seen.update(kill=False, prefixes=0)
    res = label(work, traj, out, "mc", *mc)
    second_half = [json.loads(line) for line in traj.read_text().splitlines()][4:]
    prefixes = len({(r["problem_id"], tuple(r["completions"][: i + 1])) for r in second_half
                    for i in range(len(r["completions"]))})
    assert seen["prefixes"] == prefixes and res["shards_resumed"] == 1  # only the unfinished shard
    assert out.read_text() == (tmp_path / "once.jsonl").read_text()  # as if never interrupted
    seen["prefixes"] = 0
    label(work, traj, out, "mc", *mc)
    assert seen["prefixes"] == 0  # a finished job relabels nothing


def test_train_resumes_from_the_last_finished_epoch(work, tmp_path, monkeypatch):
    import torch

    from selfprm.prm.model import ProcessRewardModel
    from selfprm.studies import train as train_study

    data = tmp_path / "labeled.jsonl"
    main(["label", "--source", "oracle", "--in", str(worked_solutions_file(tmp_path / "sol.jsonl")),
          "--out", str(data), "--no-progress"])
    args = ["train", "--backbone", str(work / "policy"), "--data", str(data), "--epochs", "3", "--batch-size", "2",
            "--lr", "1e-3", "--no-progress"]
    main([*args, "--out", str(tmp_path / "whole")])

    # killed while saving the third epoch's checkpoint: the second epoch's is on disk
    saved = train_study.FileCheckpoint.save

    def dies_at_epoch_three(self, epochs_done, *rest):
        if epochs_done == 3:
            raise KeyboardInterrupt
        saved(self, epochs_done, *rest)

    monkeypatch.setattr(train_study.FileCheckpoint, "save", dies_at_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(tmp_path / "prm")])
    assert not (tmp_path / "prm" / "training.json").exists()
    assert torch.load(tmp_path / "prm" / "checkpoint.pt", weights_only=True)["epochs_done"] == 2
    monkeypatch.undo()
    steps = []
    monkeypatch.setattr(train_study.FileCheckpoint, "save", lambda self, e, *rest: steps.append(e) or saved(self, e, *rest))
    res = main([*args, "--out", str(tmp_path / "prm")])
    assert steps == [3]  # only the last epoch was trained again
    whole = json.loads((tmp_path / "whole" / "training.json").read_text())
    assert res["loss_curve"] == pytest.approx(whole["loss_curve"], abs=1e-5)  # as if never killed
    a, b = (ProcessRewardModel.from_pretrained(tmp_path / d) for d in ("whole", "prm"))
    assert torch.allclose(a.head.weight, b.head.weight, atol=1e-5)
    steps.clear()
    main([*args, "--out", str(tmp_path / "prm")])
    assert steps == []  # a finished job trains nothing


# ----------------------------------------------------------------------------- an encoder backbone


def test_train_on_an_encoder_backbone(tmp_path):
    """A BERT-shaped encoder (MiniLM's tokenizer, a tiny model from a config) loads with AutoModel
    and gets MiniLM's `` [SEP]`` step marker."""
    import torch
    from transformers import BertConfig, BertModel

    from selfprm.prm.backbones import load_minilm
    from selfprm.prm.model import ProcessRewardModel

    tok = load_minilm()[1]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256)).save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    data = tmp_path / "labeled.jsonl"
    main(["label", "--source", "outcome", "--in", str(worked_solutions_file(tmp_path / "sol.jsonl")),
          "--out", str(data), "--no-progress"])
    res = main(["train", "--backbone", str(tmp_path / "bert"), "--data", str(data), "--out", str(tmp_path / "prm"),
                "--epochs", "1", "--batch-size", "3", "--max-length", "1024", "--no-progress"])
    assert not res["decoder"] and res["step_separator"] == " [SEP]" and res["max_length"] == 256
    prm = ProcessRewardModel.from_pretrained(tmp_path / "prm")
    assert prm.config.step_separator == " [SEP]"


# ----------------------------------------------------------------------------- malformed input


def _bad_json(path: Path) -> Path:
    path.write_text('{"id": "a", "problem": "Q:1 +2"}\n{"id": "b", "problem": \n')
    return path


def _no_problem(path: Path) -> Path:
    path.write_text('{"id": "a", "prompt": "Q:1 +2"}\n{"id": "b", "question": "Q:3 *2"}\n')
    return path


def _no_answer(path: Path) -> Path:
    path.write_text('{"problem": "What is 1+1?", "answer": "2"}\n{"problem": "What is 2+2?"}\n')
    return path


def _drop_field(src: Path, dst: Path, line: int, name: str) -> Path:
    recs = [json.loads(x) for x in src.read_text().splitlines()]
    del recs[line - 1][name]
    dst.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dst


def _break_line(src: Path, dst: Path, line: int) -> Path:
    lines = src.read_text().splitlines()
    lines[line - 1] = lines[line - 1][:-5]
    dst.write_text("\n".join(lines) + "\n")
    return dst


def cases(work: Path, inp: Path):
    """``(argv, what the error names)`` per malformed input, every command."""
    sol = worked_solutions_file(inp / "sol.jsonl")
    policy = f"hf:{work / 'policy'}"
    gen = ["generate", "--policy", policy, "--n", "2", "--domain", "arith"]
    lab = ["label", "--in"]
    no_out = _drop_field(sol, inp / "no_outcome.jsonl", 2, "outcome")
    no_labels = _drop_field(sol, inp / "no_labels.jsonl", 1, "labels")  # (arith writes its oracle as labels)
    main(["label", "--source", "outcome", "--in", str(sol), "--out", str(inp / "labeled.jsonl"), "--no-progress"])
    return {
        "generate: bad JSON line": ([*gen, "--problems", str(_bad_json(inp / "p_bad.jsonl"))],
                                    [str(inp / "p_bad.jsonl"), "line 2", "invalid JSON"]),
        "generate: missing field": ([*gen, "--problems", str(_no_problem(inp / "p_nofield.jsonl"))],
                                    [str(inp / "p_nofield.jsonl"), "line 2", "'problem'", "missing"]),
        "generate: math answer missing": (["generate", "--policy", policy, "--n", "2", "--problems",
                                           str(_no_answer(inp / "p_math.jsonl"))],
                                          [str(inp / "p_math.jsonl"), "line 2", "'answer'"]),
        "generate: unknown policy scheme": (["generate", "--policy", "gguf:model.bin", "--n", "2", "--domain", "arith",
                                             "--problems", str(work / "problems.jsonl")], ["--policy", "gguf:model.bin"]),
        "generate: no such policy": (["generate", "--policy", "hf:/no/such/model", "--n", "2", "--domain", "arith",
                                      "--problems", str(work / "problems.jsonl")], ["--policy", "/no/such/model"]),
        "label: unknown source": ([*lab, str(sol), "--source", "nosuch"], ["'nosuch'", "outcome", "mc", "omega"]),
        "label: missing field": ([*lab, str(no_out), "--source", "outcome"], [str(no_out), "line 2", "'outcome'"]),
        "label: bad JSON line": ([*lab, str(_break_line(sol, inp / "l_bad.jsonl", 3)), "--source", "outcome"],
                                 [str(inp / "l_bad.jsonl"), "line 3", "invalid JSON"]),
        "label: needs a policy": ([*lab, str(sol), "--source", "mc"], ["--source mc", "--policy"]),
        "label: unknown setting": ([*lab, str(sol), "--source", "mc", "--policy", policy, "--source-kwargs",
                                    '{"rollouts": 2}'], ["--source-kwargs", "rollouts"]),
        "train: no such backbone": (["train", "--backbone", str(inp / "no_model"), "--data", str(inp / "labeled.jsonl")],
                                    ["--backbone", str(inp / "no_model")]),
        "train: missing labels": (["train", "--backbone", str(work / "policy"), "--data", str(no_labels)],
                                  [str(no_labels), "line 1", "'labels'"]),
        "eval bon: missing field": (["eval", "bon", "--prm", str(work / "prm"), "--data", str(no_out)],
                                    [str(no_out), "line 2", "'outcome'"]),
        "eval bon: bad JSON line": (["eval", "bon", "--prm", str(work / "prm"), "--data",
                                     str(_break_line(sol, inp / "e_bad.jsonl", 4))],
                                    [str(inp / "e_bad.jsonl"), "line 4", "invalid JSON"]),
    }


def test_malformed_input_is_one_clear_error_and_writes_nothing(work, tmp_path):
    from selfprm.prm.model import PRMConfig, ProcessRewardModel

    if not (work / "prm").exists():  # a saved PRM for eval bon to fail after
        from transformers import AutoModelForCausalLM, AutoTokenizer

        ProcessRewardModel(AutoModelForCausalLM.from_pretrained(work / "policy"),
                           AutoTokenizer.from_pretrained(work / "policy"), PRMConfig()).save_pretrained(work / "prm")
    inp = tmp_path / "inputs"
    inp.mkdir()
    for name, (argv, named) in cases(work, inp).items():
        out_dir = tmp_path / name.replace(" ", "_").replace(":", "")
        out_dir.mkdir()
        out = out_dir / ("prm" if argv[0] == "train" else "bon" if argv[0] == "eval" else "out.jsonl")
        inputs_before = files_under(inp)
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(out), "--no-progress"])
        message = str(e.value.code)
        assert message.startswith("selfprm "), (name, message)
        for part in named:
            assert part in message, (name, part, message)
        assert "\n" not in message, (name, message)  # one line, not a traceback
        assert files_under(out_dir) == set(), (name, files_under(out_dir))  # nothing written, not even a config
        assert files_under(inp) == inputs_before, name


def test_bad_option_value_names_the_option(work, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["label", "--source", "mc", "--in", str(work / "problems.jsonl"), "--source-kwargs", "{not json",
              "--out", str(tmp_path / "x.jsonl")])
    assert "--source-kwargs" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- interop with datasets / TRL


def test_labelled_file_loads_with_datasets_and_trains_with_trl(tmp_path):
    import datasets  # the test extra brings it, as it brings trl
    sol = worked_solutions_file(tmp_path / "sol.jsonl")
    main(["label", "--source", "outcome", "--in", str(sol), "--out", str(tmp_path / "hard.jsonl"), "--no-progress"])
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "hard.jsonl"), split="train")
    assert {"prompt", "completions", "labels"} <= set(ds.column_names) and len(ds) == 6
    assert ds.features["prompt"].dtype == "string"
    assert ds.features["completions"].feature.dtype == "string"
    assert ds.features["labels"].feature.dtype == "bool"
    assert [len(c) for c in ds["completions"]] == [len(lab) for lab in ds["labels"]]

    # soft labels (Monte Carlo shares) are numbers, still one per step
    from selfprm.types import StepLabels, read_trajectories

    trajs = [t for t, _ in read_trajectories(sol)]
    write_trajectories(tmp_path / "soft.jsonl", trajs, [StepLabels([0.5] * len(t.steps), "mc", soft=True) for t in trajs])
    soft = datasets.load_dataset("json", data_files=str(tmp_path / "soft.jsonl"), split="train")
    assert soft.features["labels"].feature.dtype == "float64"

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # trl 1.13 is the last release with the PRM trainer (the test extra pins it)
    from trl.experimental.prm import PRMConfig as config_cls, PRMTrainer as trainer_cls
    from transformers import LlamaConfig, LlamaForTokenClassification

    tok = build_char_tokenizer(ArithDomain().charset())
    model = LlamaForTokenClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, num_labels=2, pad_token_id=tok.pad_token_id))
    args = config_cls(output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                      step_separator="\n", max_length=256, use_cpu=True, save_strategy="no", logging_steps=1)
    trainer = trainer_cls(model=model, args=args, train_dataset=ds, processing_class=tok)
    out = trainer.train()
    assert out.global_step == 1 and out.training_loss > 0


def test_a_policy_that_writes_nothing_fails_instead_of_writing_empty_solutions(work, tmp_path):
    """Prompts longer than the policy's 128 positions leave it no room: an error, not a file of
    empty solutions that every later command would take as data."""
    problems = tmp_path / "long.jsonl"
    problems.write_text(json.dumps({"id": "long", "problem": "Q:1" + " +1" * 60}) + "\n")
    with pytest.raises(SystemExit, match="generated no tokens"):
        main(["generate", "--policy", f"hf:{work / 'policy'}", "--problems", str(problems), "--n", "2",
              "--domain", "arith", "--out", str(tmp_path / "traj.jsonl"), "--no-progress"])
    assert not (tmp_path / "traj.jsonl").exists()
