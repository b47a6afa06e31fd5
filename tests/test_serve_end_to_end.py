"""The whole user path against real HTTP servers on loopback, each a ``selfprm serve`` process:

    selfprm serve --policy hf:POLICY          an OpenAI-compatible completions server
    selfprm generate --policy openai:URL#name  solutions sampled over HTTP
    selfprm label --source mc --policy openai:...   Monte Carlo rollouts over HTTP
    selfprm train --backbone POLICY            a PRM on the labels
    selfprm serve --prm prm/                   the PRM as OpenRLHF's remote reward model
    POST /get_reward                           rewards equal the PRM's own scores
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from selfprm.cli import main
from selfprm.domains import ArithDomain


@contextmanager
def serving(*args: str):
    """``selfprm serve ARGS --port 0`` in its own process; yields its URL once it listens."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "selfprm.cli", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the server prints one line once it listens
        if "listening on" not in line:
            proc.kill()
            raise AssertionError(f"selfprm serve did not start: {line!r} {proc.stderr.read()}")
        yield line.split("listening on ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    """A tiny policy after a few seconds of SFT: it ends its solutions and gets some right."""
    import torch

    from selfprm.policies.tiny import SFTConfig, TinyLMConfig, train_policy_model

    root = tmp_path_factory.mktemp("served")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            model, tok, _ = train_policy_model(ArithDomain(), 200, TinyLMConfig(n_layer=1, n_head=2, n_embd=64, n_positions=128),
                                               SFTConfig(steps=150, batch_size=32, warmup=10), progress=False)
    finally:
        torch.set_num_threads(before)
    model.save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    return root / "policy"


@pytest.mark.slow
def test_generate_label_train_serve_over_http(policy_dir, tmp_path, one_torch_thread):
    domain = ArithDomain()
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": p.id, "problem": p.prompt}) + "\n"
                                for p in domain.sample_problems(6, seed=3)))
    with serving("--policy", f"hf:{policy_dir}") as url:
        models = json.loads(urllib.request.urlopen(f"{url}/v1/models", timeout=30).read())
        name = models["data"][0]["id"]
        spec = f"openai:{url}#{name}"
        gen = main(["generate", "--policy", spec, "--problems", str(problems), "--n", "4", "--domain", "arith",
                    "--max-new-tokens", "64", "--temperature", "0.7", "--out", str(tmp_path / "traj.jsonl"),
                    "--no-progress"])
        lab = main(["label", "--source", "mc", "--policy", spec, "--in", str(tmp_path / "traj.jsonl"),
                    "--out", str(tmp_path / "labeled.jsonl"), "--source-kwargs", '{"n_rollouts": 2}', "--no-progress"])
    rows = [json.loads(x) for x in (tmp_path / "traj.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and gen["policy_tokens"] > 0
    # the server's sampling is not a constant: both outcomes occur, so the labels can teach something
    assert 0 < sum(r["outcome"] for r in rows) < len(rows)
    cost = json.loads((tmp_path / "labeled.cost.json").read_text())
    assert cost["policy_tokens"] > 0 and cost["rollouts"] > 0  # the rollouts went over HTTP

    main(["train", "--backbone", str(policy_dir), "--data", str(tmp_path / "labeled.jsonl"), "--out", str(tmp_path / "prm"),
          "--epochs", "2", "--no-progress"])
    from selfprm.prm.model import ProcessRewardModel

    prm = ProcessRewardModel.from_pretrained(tmp_path / "prm")
    sep = prm.config.step_separator
    queries = [(r["prompt"], sep.join(r["completions"])) for r in rows[:5]]
    direct = prm.score_steps([q for q, _ in queries], [r["completions"] for r in rows[:5]])
    with serving("--prm", str(tmp_path / "prm")) as url:
        reply = post(f"{url}/get_reward", {"query": [p + resp for p, resp in queries], "prompts": [p for p, _ in queries]})
    assert len(reply["rewards"]) == 5
    for got, want in zip(reply["step_rewards"], direct):
        assert got == pytest.approx(want, abs=1e-5)
    assert reply["rewards"] == pytest.approx([min(s) for s in direct], abs=1e-5)
    assert len({round(r, 6) for r in reply["rewards"]}) > 1  # not one constant reward


def test_serve_needs_exactly_one_of_prm_and_policy(tmp_path, capsys):
    with pytest.raises(SystemExit, match="exactly one"):
        main(["serve"])
    with pytest.raises(SystemExit, match="not a saved selfprm PRM"):
        main(["serve", "--prm", str(tmp_path)])
    with pytest.raises(SystemExit, match="no model folder"):
        main(["serve", "--policy", f"hf:{tmp_path / 'missing'}"])
