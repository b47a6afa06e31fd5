"""The ``selfprm`` command line.

    selfprm demo [--quick] [--out DIR]          the spine on the embedded arith domain
    selfprm eval processbench --prm PATH        ProcessBench first-error F1 of a saved PRM
    selfprm study real [--quick] [--out DIR]    PRMs on real text from self-supervised sources
    selfprm label-efficiency [--quick]          label quality against policy tokens, per source
    selfprm rl [--quick] [--out DIR]            GRPO with step rewards; best-of-N and beam search
    selfprm jepa [--quick] [--out DIR]          UI-JEPA: intent from unlabeled UI streams

Subcommands import their module only when chosen, so ``selfprm demo`` never pays for the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# subcommand path -> module providing add_arguments(parser) and run(args)
_COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("selfprm.demo_cli", "run the whole pipeline on the synthetic arith domain"),
    ("eval", "processbench"): ("selfprm.eval.processbench_cli", "ProcessBench first-error F1 of a saved PRM"),
    ("study", "real"): ("selfprm.studies.real", "train PRMs per label source on real text, evaluate on ProcessBench"),
    ("label-efficiency",): ("selfprm.label_efficiency_cli", "label quality per policy token, every source, one shared pool"),
    ("rl",): ("selfprm.rl_cli", "GRPO variants with dense step rewards, and PRM-guided search, on the tiny policy"),
    ("jepa",): ("selfprm.jepa.cli", "UI-JEPA: intent from unlabeled UI streams, against scratch and MAE"),
}


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="selfprm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    modules = {}
    for path, (module, help_text) in _COMMANDS.items():
        if len(path) == 1:
            p = sub.add_parser(path[0], help=help_text)
        else:
            if path[0] not in groups:
                g = sub.add_parser(path[0], help=f"{path[0]} commands")
                groups[path[0]] = g.add_subparsers(dest="subcommand", required=True)
            p = groups[path[0]].add_parser(path[1], help=help_text)
        p.set_defaults(_module=module)
        # Only the chosen command's module is imported to add its arguments.
        if _chosen(path, argv):
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            modules[module] = mod
    return parser, modules


def _chosen(path: tuple[str, ...], argv: Sequence[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return tuple(words[: len(path)]) == path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = _build_parser(argv)
    args = parser.parse_args(argv)
    mod = modules.get(args._module) or importlib.import_module(args._module)
    mod.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
