"""``selfprm serve``: a saved PRM as a remote reward model, or a local policy as a completions server.

    selfprm serve --prm prm/ [--port 5000]          POST /get_reward (OpenRLHF's shape) + step rewards
    selfprm serve --policy hf:PATH [--port 8000]    POST /v1/completions (OpenAI's shape)

The PRM server is :mod:`selfprm.serving.reward_server` (batched across concurrent clients; veRL's
``custom_reward_function`` is :func:`selfprm.serving.verl_reward.compute_score`); the policy server is
:mod:`selfprm.serving.policy_server`, so ``selfprm generate --policy openai:http://HOST:PORT`` and any
OpenAI-compatible client can sample from a local checkpoint without vLLM. Exactly one of ``--prm``
and ``--policy`` is given. The command prints the URL once it listens, and serves until interrupted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

OUT_HELP = "unused (the servers write nothing)"
WRITES_OWN_CONFIG = True  # nothing is written: --out is not used
PRESETS: dict = {}


@dataclass
class ServeConfig:
    """What to serve and where.

    Parameters:
        prm: folder of a saved selfprm PRM (``selfprm train``'s ``--out``): serve it as a reward model.
        policy: ``hf:PATH`` of a local causal LM: serve it as an OpenAI-compatible completions server.
        host: address to listen on (``0.0.0.0`` to accept other machines).
        port: port to listen on (0: any free port, printed).
        batch_size: reward server: queries gathered into one forward pass.
        max_wait_ms: reward server: how long a batch waits to fill once it has a query.
        aggregation: reward server: step scores -> solution reward (``min``, ``product``, ``last``, ``geomean``).
        step_delimiter: reward server: what separates steps in a response (``\\n\\n`` typed as such; default
            the PRM's own step separator).
        max_new_tokens_cap: policy server: the most tokens one completion may ask for.
        device: where the model runs (``cpu``, ``cuda``).
    """

    prm: str | None = None
    policy: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    batch_size: int = 32
    max_wait_ms: float = 5.0
    aggregation: str = "min"
    step_delimiter: str | None = None
    max_new_tokens_cap: int = 512
    device: str = "cpu"

    def check(self) -> None:
        """Raise ValueError naming the option when the config cannot be served (the CLI builds the
        config field by field, so this runs when the command starts, not at construction)."""
        if (self.prm is None) == (self.policy is None):
            raise ValueError("give exactly one of --prm PATH (a reward server) and --policy hf:PATH (a completions server)")
        if self.prm is not None and not (Path(self.prm) / "prm_config.json").exists():
            raise ValueError(f"--prm {self.prm}: not a saved selfprm PRM (no prm_config.json there)")
        if self.policy is not None:
            if not self.policy.startswith("hf:"):
                raise ValueError(f"--policy {self.policy}: the completions server serves a local model, hf:PATH")
            if not Path(self.policy[3:]).is_dir():
                raise ValueError(f"--policy {self.policy}: no model folder at {self.policy[3:]}")


Config = ServeConfig


def build_server(config: ServeConfig):
    """The configured server, bound but not yet serving (``serve_forever`` it; tests run it on a thread)."""
    config.check()
    if config.prm is not None:
        from selfprm.serving.reward_server import build_reward_server
        from selfprm.studies.train import unescape

        return build_reward_server(config.prm, config.host, config.port, batch_size=config.batch_size,
                                   max_wait_ms=config.max_wait_ms, aggregation=config.aggregation,
                                   device=config.device,
                                   step_delimiter=None if config.step_delimiter is None else unescape(config.step_delimiter))
    from selfprm.policies.spec import load_hf_model
    from selfprm.serving.policy_server import build_policy_server

    path = config.policy[3:]
    model, tokenizer = load_hf_model(path, device=config.device)
    return build_policy_server((model, tokenizer), config.host, config.port, config.max_new_tokens_cap,
                               model_name=Path(path).name)


def run(config: ServeConfig, out=None, *, progress: bool = True) -> dict:
    """Serve until interrupted (Ctrl-C, SIGTERM); returns where it listened."""
    import signal

    try:
        config.check()
    except ValueError as e:
        raise SystemExit(f"selfprm serve: {e}") from None
    server = build_server(config)
    host, port = server.server_address[:2]
    url = f"http://{host}:{port}"
    what = f"PRM {config.prm}: POST {url}/get_reward" if config.prm else f"policy {config.policy}: POST {url}/v1/completions"
    # the line a script waits for before it sends requests
    print(f"selfprm serve: listening on {url} ({what})", flush=True)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # the reward server's batcher stops with it
    print("selfprm serve: stopped", file=sys.stderr)
    return {"url": url}
