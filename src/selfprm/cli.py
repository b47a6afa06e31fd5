"""The ``selfprm`` command line: one parser for every study, its flags built from the study's config.

    selfprm demo [--quick] [--domain code]        the spine on a synthetic domain (arith by default)
    selfprm label-efficiency [--quick]            label quality against policy tokens, per source
    selfprm real [--quick] [--out DIR]            PRMs on real text from self-supervised sources
    selfprm rl [--quick] [--out DIR]              GRPO with step rewards; best-of-N and beam search
    selfprm jepa [--quick] [--out DIR]            UI-JEPA: intent from unlabeled UI streams
    selfprm eval processbench --prm PATH          ProcessBench first-error F1 of a saved PRM
    selfprm study [--quick] [--engine ray]        the grid: source x trajectories x domain x seed, one HTML page
    selfprm selfeval [--quick] [--out DIR]        PCL, self-knowledge tests of every judge, Ctx2Skill self-play

    From a user's model and problems to a PRM, each step reading and writing files one can inspect:
    selfprm generate --policy SPEC --problems FILE --n N --out traj.jsonl     sample solutions
    selfprm label --source NAME [--policy SPEC] --in traj.jsonl --out labeled.jsonl   step labels
    selfprm train --backbone PATH --data labeled.jsonl --out prm/              train a PRM
    selfprm eval bon --prm prm/ --data traj.jsonl [--n N]                       best-of-N accuracy
    selfprm serve --prm prm/ [--port 5000]                                      the PRM over HTTP

As TRL's parsers do, every field of a study's ``Config`` dataclass is a flag (``--n-train-problems
100``), nested configs by dotted name (``--sft.steps 400``, ``--prm.head-lr 0.05``); each flag's
help is the field's line in the config's ``Parameters:`` block. ``--preset quick`` (or ``--quick``)
starts from the smaller preset; flags override it. Lists are comma-separated (``--sources a,b``),
booleans take ``--x`` / ``--no-x``, dicts and nested lists are JSON. The resolved config is written
to ``OUT/config.json`` (a study with ``WRITES_OWN_CONFIG``, such as ``generate`` whose ``--out`` is a
file, records it in its own output once its inputs are checked). A command's module is imported only
when that command is chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import types
import typing
from typing import Any, Callable, Sequence

# command words -> (study name in selfprm.studies.STUDIES, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("demo", "run the whole pipeline on a synthetic domain (arith, or --domain code)"),
    ("label-efficiency",): ("label-efficiency", "label quality per policy token, every source, one shared pool"),
    ("real",): ("real", "train PRMs per label source on real text, evaluate on ProcessBench"),
    ("rl",): ("rl", "GRPO variants with dense step rewards, and PRM-guided search, on the tiny policy"),
    ("jepa",): ("jepa", "UI-JEPA: intent from unlabeled UI streams, against scratch and MAE"),
    ("eval", "processbench"): ("eval-processbench", "ProcessBench first-error F1 of a saved PRM"),
    ("generate",): ("generate", "sample N step-by-step solutions per problem from a policy, outcomes checked"),
    ("label",): ("label", "step labels for sampled solutions from any registered label source"),
    ("train",): ("train", "train a PRM on step labels, on any transformers backbone at a local path"),
    ("eval", "bon"): ("eval-bon", "best-of-N accuracy of a saved PRM beside majority vote, random and oracle picks"),
    ("serve",): ("serve", "a saved PRM as a remote reward model (OpenRLHF's /get_reward), or a local policy as a completions server"),
    ("study",): ("study", "the grid: label source x trajectories x domain x seed, study.json and one HTML page"),
    ("selfeval",): ("selfeval", "introspective signals: Post-Completion Learning, self-knowledge tests, Ctx2Skill self-play"),
}


# ----------------------------------------------------------------------------- config -> flags


def field_docs(cls: type) -> dict[str, str]:
    """``name -> text`` from the ``Parameters:`` block of a dataclass's docstring (TRL's style)."""
    doc = cls.__doc__ or ""
    if "Parameters:" not in doc:
        return {}
    out: dict[str, str] = {}
    current = None
    indent = None
    for line in doc.split("Parameters:", 1)[1].splitlines():
        if not line.strip():
            continue
        m = re.match(r"^(\s+)(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
        width = len(line) - len(line.lstrip())
        if m and (indent is None or width == indent):
            indent = width
            current = m.group(2)
            out[current] = m.group(3).strip()
        elif current is not None and indent is not None and width > indent:
            out[current] += " " + line.strip()
        else:
            break
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _contains_dataclass(tp: Any) -> bool:
    if dataclasses.is_dataclass(tp):
        return True
    return any(_contains_dataclass(a) for a in typing.get_args(tp))


def _parser_for(tp: Any) -> Callable[[str], Any] | None:
    """How a flag's string becomes the field's value; None when the field has no flag form."""
    inner, optional = _unwrap_optional(tp)
    origin, args = typing.get_origin(inner), typing.get_args(inner)

    def none_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        return (lambda s: None if s.lower() in ("none", "null") else parse(s)) if optional else parse

    if inner in (int, float, str):
        return none_or(inner)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
        item = args[0]
        return none_or(lambda s: tuple(item(x.strip()) for x in s.split(",") if x.strip()))
    if _contains_dataclass(inner):
        return None  # a container of configs: set it in Python, not on the command line
    if origin in (dict, list, tuple) or inner in (dict, list):
        def from_json(s: str) -> Any:
            value = json.loads(s)
            return tuple(tuple(v) if isinstance(v, list) else v for v in value) if origin is tuple else value
        return none_or(from_json)
    return None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One flag per field of ``cls`` (recursing into nested config dataclasses as ``--a.b``).

    Flags default to "not given" (``argparse.SUPPRESS``) so that only what the user typed
    overrides the preset."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        dest = prefix + f.name
        inner, _ = _unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            add_config_arguments(parser, inner, dest + ".")
            continue
        flags = ["--" + dest.replace("_", "-")]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        help_text = docs.get(f.name, "")
        if inner is bool:
            parser.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
            continue
        parse = _parser_for(tp)
        if parse is None:
            continue
        parser.add_argument(*flags, dest=dest, type=parse, default=argparse.SUPPRESS, required=required,
                            metavar=f.name.upper(), help=help_text)


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` with dotted-name overrides applied (``{"sft.steps": 400}``), nested configs
    rebuilt with :func:`dataclasses.replace` so their ``__post_init__`` checks run again."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = apply_overrides(getattr(config, head), sub)
    return dataclasses.replace(config, **direct) if direct else config


def _required_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]


def add_study_arguments(parser: argparse.ArgumentParser, study) -> None:
    """The flags every study shares (``--out``, ``--preset``/``--quick``, ``--no-progress``) and its config's."""
    default_out = getattr(study, "DEFAULT_OUT", None)
    out_help = getattr(study, "OUT_HELP", "output folder; a rerun resumes from what it holds")
    parser.add_argument("--out", default=default_out, required=default_out is None and getattr(study, "OUT_REQUIRED", False),
                        help=out_help + (f" (default {default_out})" if default_out else ""))
    if study.PRESETS:
        parser.add_argument("--preset", choices=sorted(study.PRESETS), default="full",
                            help="the configuration to start from; flags override it")
        if "quick" in study.PRESETS:
            parser.add_argument("--quick", dest="preset", action="store_const", const="quick", help="same as --preset quick")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch's intra-op threads (default: torch's own, one per core); set it to the cores "
                             "a run may use when others share the machine, so timings stay comparable")
    add_config_arguments(parser.add_argument_group("configuration"), study.Config)


