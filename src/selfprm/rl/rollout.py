"""Sampling rollouts with their token ids, and mapping tokens back to the steps they write.

A :class:`Rollout` keeps what the optimiser needs: the prompt's token ids (``<bos>`` and the bare
problem), the completion's token ids, and the judged trajectory. The completion may begin with
*given* tokens — steps the policy was handed rather than wrote (a demonstration prefix in R3, the
shared trunk of a tree in Tree-GRPO) — so that every rollout of a problem is laid out against the
same prompt and its steps line up with ``trajectory.steps``. ``train_mask`` says which completion
tokens the loss sees (by default: the ones generated in this call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from selfprm.policies.base import Prefix
from selfprm.types import Trajectory

ANSWER_SEGMENT = -1  # the token belongs to the final answer line (or the end token)
OTHER_SEGMENT = -2  # blank lines, text after the answer


@dataclass
class Rollout:
    prompt_ids: list[int]
    completion_ids: list[int]
    trajectory: Trajectory
    group: int  # rollouts of one group are normalised together (GRPO's group)
    n_given: int = 0  # leading completion tokens that were given, not generated
    n_given_steps: int = 0
    train_mask: list[bool] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train_mask is None:
            self.train_mask = [i >= self.n_given for i in range(len(self.completion_ids))]


def token_segments(tokenizer, completion_ids: Sequence[int], separator: str = "\n", answer_prefix: str = "A:") -> list[int]:
    """For every completion token, the index of the step it writes (as ``parse_completion`` counts
    steps), :data:`ANSWER_SEGMENT` for the answer line and end token, :data:`OTHER_SEGMENT` else.

    Tokens are decoded one at a time and their lengths summed to place them in the text — exact
    for the embedded character tokenizer, and a separator token belongs to the step it ends.
    """
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in completion_ids]
    text = "".join(pieces)
    lines = text.split(separator)
    # what each line is: a step index, the answer, or nothing
    kinds: list[int] = []
    n_steps, answered = 0, False
    for line in lines:
        s = line.strip()
        if answered or not s:
            kinds.append(OTHER_SEGMENT)
        elif s.startswith(answer_prefix):
            kinds.append(ANSWER_SEGMENT)
            answered = True
        else:
            kinds.append(n_steps)
            n_steps += 1
    out, line_no = [], 0
    for piece in pieces:
        out.append(kinds[line_no] if line_no < len(kinds) else OTHER_SEGMENT)
        line_no += piece.count(separator)
    # the end token (decodes to nothing) closes the answer
    for i in range(len(out) - 1, -1, -1):
        if pieces[i]:
            break
        out[i] = ANSWER_SEGMENT if answered else out[i]
    return out


@torch.no_grad()
def sample_rollouts(
    model,
    tokenizer,
    domain,
    prefixes: Sequence[Prefix],
    n: int,
    temperature: float = 1.0,
    max_new_tokens: int = 96,
    seed: int = 0,
    batch_size: int = 256,
    stop_at_step: bool = False,
    groups: Sequence[int] | None = None,
) -> list[Rollout]:
    """``n`` rollouts of every prefix, prefix by prefix; rollout ``group`` is the prefix's index
    (or ``groups[i]``). ``stop_at_step`` ends generation at the step separator (one step only)."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    stops = [eos]
    if stop_at_step:
        sep = tokenizer(domain.step_separator, add_special_tokens=False)["input_ids"]
        if len(sep) != 1:
            raise ValueError("stop_at_step needs a one-token step separator")
        stops.append(sep[0])
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    jobs = [(k, p) for k, p in enumerate(prefixes) for _ in range(n)]
    was = model.training
    model.eval()
    out: list[Rollout] = []
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        for s in range(0, len(jobs), batch_size):
            chunk = jobs[s:s + batch_size]
            texts = [(tokenizer.bos_token or "") + domain.render(p.problem, p.steps) for _, p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                            add_special_tokens=False).to(device)
            # never past the model's context (long given prefixes eat into the room left)
            from selfprm.search.step_sampler import max_positions

            room = max(1, min(max_new_tokens, max_positions(model) - enc["input_ids"].shape[1]))
            gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                                 max_new_tokens=room, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id)
            for (k, p), row in zip(chunk, gen[:, enc["input_ids"].shape[1]:].tolist()):
                stop = next((i for i, t in enumerate(row) if t in stops), None)
                new = row[: len(row) if stop is None else stop + 1]
                text = tokenizer.decode(new, skip_special_tokens=True)
                base = domain.render(p.problem)
                given_text = domain.render(p.problem, p.steps)[len(base):]
                given = tokenizer(given_text, add_special_tokens=False)["input_ids"] if given_text else []
                prompt = bos + tokenizer(base, add_special_tokens=False)["input_ids"]
                traj = domain.from_text(p.problem, p.steps, text, len(new))
                if stop_at_step and stop is not None and new[-1] != eos:
                    traj.truncated = False  # one step was asked for and one was written
                out.append(Rollout(prompt, given + new, traj, k if groups is None else groups[k],
                                   n_given=len(given), n_given_steps=len(p.steps)))
    model.train(was)
    return out
