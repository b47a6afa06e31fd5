"""The PRM reward server: OpenRLHF's /get_reward shape, batching across clients, bad input, veRL client."""

from __future__ import annotations

import http.client
import importlib.util
import json
import math
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from selfprm.prm import PRMConfig, ProcessRewardModel, aggregate
from selfprm.serving.reward_server import Batcher, build_reward_server, split_steps
from selfprm.serving.verl_reward import RemoteRewardClient, RewardServerError, compute_score

ROOT = Path(__file__).resolve().parents[1]

PROMPTS = ["Q:6 +3 +1", "Q:8 +4 *2", "Q:5 +5", "Q:7 -2 *3"]
STEPS = [["6+3=9", "9+1=0"], ["8+4=2", "2*2=4"], ["5+5=0"], ["7-2=5", "5*3=5", "redo:5*3=1"]]


def _query(prompt: str, steps: list[str]) -> str:
    return prompt + "\n" + "\n".join(steps) + "\n"


@pytest.fixture
def prm(tiny_lm, char_tokenizer, one_torch_thread):
    return ProcessRewardModel(tiny_lm, char_tokenizer, PRMConfig(step_separator="\n")).eval()


class Running:
    """A reward server serving from a thread; stopped on close."""

    def __init__(self, prm, **kwargs):
        self.server = build_reward_server(prm, "127.0.0.1", 0, **kwargs)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = self.server.url
        self.host, self.port = self.server.server_address[:2]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def post(self, payload) -> tuple[int, dict]:
        return self.request("POST", "/get_reward", json.dumps(payload).encode())


@pytest.fixture
def served(prm):
    running = Running(prm, max_wait_ms=20)
    yield running
    running.close()


def test_split_steps_drops_blank_steps():
    assert split_steps("\n1+2=3\n\n  \n3*4=2\n", "\n") == ["1+2=3", "3*4=2"]
    assert split_steps("", "\n") == []


@pytest.mark.parametrize("aggregation", ["min", "geomean"])
def test_reply_is_score_steps_and_its_aggregation(prm, aggregation):
    running = Running(prm, aggregation=aggregation)
    try:
        direct = prm.score_steps(PROMPTS, STEPS)
        status, reply = running.post({"query": [_query(p, s) for p, s in zip(PROMPTS, STEPS)], "prompts": PROMPTS,
                                      "labels": ["ignored"] * len(PROMPTS)})
        assert status == 200
        assert set(reply) >= {"rewards", "scores", "step_rewards", "extra_logs"}
        assert reply["extra_logs"]["n_steps"] == [len(s) for s in STEPS]
        for got, want in zip(reply["step_rewards"], direct):
            assert got == pytest.approx(want, abs=1e-5)
        want_rewards = [aggregate(s, aggregation) for s in direct]
        assert reply["rewards"] == pytest.approx(want_rewards, abs=1e-5)
        assert reply["scores"] == reply["rewards"]

        # no prompts: the whole query is the response, the prompt is empty
        status, reply = running.post({"query": ["1+2=3\n3*4=2"]})
        assert status == 200
        assert reply["step_rewards"][0] == pytest.approx(prm.score_steps([""], [["1+2=3", "3*4=2"]])[0], abs=1e-5)
        # a response with no step scores 0.0 without the model
        status, reply = running.post({"query": [PROMPTS[0] + "\n\n"], "prompts": [PROMPTS[0]]})
        assert (status, reply["rewards"], reply["step_rewards"]) == (200, [0.0], [[]])
    finally:
        running.close()


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(prm, served):
    direct = prm.score_steps(PROMPTS, STEPS)

    def client(c: int) -> list[tuple[int, list[float]]]:
        out = []
        for r in range(10):
            i = (c + r) % len(PROMPTS)
            status, reply = served.post({"query": [_query(PROMPTS[i], STEPS[i])], "prompts": [PROMPTS[i]]})
            out.append((i, status, reply))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [x for part in pool.map(client, range(8)) for x in part]
    assert len(results) == 80
    for i, status, reply in results:
        assert status == 200, reply
        assert reply["step_rewards"][0] == pytest.approx(direct[i], abs=1e-5)
        assert reply["rewards"][0] == pytest.approx(min(direct[i]), abs=1e-5)
    stats = served.server.stats()
    assert stats["requests"] == 80
    assert stats["items"] == 80
    assert stats["batches"] < 80  # several clients' queries shared a forward pass


GOOD = {"query": [_query(PROMPTS[0], STEPS[0])], "prompts": [PROMPTS[0]]}