def config_from_args(study, args: argparse.Namespace) -> Any:
    """The study's config: its preset, then every flag the user gave."""
    special = {"out", "preset", "no_progress", "threads", "_study", "_command", "_subcommand"}
    given = {k: v for k, v in vars(args).items() if k not in special}
    if study.PRESETS:
        config = study.PRESETS[args.preset]()
    else:
        required = _required_fields(study.Config)
        config = study.Config(**{k: given.pop(k) for k in required})
    return apply_overrides(config, given)


# ----------------------------------------------------------------------------- the command


def _chosen(path: tuple[str, ...], argv: Sequence[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return tuple(words[: len(path)]) == path


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from selfprm.studies import STUDIES

    parser = argparse.ArgumentParser(prog="selfprm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="_command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (study_name, help_text) in COMMANDS.items():
        if len(path) == 1:
            p = sub.add_parser(path[0], help=help_text, description=help_text)
        else:
            if path[0] not in groups:
                g = sub.add_parser(path[0], help=f"{path[0]} commands")
                groups[path[0]] = g.add_subparsers(dest="_subcommand", required=True)
            p = groups[path[0]].add_parser(path[1], help=help_text, description=help_text)
        p.set_defaults(_study=study_name)
        # only the chosen command's module is imported to add its flags
        if _chosen(path, argv):
            add_study_arguments(p, STUDIES.get(study_name))
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    from pathlib import Path

    from selfprm.rundir import config_blob
    from selfprm.studies import STUDIES
    from selfprm.types import write_json

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _build_parser(argv).parse_args(argv)
    study = STUDIES.get(args._study)
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"selfprm {args._study}: --threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(study, args)
    except (ValueError, TypeError, KeyError) as e:  # a bad value fails before anything is written
        raise SystemExit(f"selfprm {args._study}: {e}") from None
    # a study whose --out is a file (generate, label) records its config itself, after its inputs are checked
    if args.out is not None and not getattr(study, "WRITES_OWN_CONFIG", False):
        write_json(Path(args.out) / "config.json", config_blob(config))
    if args.no_progress:
        # transformers' own bars (loading and saving weights) would otherwise fill a quiet log
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return study.run(config, args.out, progress=not args.no_progress)


def entry_point() -> int:
    main()
    return 0


if __name__ == "__main__":
    sys.exit(entry_point())
