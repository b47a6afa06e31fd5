"""Reading record files (JSON array or JSONL) and checking their fields, with errors that point.

Every loader in :mod:`selfprm.data` reads through here, so a malformed record raises
:class:`selfprm.types.RecordError` naming the file, the line (the record index for a JSON array
file, counted from 0) and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from selfprm.types import RecordError, iter_jsonl


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` pairs of a JSONL file or of a JSON file holding one array.

    The format is told by the first non-blank character: ``[`` is an array (the "line" is the
    record's index), anything else is JSONL (the line number, from 1).
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if head.startswith("["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
        yield from enumerate(data)
    else:
        yield from iter_jsonl(path)


def need(rec: Any, key: str, types: type | tuple[type, ...], path, line, required: bool = True, default: Any = None) -> Any:
    """``rec[key]`` checked against ``types`` (bool never passes for int and vice versa)."""
    if not isinstance(rec, dict):
        raise RecordError(path, line, None, f"expected a JSON object, got {type(rec).__name__}")
    if key not in rec or rec[key] is None:
        if required:
            raise RecordError(path, line, key, "missing")
        return default
    val = rec[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(val, bool) and bool not in allowed:
        raise RecordError(path, line, key, f"expected {'/'.join(t.__name__ for t in allowed)}, got bool")
    if not isinstance(val, allowed):
        raise RecordError(path, line, key, f"expected {'/'.join(t.__name__ for t in allowed)}, got {type(val).__name__}")
    return val


def need_str_list(rec: Any, key: str, path, line, nonempty: bool = True) -> list[str]:
    vals = need(rec, key, list, path, line)
    if nonempty and not vals:
        raise RecordError(path, line, key, "empty list")
    for i, v in enumerate(vals):
        if not isinstance(v, str):
            raise RecordError(path, line, f"{key}[{i}]", f"expected str, got {type(v).__name__}")
    return list(vals)


_WS = re.compile(r"\s+")


def problem_key(text: str) -> str:
    """A stable id for a problem's text (whitespace- and case-insensitive), to split by problem.

    ProcessBench's gsm8k split and GSM8K's test set hold the same problems under different ids;
    hashing the normalised text is what matches them.
    """
    norm = _WS.sub(" ", text).strip().lower()
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()[:16]
