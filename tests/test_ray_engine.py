"""The Ray engine (issue 14, part 1): same shards as in process, and nothing lost or redone when
a worker or the driver is SIGKILLed.

One local Ray per module (2 CPUs, no dashboard, an 80 MB object store), started in this process
so its workers are this process's descendants (the only processes the fault tests signal). The
policy is a tiny untrained HF model saved to disk, as a user's ``hf:PATH``; the label source is
``mc`` (Math-Shepherd rollouts), which needs the policy, so every shard really runs it. The
reference is the same ``selfprm label`` run in process, uninterrupted.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from selfprm.cli import main
from selfprm.domains import ArithDomain
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
from selfprm.types import write_trajectories

ray = pytest.importorskip("ray", reason="the [ray] extra (part of [test])")

N_TRAJ, SHARD = 16, 2  # 8 shards: room for kills between them
N_KILLS = 2  # per fault kind here; benchmarks/ray_labeling.py --kills runs 5 or more
MC = json.dumps({"n_rollouts": 3})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In process on one intra-op thread, as each one-CPU Ray actor is (OMP_NUM_THREADS=1), so the
    two engines do the same float arithmetic."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cluster():
    ctx = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 ** 2, log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A saved tiny policy, solutions to label (the domain's worked solutions, half with a wrong
    answer), problems to sample from, and the uninterrupted in-process labels."""
    root = tmp_path_factory.mktemp("ray_engine")
    domain = ArithDomain()
    tok = build_char_tokenizer(domain.charset())
    lm = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), seed=0)
    lm.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    rng, trajs = np.random.default_rng(0), []
    problems = domain.sample_problems(N_TRAJ, seed=1)
    for i, p in enumerate(problems):
        steps, answer = domain.worked_solution(p, rng)
        trajs.append(domain.make_trajectory(p, steps, answer if i % 2 else "x", tokens_generated=len(steps)))
    write_trajectories(root / "traj.jsonl", trajs)
    (root / "problems.jsonl").write_text("".join(json.dumps({"id": p.id, "problem": p.prompt}) + "\n"
                                                 for p in problems[:6]))
    main(label_args(root, root / "reference.jsonl"))
    return root


def label_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--source", "mc", "--source-kwargs", MC, "--policy", f"hf:{root / 'policy'}",
            "--in", str(root / "traj.jsonl"), "--out", str(out), "--shard-size", str(SHARD), "--domain", "arith",
            "--max-new-tokens", "24", "--no-progress", *extra]


