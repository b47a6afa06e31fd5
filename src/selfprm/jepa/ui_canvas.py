"""A tiny grayscale canvas with a 3x5 pixel font and 6x6 icons.

The synthetic UI recordings are rendered with plain numpy so that a whole
corpus of thousands of screen recordings is generated in seconds on a CPU.
Glyphs are pixel-aligned like a real phone UI: the intent's slots (an alarm
time, a contact's initial, a slider level) are legible in the frames, which
is what makes the intent recoverable from the screens at all.
"""

from __future__ import annotations

import numpy as np


def _bitmap(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows], dtype=bool)


FONT: dict[str, np.ndarray] = {
    k: _bitmap(v)
    for k, v in {
        "0": ("111", "101", "101", "101", "111"),
        "1": ("010", "110", "010", "010", "111"),
        "2": ("111", "001", "111", "100", "111"),
        "3": ("111", "001", "111", "001", "111"),
        "4": ("101", "101", "111", "001", "001"),
        "5": ("111", "100", "111", "001", "111"),
        "6": ("111", "100", "111", "101", "111"),
        "7": ("111", "001", "001", "001", "001"),
        "8": ("111", "101", "111", "101", "111"),
        "9": ("111", "101", "111", "001", "111"),
        ":": ("000", "010", "000", "010", "000"),
        "A": ("010", "101", "111", "101", "101"),
        "B": ("110", "101", "110", "101", "110"),
        "C": ("011", "100", "100", "100", "011"),
        "D": ("110", "101", "101", "101", "110"),
        "E": ("111", "100", "110", "100", "111"),
        "F": ("111", "100", "110", "100", "100"),
    }.items()
}

ICONS: dict[str, np.ndarray] = {
    k: _bitmap(v)
    for k, v in {
        "clock": ("011110", "100101", "100101", "100111", "100001", "011110"),
        "phone": ("110000", "110000", "011000", "001100", "000111", "000011"),
        "messages": ("111111", "100001", "100001", "111111", "011000", "010000"),
        "settings": ("010010", "111111", "010010", "010010", "111111", "010010"),
        "music": ("001111", "001001", "001001", "111001", "111011", "110011"),
        "camera": ("011100", "111111", "110011", "110011", "111111", "000000"),
        "wifi": ("111111", "000000", "011110", "000000", "001100", "001100"),
        "bluetooth": ("001100", "101010", "011100", "011100", "101010", "001100"),
        "sun": ("100101", "010110", "001110", "111111", "001110", "010101"),
        "speaker": ("000100", "001100", "111100", "111100", "001100", "000100"),
        "bell": ("001100", "011110", "011110", "011110", "111111", "001100"),
        "check": ("000001", "000010", "100100", "011000", "010000", "000000"),
        "play": ("100000", "110000", "111000", "111100", "111000", "110000"),
        "video": ("000000", "111100", "111101", "111111", "111101", "111100"),
        "handset": ("000000", "110011", "111111", "100001", "000000", "000000"),
        "bubble": ("111111", "101011", "111111", "011000", "010000", "000000"),
        "back": ("000100", "001000", "011111", "001000", "000100", "000000"),
    }.items()
}

ARROW_UP = _bitmap(("010", "111"))
ARROW_DOWN = _bitmap(("111", "010"))


class Canvas:
    """A float32 image in [0, 1] with clipped drawing primitives."""

    def __init__(self, size: int, background: float) -> None:
        self.size = size
        self.pixels = np.full((size, size), background, dtype=np.float32)

    def rect(self, x: int, y: int, w: int, h: int, value: float) -> None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.size), min(y + h, self.size)
        if x1 > x0 and y1 > y0:
            self.pixels[y0:y1, x0:x1] = value

    def bitmap(self, mask: np.ndarray, x: int, y: int, value: float, scale: int = 1) -> None:
        if scale > 1:
            mask = np.kron(mask, np.ones((scale, scale), dtype=bool))
        h, w = mask.shape
        # Clip the bitmap to the canvas so sprites may slide off-screen (scrolling).
        mx0, my0 = max(0, -x), max(0, -y)
        mx1, my1 = min(w, self.size - x), min(h, self.size - y)
        if mx1 <= mx0 or my1 <= my0:
            return
        region = self.pixels[y + my0 : y + my1, x + mx0 : x + mx1]
        region[mask[my0:my1, mx0:mx1]] = value

    def text(self, s: str, x: int, y: int, value: float, scale: int = 1) -> None:
        for i, ch in enumerate(s):
            self.bitmap(FONT[ch], x + i * 4 * scale, y, value, scale)

    def icon(self, name: str, x: int, y: int, value: float) -> None:
        self.bitmap(ICONS[name], x, y, value)
