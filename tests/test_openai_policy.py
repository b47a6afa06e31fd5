"""The openai backend against a real loopback HTTP server (the tiny model behind
``selfprm.serving.policy_server``), stub servers for retries and time-outs, the spec parser, and
the vllm backend's missing-extra error."""

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfprm.domains.math import MathDomain, MathDomainConfig
from selfprm.policies import HFPolicy, Prefix
from selfprm.policies.openai_api import OpenAIAPIError, OpenAIPolicy, OpenAIPolicyConfig, split_tokens
from selfprm.policies.spec import load_policy, parse_policy_spec
from selfprm.serving.policy_server import build_policy_server
from selfprm.types import Problem


def serve(server):
    """Serve on a daemon thread; returns a stopper."""
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()

    def stop():
        server.shutdown()
        server.server_close()
        th.join(5)

    return stop


@pytest.fixture
def policy_server(tiny_lm, char_tokenizer, one_torch_thread):
    server = build_policy_server((tiny_lm, char_tokenizer), model_name="tiny", max_new_tokens_cap=64)
    stop = serve(server)
    yield server
    stop()


def post(url, body, timeout=10):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if not isinstance(body, bytes) else body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Stub:
    """A stub completions server: ``reply(attempt, body, headers) -> (status, json)``, or it sleeps."""

    def __init__(self, reply):
        self.reply, self.attempts, self.bodies, self.headers = reply, 0, [], []
        self.release = threading.Event()  # ends a handler that is made to hang
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.attempts += 1
                stub.bodies.append(body)
                stub.headers.append(dict(self.headers))
                status, obj = stub.reply(stub.attempts, body, self)
                if status is None:
                    return
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stop = serve(self.server)

    def close(self):
        self.release.set()
        self._stop()


def completion(texts, completion_tokens, finish="stop"):
    return {"object": "text_completion", "choices": [{"index": i, "text": t, "finish_reason": finish}
                                                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 5, "completion_tokens": completion_tokens, "total_tokens": 5 + completion_tokens}}


# ----------------------------------------------------------------------------- against the real server


def test_samples_and_continues_through_the_server_with_token_counts(policy_server, domain):
    pol = OpenAIPolicy(policy_server.url, "tiny", domain, OpenAIPolicyConfig(max_new_tokens=12, seed=3, max_workers=4))
    probs = domain.sample_problems(3, seed=0)
    groups = pol.sample(probs, 3)
    assert [len(g) for g in groups] == [3, 3, 3]
    for g, p in zip(groups, probs):
        for t in g:
            assert t.problem is p and 1 <= t.tokens_generated <= 12
            assert t.oracle_labels is not None and len(t.oracle_labels) == len(t.steps)
    # the untrained model rarely ends: a completion cut at the limit cost exactly max_tokens
    assert any(t.truncated and t.tokens_generated == 12 for g in groups for t in g)
    spent = sum(t.tokens_generated for g in groups for t in g)
    assert spent == pol.completion_tokens and pol.token_passes == pol.prompt_tokens + spent
    assert pol.prompt_tokens == sum(len(domain.render(p)) + 1 for p in probs)  # BOS + one token a character
    cont = pol.continue_from([Prefix(probs[0], ["7+5=2"]), Prefix(probs[1], [])], 2)
    assert [len(g) for g in cont] == [2, 2] and all(t.steps[0] == "7+5=2" for t in cont[0])
    assert pol.completion_tokens == spent + sum(t.tokens_generated for g in cont for t in g)
    # a prefix asked for twice is one request for both
    before = pol.requests
    twice = pol.continue_from([Prefix(probs[2], ["1+1=2"]), Prefix(probs[2], ["1+1=2"])], 2)
    assert pol.requests == before + 1 and [len(g) for g in twice] == [2, 2]


def test_is_repeatable_from_its_seed(policy_server, domain):
    probs = domain.sample_problems(2, seed=0)
    steps = lambda pol: [t.steps for g in pol.sample(probs, 2) for t in g]  # noqa: E731
    mk = lambda seed: OpenAIPolicy(policy_server.url, "tiny", domain, OpenAIPolicyConfig(max_new_tokens=10, seed=seed))  # noqa: E731
    a, b, c = mk(7), mk(7), mk(8)
    first = steps(a)
    assert first == steps(b) != steps(c)
    assert steps(a) != first  # each call draws afresh
    a.reseed(7)
    assert steps(a) == first  # reseeded: the same calls again