def labels_of(path: Path) -> list:
    return [json.loads(line)["labels"] for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- flags, no Ray needed


def test_engine_flags_are_checked_before_any_work(work, tmp_path):
    with pytest.raises(SystemExit, match="--engine 'spark' is not one of local, ray"):
        main(label_args(work, tmp_path / "x.jsonl", "--engine", "spark"))
    with pytest.raises(SystemExit, match="--address .* is for --engine ray"):
        main(label_args(work, tmp_path / "x.jsonl", "--address", "127.0.0.1:6379"))
    assert not (tmp_path / "x.jsonl.shards").exists()


def test_missing_ray_names_the_extra(monkeypatch):
    from selfprm.engines.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'selfprm\[ray\]'"):
        import_ray()


def test_shard_watch_sees_a_redone_and_a_lost_shard(tmp_path):
    """The counter behind the fault tests' "0 redone, 0 lost" can say otherwise."""
    from selfprm.engines.faults import ShardWatch
    from selfprm.types import atomic_write_text

    watch = ShardWatch(tmp_path)
    atomic_write_text(tmp_path / "shard-00000.json", '{"n": 1, "seconds": 0.1}')
    atomic_write_text(tmp_path / "shard-00001.json", '{"n": 1, "seconds": 0.1}')
    watch.poll()
    atomic_write_text(tmp_path / "shard-00001.json", '{"n": 1, "seconds": 0.2}')  # written again
    watch.poll()
    assert watch.counts(3) == {"finished": 2, "redone": 1, "lost": 1}


# ----------------------------------------------------------------------------- same output as in process


def test_ray_labels_and_samples_what_the_in_process_engine_does(cluster, work, tmp_path):
    out = tmp_path / "ray.jsonl"
    cost = main(label_args(work, out, "--engine", "ray", "--workers", "2"))
    assert (cost["shards"], cost["shards_resumed"]) == (N_TRAJ // SHARD, 0)
    assert out.read_text() == (work / "reference.jsonl").read_text()
    # a rerun on the other engine resumes from the same shards: nothing is labelled again
    again = main(label_args(work, out))
    assert again["shards_resumed"] == N_TRAJ // SHARD and out.read_text() == (work / "reference.jsonl").read_text()

    gen = ["generate", "--policy", f"hf:{work / 'policy'}", "--problems", str(work / "problems.jsonl"), "--n", "2",
           "--domain", "arith", "--max-new-tokens", "24", "--shard-size", "2", "--no-progress"]
    main([*gen, "--out", str(tmp_path / "local.jsonl")])
    summary = main([*gen, "--out", str(tmp_path / "ray_gen.jsonl"), "--engine", "ray"])
    assert summary["solutions"] == 12
    assert (tmp_path / "ray_gen.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()


@pytest.mark.slow
def test_label_stage_on_ray_matches_in_process(cluster, work, tmp_path):
    """The studies' label stage: an in-memory policy goes to the actors as a replica."""
    from selfprm.policies.spec import load_policy
    from selfprm.rundir import RunDir
    from selfprm.studies.stages import label_stage
    from selfprm.types import read_trajectories

    trajs = [t for t, _ in read_trajectories(work / "traj.jsonl")]
    policy = load_policy(f"hf:{work / 'policy'}", ArithDomain(), temperature=1.0, max_new_tokens=24, seed=0)
    runs = {}
    for engine in ("local", "ray"):
        _, labs, meta = label_stage(RunDir(tmp_path / engine), "labels/mc", "mc", {"n_rollouts": 3}, trajs, policy,
                                    [], SHARD, seed=0, progress=False, engine=engine)
        runs[engine] = ([l.values for l in labs], meta["policy_tokens"])
    assert runs["ray"] == runs["local"] and runs["ray"][1] > 0


# ----------------------------------------------------------------------------- kills


@pytest.mark.slow
def test_worker_kills_lose_and_redo_nothing(cluster, work, tmp_path):
    from selfprm.engines.faults import run_with_worker_kills

    out, n_shards = tmp_path / "killed.jsonl", N_TRAJ // SHARD
    counts = run_with_worker_kills(lambda: main(label_args(work, out, "--engine", "ray", "--workers", "2")),
                                   out.with_name(out.name + ".shards"), n_shards, N_KILLS, random.Random(14))
    print(f"worker kills: {counts}")
    assert counts == {"kills": N_KILLS, "finished": n_shards, "redone": 0, "lost": 0}
    assert out.read_text() == (work / "reference.jsonl").read_text()


@pytest.mark.slow
def test_driver_kills_then_resume_lose_and_redo_nothing(cluster, work, tmp_path):
    from selfprm.engines.faults import run_with_driver_kills

    out, n_shards = tmp_path / "driver.jsonl", N_TRAJ // SHARD
    args = label_args(work, out, "--engine", "ray", "--address", cluster, "--workers", "2")
    argv = [sys.executable, "-c", "import sys; from selfprm.cli import main; main(sys.argv[1:])", *args]
    resumed = {}
    counts = run_with_driver_kills(argv, lambda: resumed.update(main(args)), out.with_name(out.name + ".shards"),
                                   n_shards, N_KILLS, random.Random(41), env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"driver kills: {counts}")
    before = counts.pop("finished_before_resume")
    assert counts == {"kills": N_KILLS, "finished": n_shards, "redone": 0, "lost": 0}
    assert resumed["shards_resumed"] == before < n_shards  # the resume did the rest, and only the rest
    assert labels_of(out) == labels_of(work / "reference.jsonl")
    assert out.read_text() == (work / "reference.jsonl").read_text()
