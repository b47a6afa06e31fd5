"""Where the real data lives: one helper every loader, CLI and test uses.

The project ships none of the data; it reads it from a read-only folder next to the repository
(``<repo>/../shared/data``) or from ``$SELFPRM_SHARED_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SELFPRM_SHARED_DATA"

# src/selfprm/data/paths.py -> parents[3] is the repository root
_REPO = Path(__file__).resolve().parents[3]

PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def shared_data_dir() -> Path:
    """``$SELFPRM_SHARED_DATA`` when set, else ``<repo>/../shared/data``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else _REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A file under the shared data folder; a missing file names the variable that moves it."""
    p = shared_data_dir().joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p} not found; set ${ENV_VAR} to the folder holding the shared data")
    return p


def processbench_path(split: str) -> Path:
    if split not in PROCESSBENCH_SPLITS:
        raise ValueError(f"unknown ProcessBench split {split!r}; choose from {PROCESSBENCH_SPLITS}")
    return shared_path("processbench", f"{split}.json")