def test_server_speaks_the_completions_api_and_rejects_bad_input(policy_server, char_tokenizer):
    url = policy_server.url + "/v1/completions"
    status, r = post(url, {"model": "tiny", "prompt": ["Q:1 +2\n", "Q:3 *4\n"], "n": 2, "max_tokens": 8, "seed": 1})
    assert status == 200 and r["object"] == "text_completion"
    assert [c["index"] for c in r["choices"]] == [0, 1, 2, 3]
    assert all(c["finish_reason"] in ("stop", "length") for c in r["choices"])
    # one character a token (special tokens the untrained model writes count, but show no text);
    # a choice that ended wrote its end token too
    shown = sum(len(c["text"]) + (c["finish_reason"] == "stop") for c in r["choices"])
    assert shown <= r["usage"]["completion_tokens"] <= 4 * 8
    assert r["usage"]["prompt_tokens"] == 2 * (len("Q:1 +2\n") + 1)
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
    # a stop string ends the text before it
    _, r = post(url, {"prompt": "Q:1 +2\n", "n": 4, "max_tokens": 30, "stop": ["1", "2"], "seed": 2})
    assert all("1" not in c["text"] and "2" not in c["text"] for c in r["choices"])
    assert all(c["finish_reason"] == "stop" or len(c["text"]) == 30 for c in r["choices"])
    # greedy: every choice is the same
    _, r = post(url, {"prompt": "Q:1 +2\n", "n": 3, "max_tokens": 6, "temperature": 0})
    assert len({c["text"] for c in r["choices"]}) == 1
    for bad, field in [(b"{not json", "JSON"), ({"n": 1}, "prompt"), ({"prompt": "x", "n": 0}, "'n'"),
                       ({"prompt": "x", "temperature": "hot"}, "temperature"), ({"prompt": "x", "stop": [1]}, "stop"),
                       ({"prompt": [1, 2]}, "prompt"), ({"prompt": "x", "top_p": 0}, "top_p")]:
        status, r = post(url, bad)
        assert status == 400 and field in r["error"]["message"], (bad, r)
    status, _ = post(policy_server.url + "/v1/chat/completions", {"prompt": "x"})
    assert status == 404
    status, r = post(url, {"prompt": "Q:1\n", "max_tokens": 2})  # still serving
    assert status == 200 and len(r["choices"]) == 1
    with urllib.request.urlopen(policy_server.url + "/v1/models", timeout=10) as resp:
        assert [m["id"] for m in json.loads(resp.read())["data"]] == ["tiny"]


# ----------------------------------------------------------------------------- stub servers


