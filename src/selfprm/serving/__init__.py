"""Serving over HTTP: a local causal LM as an OpenAI-compatible completions server (``policy_server``) and a PRM as a reward server."""