def _bad_requests():
    """(what, method, path, body, headers, status, words the error must contain)."""
    js = lambda x: json.dumps(x).encode()  # noqa: E731
    return [
        ("malformed JSON", "POST", "/get_reward", b'{"query": [', {}, 400, "not valid JSON"),
        ("non-UTF-8 bytes", "POST", "/get_reward", b'{"query": ["\xff\xfe"]}', {}, 400, "UTF-8"),
        ("nested too deep", "POST", "/get_reward", b"[" * 200_000, {}, 400, "nested too deeply"),
        ("body not an object", "POST", "/get_reward", js(["a"]), {}, 400, "JSON object"),
        ("no query", "POST", "/get_reward", js({"prompts": []}), {}, 400, "missing 'query'"),
        ("query a string", "POST", "/get_reward", js({"query": "abc"}), {}, 400, "'query' must be a list"),
        ("query item not a string", "POST", "/get_reward", js({"query": ["a", 3]}), {}, 400, "query[1] must be a string"),
        ("lone surrogate", "POST", "/get_reward", b'{"query": ["\\ud800"]}', {}, 400, "lone surrogate"),
        ("prompts wrong length", "POST", "/get_reward", js({"query": ["a", "b"], "prompts": ["a"]}), {}, 400,
         "'prompts' has 1 entries but 'query' has 2"),
        ("prompts not a list", "POST", "/get_reward", js({"query": ["a"], "prompts": "a"}), {}, 400, "'prompts' must be a list"),
        ("prompt not a prefix", "POST", "/get_reward", js({"query": ["Q:1\n1=1", "Q:2\n2=2"], "prompts": ["Q:1", "Q:3"]}),
         {}, 400, "query[1] does not start with prompts[1]"),
        ("1 MB query", "POST", "/get_reward", js({"query": ["1+1=2\n" * 175_000]}), {}, 413, "query[0] has 1050000 characters"),
        ("too many steps", "POST", "/get_reward", js({"query": ["1\n" * 1025]}), {}, 413, "query[0] has 1025 steps"),
        ("unknown path", "POST", "/nowhere", js(GOOD), {}, 404, "no such path"),
        ("GET on /get_reward", "GET", "/get_reward", None, {}, 405, "GET is not allowed"),
        ("POST on /health", "POST", "/health", b"{}", {}, 405, "POST is not allowed"),
        ("PUT on /get_reward", "PUT", "/get_reward", js(GOOD), {}, 405, "PUT is not allowed"),
    ]


def test_bad_input_gets_a_4xx_with_a_message_and_the_server_keeps_serving(served):
    want = served.post(GOOD)
    assert want[0] == 200
    for what, method, path, body, headers, status, words in _bad_requests():
        got_status, reply = served.request(method, path, body, headers)
        assert got_status == status, (what, reply)
        assert words in reply["error"], (what, reply)
        assert served.post(GOOD) == want, f"a good request failed after: {what}"
    # the empty batch is a 200 with empty lists (documented), not an error
    assert served.post({"query": []}) == (200, {"rewards": [], "scores": [], "step_rewards": [],
                                                "extra_logs": {"n_steps": []}})
    assert served.request("GET", "/health")[0] == 200


def test_one_kept_alive_connection_stays_in_step_through_errors(served):
    """HTTP/1.1 clients that reuse a connection (requests.Session) get every reply in order."""
    good = json.dumps(GOOD).encode()
    conn = http.client.HTTPConnection(served.host, served.port, timeout=30)
    try:
        seen, sockets = [], set()
        for method, path, body in [("POST", "/get_reward", good), ("POST", "/get_reward", b"{bad"),
                                   ("POST", "/nowhere", good), ("GET", "/get_reward", None),
                                   ("GET", "/health", None), ("POST", "/get_reward", good)]:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            seen.append((resp.status, json.loads(resp.read())))
            sockets.add(id(conn.sock) if conn.sock is not None else None)
        assert sockets != {None} and len(sockets) == 1  # one connection, never closed in between
        assert [status for status, _ in seen] == [200, 400, 404, 405, 200, 200]
        assert seen[-1] == seen[0]
    finally:
        conn.close()


def test_body_over_the_limit_is_413_and_no_content_length_is_411(prm):
    running = Running(prm, max_body_bytes=4096)
    try:
        status, reply = running.request("POST", "/get_reward", json.dumps({"query": ["x" * 2**20]}).encode())
        assert status == 413 and "the limit is 4096" in reply["error"]
        # a raw request without Content-Length
        with socket.create_connection((running.host, running.port), timeout=10) as s:
            s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
            raw = b""
            while chunk := s.recv(4096):  # the server closes after a 411: read to the end
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 411") and b"Content-Length is required" in raw
        # a client that asks first (curl's Expect: 100-continue) is refused before it sends the body
        with socket.create_connection((running.host, running.port), timeout=10) as s:
            s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            raw = b""
            while chunk := s.recv(4096):
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 413") and b"the limit is 4096" in raw
        assert running.post(GOOD)[0] == 200
    finally:
        running.close()


def test_an_exception_while_scoring_is_a_500_for_its_request_only(prm, monkeypatch):
    real = prm.score_steps

    def flaky(prompts, steps, batch_size=64):
        if any("BOOM" in s for st in steps for s in st):
            raise RuntimeError("the PRM choked on BOOM")
        return real(prompts, steps, batch_size=batch_size)

    monkeypatch.setattr(prm, "score_steps", flaky)
    running = Running(prm, max_wait_ms=50)  # a long window so the bad and good requests share a batch
    try:
        bad = {"query": ["Q:1\nBOOM\n"], "prompts": ["Q:1"]}
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(running.post, bad if k == 0 else GOOD) for k in range(4)]
            results = [f.result() for f in futures]
        assert results[0][0] == 500 and "the PRM choked on BOOM" in results[0][1]["error"]
        assert all(status == 200 for status, _ in results[1:])
        assert running.post(GOOD)[0] == 200
        assert running.request("GET", "/health")[0] == 200
    finally:
        running.close()


