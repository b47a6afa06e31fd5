"""The run directory: every study's cache, resume and atomic writes, written once.

A study is a function of its config; everything it computes lives in stages under its output
folder. A stage's **key** hashes its name, its own config and the keys of the stages it was
built from, so a change anywhere upstream reaches every stage downstream: nothing is served from a
result that an edited parameter would have changed (the bug of listing cache keys by hand).

    run = RunDir(out)
    policy = run.stage("policy", {"lm": lm, "sft": sft})
    pool = run.stage("pool", {"n": 100}, parents=[policy])
    if not pool.done():
        pool.begin()                      # claims the folder for this key (wipes another key's)
        write_trajectories(pool.file("train.jsonl"), ...)
        pool.finish({"trajectories": 400})
    summary = pool.result()

Files inside a stage are written atomically (temp file or folder, then rename); a stage counts as
done only once :meth:`Stage.finish` has written its mark, so a job killed at any point resumes from
what was finished: files a stage wrote before the kill (e.g. label shards) stay, under its key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from selfprm.types import atomic_write_text, write_json

_KEY_FILE = ".stage-key"
_DONE_FILE = ".stage-done.json"


def config_blob(obj: Any) -> Any:
    """A JSON-able, order-stable form of a config (dataclasses, tuples, paths, nested)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_blob(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): config_blob(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_blob(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def stage_key(name: str, config: Any, parents: Sequence["Stage"] = ()) -> str:
    blob = {"stage": name, "config": config_blob(config), "parents": sorted(p.key for p in parents)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One cached step of a study: a folder, the key it belongs to, and its done mark."""

    name: str
    path: Path
    key: str
    config: Any = None

    def done(self) -> bool:
        mark = self.path / _DONE_FILE
        return mark.exists() and json.loads(mark.read_text()).get("key") == self.key

    def result(self) -> dict[str, Any]:
        """The summary :meth:`finish` stored (the stage must be done)."""
        if not self.done():
            raise RuntimeError(f"stage {self.name!r} is not done")
        return json.loads((self.path / _DONE_FILE).read_text())["result"]

    def begin(self) -> "Stage":
        """Claim the folder for this key: a folder left by another key is wiped, one left by this
        key (an interrupted run) is kept so its finished files are reused."""
        key_file = self.path / _KEY_FILE
        if self.path.exists() and not (key_file.exists() and key_file.read_text() == self.key):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / _DONE_FILE).unlink(missing_ok=True)
        if not key_file.exists():
            atomic_write_text(key_file, self.key)
        return self

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.file(name)
        write_json(path, obj)
        return path

    def read_json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    @contextlib.contextmanager
    def atomic_dir(self, name: str) -> Iterator[Path]:
        """A folder written whole or not at all: fill the yielded temp folder; it is renamed to
        ``name`` only when the block ends without an error."""
        final = self.file(name)
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)

    def finish(self, result: dict[str, Any] | None = None) -> dict[str, Any]:
        """Mark the stage done (atomically, last), storing a small JSON summary."""
        write_json(self.path / _DONE_FILE, {"key": self.key, "config": config_blob(self.config),
                                            "result": result or {}})
        return result or {}


class RunDir:
    """A study's output folder; :meth:`stage` names a cached step inside it."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str, config: Any, parents: Sequence[Stage] = ()) -> Stage:
        """The stage ``name`` (a relative path such as ``"labels/mc"``) for ``config`` built on
        ``parents``; its key changes whenever any of them does."""
        return Stage(name, self.root / name, stage_key(name, config, parents), config)

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.root / name
        write_json(path, obj)
        return path
