"""Final-answer extraction and checking for GSM8K and MATH, with ``math-verify``.

``math-verify`` (Hugging Face) parses both answers to SymPy and compares them mathematically,
so ``18``, ``18.00``, ``$18$`` and ``\\boxed{18}`` agree and ``\\frac12`` equals ``0.5``. It is an
optional dependency: ``pip install 'selfprm[real]'``.
"""

from __future__ import annotations

import re
from typing import Any

_EXTRA = "pip install 'selfprm[real]'"


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as e:  # the real-data extra is optional; say which one brings it
        raise ImportError(f"answer checking needs math-verify: {_EXTRA}") from e
    return math_verify


# GSM8K writes "#### 18" in reference solutions and "A: 18" in the example model solutions.
_GSM8K_FINAL = re.compile(r"(?:####|^A:|The answer is:?)\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def extract_gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K-style solution (``#### x``, ``A: x`` or ``The answer is x``)."""
    found = _GSM8K_FINAL.findall(text)
    if not found:
        return None
    ans = found[-1].strip().rstrip(".")
    return ans.replace(",", "").replace("$", "").strip() or None


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), as MATH solutions write it."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j].strip()
    return None


def normalize_number(ans: str | None) -> str | None:
    """A canonical string for a numeric answer (``"18.00"`` -> ``"18"``) so votes pool; else as is."""
    if ans is None:
        return None
    s = ans.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        x = float(s)
    except ValueError:
        return s
    return str(int(x)) if x == int(x) else repr(x)


def answers_match(predicted: str | None, gold: str | None) -> bool:
    """``math-verify``'s verdict on ``predicted`` against ``gold`` (False when either is missing).

    Bare answers are wrapped in ``$...$`` so math-verify reads them as LaTeX as well as plain
    expressions; ``verify(gold, pred)`` is its argument order.
    """
    if predicted is None or gold is None:
        return False
    mv = _math_verify()

    def parse(s: str):
        s = s.strip()
        parsed = mv.parse(s if "$" in s or "\\boxed" in s else f"${s}$")
        return parsed if parsed else mv.parse(s)

    g, p = parse(gold), parse(predicted)
    if not g or not p:
        return predicted.strip() == gold.strip()
    return bool(mv.verify(g, p))