def test_retries_503_then_succeeds_and_sends_the_api_fields(domain, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    stub = Stub(lambda k, body, h: (503, {"error": {"message": "busy"}}) if k <= 2
                else (200, completion(["7+5=2\nA:2"] * body["n"], 9 * body["n"])))
    try:
        pol = OpenAIPolicy(stub.url, "m", domain, OpenAIPolicyConfig(max_retries=3, backoff=0.01, seed=5, max_new_tokens=20))
        [[t1, t2]] = pol.sample([domain.make_problem("p", 7, [("+", 5)])], 2)
    finally:
        stub.close()
    assert stub.attempts == 3 and pol.requests == 3
    assert t1.steps == ["7+5=2"] and t1.final_answer == "2" and t1.outcome and t1.oracle_labels == [True]
    assert t1.tokens_generated + t2.tokens_generated == 18
    body = stub.bodies[-1]
    assert body["prompt"] == domain.render(domain.make_problem("p", 7, [("+", 5)]))
    assert (body["model"], body["n"], body["max_tokens"], body["temperature"], body["top_p"]) == ("m", 2, 20, 1.0, 1.0)
    assert isinstance(body["seed"], int) and "stop" not in body  # arith has no stop strings
    assert stub.headers[-1]["Authorization"] == "Bearer sk-test"


def test_a_client_error_is_not_retried_and_names_url_and_status(domain):
    stub = Stub(lambda k, body, h: (400, {"error": {"message": "max_tokens is too large"}}))
    try:
        pol = OpenAIPolicy(stub.url + "/v1", "m", domain, OpenAIPolicyConfig(max_retries=3, backoff=0.01))
        with pytest.raises(OpenAIAPIError, match=r"/v1/completions failed \(HTTP 400\): max_tokens is too large") as e:
            pol.sample(domain.sample_problems(1, seed=0), 1)
    finally:
        stub.close()
    assert stub.attempts == 1 and e.value.status == 400 and e.value.url == stub.url + "/v1/completions"


def test_a_server_that_never_answers_in_time_raises_after_retries(domain):
    stub = Stub(lambda k, body, h: (stub.release.wait(5), (None, None))[1])
    try:
        pol = OpenAIPolicy(stub.url, "m", domain, OpenAIPolicyConfig(timeout=0.2, max_retries=2, backoff=0.01))
        t0 = time.perf_counter()
        with pytest.raises(OpenAIAPIError) as e:
            pol.sample(domain.sample_problems(1, seed=0), 1)
        took = time.perf_counter() - t0
    finally:
        stub.close()
    assert stub.url + "/v1/completions" in str(e.value) and "no answer" in str(e.value) and "3 attempts" in str(e.value)
    assert stub.attempts == 3 and e.value.status is None and took < 3


def test_a_refused_connection_is_retried_then_named(domain):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pol = OpenAIPolicy(f"http://127.0.0.1:{port}", "m", domain, OpenAIPolicyConfig(max_retries=1, backoff=0.01))
    with pytest.raises(OpenAIAPIError, match=rf"127.0.0.1:{port}/v1/completions.*2 attempts"):
        pol.sample(domain.sample_problems(1, seed=0), 1)
    assert pol.requests == 2


def test_math_domain_through_the_api_sends_its_stop_strings():
    dom = MathDomain(MathDomainConfig(template="qwen-chat"))
    stub = Stub(lambda k, body, h: (200, completion(["Add.\n\nSo \\boxed{2}.", "So \\boxed{3}."], 30)))
    try:
        pol = OpenAIPolicy(stub.url, "qwen", dom, OpenAIPolicyConfig(max_n=2))
        [group] = pol.sample([Problem("p", "1+1?", "2")], 4)  # n=4 in two requests of 2
    finally:
        stub.close()
    assert [b["n"] for b in stub.bodies] == [2, 2] and len({b["seed"] for b in stub.bodies}) == 2
    assert stub.bodies[0]["stop"] == list(dom.stop) and stub.bodies[0]["prompt"].endswith("<|im_start|>assistant\n")
    assert [t.outcome for t in group] == [True, False, True, False] and group[0].steps == ["Add.", "So \\boxed{2}."]
    assert sum(t.tokens_generated for t in group) == 60


def test_split_tokens_gives_the_limit_to_cut_choices_and_shares_the_rest():
    assert split_tokens(30, ["aaaa", "b", "c"], ["length", "stop", "stop"], cap=12) == [12, 9, 9]
    assert split_tokens(10, ["a", "bb", ""]) == [3, 5, 2]
    parts = split_tokens(30, ["a" * 100, "b", "c"], ["stop"] * 3, cap=12)
    assert sum(parts) == 30 and max(parts) <= 12
    assert split_tokens(7, []) == []


# ----------------------------------------------------------------------------- specs and the vllm extra


def test_policy_specs(policy_server, domain, tiny_lm, char_tokenizer, tmp_path):
    assert parse_policy_spec("openai:http://h:8000/v1#org/model") == ("openai", "http://h:8000/v1", "org/model")
    assert parse_policy_spec("hf:/m") == ("hf", "/m", None)
    with pytest.raises(ValueError, match=r"unknown scheme.*hf:PATH.*openai:URL#MODEL.*vllm:PATH"):
        load_policy("gguf:/m", domain)
    with pytest.raises(ValueError, match="http"):
        parse_policy_spec("openai:localhost:8000#m")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_policy(f"hf:{tmp_path / 'no-such-model'}", domain)
    pol = load_policy(f"openai:{policy_server.url}#tiny", domain, temperature=0.7, max_new_tokens=9, seed=4, max_workers=2)
    assert isinstance(pol, OpenAIPolicy) and pol.model == "tiny"
    assert (pol.config.temperature, pol.config.max_new_tokens, pol.config.seed, pol.config.max_workers) == (0.7, 9, 4, 2)
    assert load_policy(f"openai:{policy_server.url}", domain).model == "tiny"  # the server's only model
    with pytest.raises(ValueError, match="batch_size"):
        load_policy(f"openai:{policy_server.url}#tiny", domain, batch_size=3)
    tiny_lm.save_pretrained(tmp_path / "tiny")
    char_tokenizer.save_pretrained(tmp_path / "tiny")
    hf = load_policy(f"hf:{tmp_path / 'tiny'}", domain, max_new_tokens=6, seed=1, device="cpu", batch_size=8)
    assert isinstance(hf, HFPolicy) and hf.config.batch_size == 8
    [[t]] = hf.sample(domain.sample_problems(1, seed=0), 1)
    assert 1 <= t.tokens_generated <= 6


def test_vllm_backend_without_vllm_names_the_extra(domain, monkeypatch, tmp_path):
    from selfprm.policies.vllm_engine import VLLMPolicy

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed, whether or not it is
    with pytest.raises(ImportError, match=r"pip install 'selfprm\[vllm\]'"):
        VLLMPolicy(str(tmp_path), domain)
    with pytest.raises(ImportError, match=r"selfprm\[vllm\]"):
        load_policy(f"vllm:{tmp_path}", domain)