def test_compute_score_and_client_against_the_live_server(prm, served, monkeypatch):
    direct = prm.score_steps(PROMPTS, STEPS)
    response = "\n".join(STEPS[1]) + "\n"
    # veRL passes the response alone; the prompt comes from extra_info when the dataset has it
    got = compute_score("arith", response, "4", {"prompt": PROMPTS[1] + "\n"}, url=served.url)
    assert isinstance(got, float)
    assert got == pytest.approx(min(prm.score_steps([PROMPTS[1] + "\n"], [STEPS[1]])[0]), abs=1e-5)
    monkeypatch.setenv("SELFPRM_REWARD_URL", served.url)
    no_prompt = compute_score("arith", response, "4")
    assert no_prompt == pytest.approx(min(prm.score_steps([""], [STEPS[1]])[0]), abs=1e-5)

    client = RemoteRewardClient(served.url + "/get_reward", timeout=10, retries=0)
    queries = [_query(p, s) for p, s in zip(PROMPTS, STEPS)]
    assert client.rewards(queries, PROMPTS) == pytest.approx([min(d) for d in direct], abs=1e-5)
    for got_steps, want in zip(client.step_rewards(queries, PROMPTS), direct):
        assert got_steps == pytest.approx(want, abs=1e-5)
    with pytest.raises(RewardServerError, match="query\\[0\\] does not start with prompts\\[0\\]") as err:
        client.rewards(["abc"], ["xyz"])  # a 4xx is raised at once, not retried
    assert err.value.status == 400


def test_client_gives_up_after_its_retries():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RemoteRewardClient(f"http://127.0.0.1:{port}", timeout=2, retries=2, backoff_s=0.01)
    with pytest.raises(RewardServerError, match="did not answer after 3 tries"):
        client.rewards(["1+1=2"])


def test_small_load_test_has_no_errors(prm, served):
    spec = importlib.util.spec_from_file_location("reward_server_load", ROOT / "benchmarks" / "reward_server_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    items = [(p, _query(p, s)) for p, s in zip(PROMPTS, STEPS)]
    res = bench.load_test(served.url, items, requests=100, clients=4, seconds=60)
    assert res["errors"] == 0, res["first_errors"]
    assert res["ok"] == 100
    assert not math.isnan(res["p50_ms"])


def test_batcher_runs_queued_requests_together_and_isolates_a_failing_one():
    """Deterministic: while the worker is held on a first request, three more queue up; they run as
    one batch, it fails on one of them, and each is rescored alone so only that one gets the error."""
    release = threading.Event()
    calls = []

    def score(prompts, steps):
        calls.append(list(prompts))
        if prompts == ["hold"]:
            release.wait(10)
        if "bad" in prompts:
            raise ValueError("bad prompt")
        return [[0.5] * len(s) for s in steps]

    batcher = Batcher(score, batch_size=8, max_wait_ms=0)
    try:
        results = {}

        def submit(name):
            try:
                results[name] = batcher.submit([name], [["step"]], timeout=10)
            except Exception as e:  # noqa: BLE001
                results[name] = e

        threads = [threading.Thread(target=submit, args=("hold",))]
        threads[0].start()
        while not calls:  # the worker holds the first request
            threading.Event().wait(0.001)
        for name in ("a", "bad", "b"):
            threads.append(threading.Thread(target=submit, args=(name,)))
            threads[-1].start()
        while batcher._queue.qsize() < 3:
            threading.Event().wait(0.001)
        release.set()
        for t in threads:
            t.join(10)
        assert results["hold"] == results["a"] == results["b"] == [[0.5]]
        assert isinstance(results["bad"], ValueError)
        assert sorted(calls[1]) == ["a", "b", "bad"]  # the three queued requests shared one call
        assert batcher.stats() == {"requests": 4, "items": 3, "batches": 5, "failed_batches": 2}
    finally:
        batcher.close()


def test_steps_are_split_the_policy_s_way_when_its_delimiter_differs_from_the_prm_s(prm):
    """A PRM whose separator is ``\\n`` serving responses whose steps are blank-line separated (as a
    math policy writes them): with ``step_delimiter="\\n\\n"`` each paragraph is one step, scored as
    the PRM reads steps (joined by its own separator)."""
    running = Running(prm, step_delimiter="\n\n")
    try:
        status, reply = running.post({"query": ["Q:1 +2 *4\n\n1+2=3\n\n3*4=2"], "prompts": ["Q:1 +2 *4\n\n"]})
        assert status == 200 and reply["extra_logs"]["n_steps"] == [2]
        assert reply["step_rewards"][0] == pytest.approx(prm.score_steps(["Q:1 +2 *4\n\n"], [["1+2=3", "3*4=2"]])[0],
                                                         abs=1e-5)
    finally:
        running.close()
