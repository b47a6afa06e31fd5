"""Synthetic UI screen recordings with a latent intent (UI-JEPA's data, in miniature).

UI-JEPA (Fu et al., arXiv 2409.04081) learns from screen recordings of a user
carrying out a task on a phone; each recording has a latent *intent* such as
"set an alarm for 7:30".  This module renders such recordings with numpy:

* six small apps (clock with alarm/timer tabs, phone, messages, settings with
  toggles and sliders, music, a distractor camera) on 32x32 grayscale screens;
* a scripted user who carries out a templated intent with human noise:
  hesitations (idle, jittering cursor), wrong taps that are undone (opening the
  wrong app and going back, overshooting a counter and stepping back, tapping
  the wrong toggle twice), and varying speed (1-4 frames per cursor movement);
* the slots are legible on screen (the alarm's digits, the contact's initial,
  the slider's knob, the focused settings row), so the intent is recoverable,
  and the route to them is temporal (counters step, lists scroll), which is
  what gives unlabeled temporal masked prediction something to learn.

Every recording is a pure function of ``(intent, seed, config)``: ``replay``
re-renders it bit for bit.  Held-out templates (``ZERO_SHOT_TEMPLATES``) reuse
the screens but are never labelled in training: the zero-shot split, like the
paper's IIW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from selfprm.jepa.ui_canvas import ARROW_DOWN, ARROW_UP, Canvas

SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "hour": tuple(str(h) for h in range(1, 13)),
    "minute": ("00", "15", "30", "45"),
    "duration": tuple(str(d) for d in range(1, 13)),
    "contact": ("ann", "ben", "cal", "dee", "eli", "fay"),
    "state": ("on", "off"),
    "setting": ("wifi", "bluetooth"),
    "level": tuple(str(v) for v in range(1, 6)),
    "song": tuple(str(v) for v in range(1, 10)),
    "count": ("1", "2", "3", "4"),
}
SLOT_TYPES: tuple[str, ...] = tuple(SLOT_VALUES)


@dataclass(frozen=True)
class IntentTemplate:
    name: str
    text: str
    slots: tuple[str, ...]


SEEN_TEMPLATES: tuple[IntentTemplate, ...] = (
    IntentTemplate("alarm", "set an alarm for {hour}:{minute}", ("hour", "minute")),
    IntentTemplate("timer", "set a timer for {duration} minutes", ("duration",)),
    IntentTemplate("call", "call {contact}", ("contact",)),
    IntentTemplate("message", "send a message to {contact}", ("contact",)),
    IntentTemplate("toggle", "turn {state} {setting}", ("state", "setting")),
    IntentTemplate("brightness", "set brightness to {level}", ("level",)),
    IntentTemplate("song", "play song {song}", ("song",)),
)
# Never labelled in training: the zero-shot (IIW-like) split.
ZERO_SHOT_TEMPLATES: tuple[IntentTemplate, ...] = (
    IntentTemplate("video_call", "video call {contact}", ("contact",)),
    IntentTemplate("volume", "set volume to {level}", ("level",)),
)
# The temporal task: the slot is a count, readable only across frames.
TEMPORAL_TEMPLATES: tuple[IntentTemplate, ...] = (
    IntentTemplate("photos", "take {count} photos", ("count",)),
    IntentTemplate("skip", "skip {count} songs", ("count",)),
)
# The temporal task's held-out intent (IIW-like): the same count, read off a route never labelled
# (the player's "prev" button, so the song number falls instead of rising).
TEMPORAL_ZERO_SHOT_TEMPLATES: tuple[IntentTemplate, ...] = (
    IntentTemplate("rewind", "rewind {count} songs", ("count",)),
)
ALL_TEMPLATES: dict[str, IntentTemplate] = {
    t.name: t for t in SEEN_TEMPLATES + ZERO_SHOT_TEMPLATES + TEMPORAL_TEMPLATES + TEMPORAL_ZERO_SHOT_TEMPLATES
}
# task -> (labelled templates, held-out templates for the zero-shot split)
TASKS: dict[str, tuple[tuple[IntentTemplate, ...], tuple[IntentTemplate, ...]]] = {
    "easy": (SEEN_TEMPLATES, ZERO_SHOT_TEMPLATES),
    "temporal": (TEMPORAL_TEMPLATES, TEMPORAL_ZERO_SHOT_TEMPLATES),
}


@dataclass(frozen=True)
class Intent:
    template: str
    slots: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        return ALL_TEMPLATES[self.template].text.format(**dict(self.slots))

    def slot(self, name: str) -> str:
        return dict(self.slots)[name]


@dataclass(frozen=True)
class Recording:
    frames: np.ndarray  # uint8 [T, H, W]
    intent: Intent
    seed: int


@dataclass
class UIStreamConfig:
    num_frames: int = 16
    size: int = 32
    hesitation_prob: float = 0.3
    wrong_tap_prob: float = 0.25
    move_frames: tuple[int, int] = (1, 4)
    pixel_noise: float = 0.02


def sample_intent(template: IntentTemplate, rng: np.random.Generator) -> Intent:
    return Intent(template.name, tuple((s, str(rng.choice(SLOT_VALUES[s]))) for s in template.slots))


# --- screen layout (32x32) --------------------------------------------------

APPS = ("clock", "phone", "messages", "settings", "music", "camera")
HOME_ICON_XY = {
    "clock": (3, 10), "phone": (13, 10), "messages": (23, 10),
    "settings": (3, 21), "music": (13, 21), "camera": (23, 21),
}
ROOT_SCREEN = {
    "clock": "clock", "phone": "contacts", "messages": "contacts",
    "settings": "settings", "music": "songs", "camera": "camera",
}
BACK_XY = (3, 3)
LIST_ROW_Y = (8, 14, 20, 26)
SETTINGS_ROWS = ("wifi", "bluetooth", "brightness", "volume")
SETTINGS_ICON = {"wifi": "wifi", "bluetooth": "bluetooth", "brightness": "sun", "volume": "speaker"}
NAME_BAR = (10, 14, 8, 12, 16, 6, 11, 7, 13)
LETTERS = "ABCDEF"


def _slider_x(level: int) -> int:
    return 9 + (level - 1) * 5


def _draw_list(c: Canvas, labels: str, offset: int) -> None:
    for r, y in enumerate(LIST_ROW_Y):
        i = offset + r
        if i >= len(labels):
            break
        c.text(labels[i], 3, y, 0.95)
        c.rect(9, y + 2, NAME_BAR[i], 1, 0.5)
        c.rect(0, y + 5, 32, 1, 0.2)


def render_screen(state: dict, cursor: tuple[float, float], tapping: bool, size: int = 32) -> np.ndarray:
    """Render one frame of the UI (float32 [size, size] in [0, 1])."""
    s = state
    c = Canvas(size, 0.05 if s["app"] == "home" else 0.1)
    screen, tick = s["screen"], s["tick"]
    if screen == "home":
        c.rect(0, 0, 32, 7, 0.15)
        for app, (x, y) in HOME_ICON_XY.items():
            c.rect(x - 1, y - 1, 8, 8, 0.25)
            c.icon(app, x, y, 0.9)
    else:
        c.rect(0, 0, 32, 7, 0.3)
        c.icon("back", 1, 0, 0.9)
        c.icon(s["app"], 13, 0, 0.95)
    if screen == "clock":
        alarm_tab = s["tab"] == "alarm"
        c.rect(0, 7, 16, 3, 0.7 if alarm_tab else 0.35)
        c.rect(16, 7, 16, 3, 0.35 if alarm_tab else 0.7)
        if alarm_tab:
            c.text(f"{s['hour']:02d}", 6, 15, 0.95)
            c.text(":", 14, 15, 0.95)
            c.text(SLOT_VALUES["minute"][s["minute"]], 18, 15, 0.95)
            for x in (8, 19):
                c.bitmap(ARROW_UP, x, 12, 0.7)
                c.bitmap(ARROW_DOWN, x, 21, 0.7)
            c.rect(20, 26, 11, 5, 0.8)
            c.icon("check", 22, 26, 0.1)
        else:
            c.text(f"{s['duration']:02d}", 12, 15, 0.95)
            c.bitmap(ARROW_UP, 14, 12, 0.7)
            c.bitmap(ARROW_DOWN, 14, 21, 0.7)
            c.rect(20, 26, 11, 5, 0.8)
            c.icon("play", 23, 26, 0.1)
    elif screen == "alarm_set":
        c.icon("bell", 13, 8, 0.95)
        c.text(f"{s['hour']:02d}:" + SLOT_VALUES["minute"][s["minute"]], 6, 17, 0.95)
        c.icon("check", 13, 25, 0.8)
    elif screen == "timer_run":
        c.text(f"{s['duration']:02d}", 12, 11, 0.95)
        c.rect(4, 22, 24 - (tick % 24), 2, 0.8)
    elif screen == "contacts":
        _draw_list(c, LETTERS, s["offset"])
    elif screen == "songs":
        _draw_list(c, "123456789", s["offset"])
    elif screen == "contact_card":
        c.text(LETTERS[s["contact"]], 13, 9, 0.95, scale=2)
        for x, icon in ((3, "handset"), (13, "video"), (23, "bubble")):
            c.rect(x - 1, 23, 8, 8, 0.4)
            c.icon(icon, x, 24, 0.95)
    elif screen == "calling":
        r = tick % 3
        c.rect(10 - r, 7 - r, 12 + 2 * r, 16 + 2 * r, 0.3)
        c.rect(11, 8, 10, 14, 0.1)
        c.text(LETTERS[s["contact"]], 13, 10, 0.95, scale=2)
        c.icon("handset", 13, 25, 0.9)
    elif screen == "video_call":
        c.rect(0, 7, 32, 25, 0.55 + 0.05 * (tick % 2))
        c.text(LETTERS[s["contact"]], 2, 9, 0.95)
        c.rect(21, 21, 9, 9, 0.9)
    elif screen == "compose":
        c.text(LETTERS[s["contact"]], 2, 8, 0.95)
        c.rect(1, 14, 24, 6, 0.9)
        for i in range(s["typed"]):
            c.rect(2 + 3 * i, 16, 2, 2, 0.2)
        c.rect(26, 14, 5, 6, 0.45)
        for ky in (22, 25, 28):
            for kx in range(1, 31, 4):
                c.rect(kx, ky, 3, 2, 0.45)
    elif screen == "sent":
        c.text(LETTERS[s["contact"]], 2, 8, 0.95)
        c.rect(8, 14, 23, 6, 0.7)
        for i in range(s["typed"]):
            c.rect(9 + 3 * i, 16, 2, 2, 0.2)
        c.icon("check", 24, 22, 0.9)
    elif screen == "settings":
        for name, y in zip(SETTINGS_ROWS, LIST_ROW_Y):
            if s["focus"] == name:
                c.rect(0, y - 1, 32, 6, 0.3)
            c.icon(SETTINGS_ICON[name], 1, y - 1, 0.9)
            if name in ("wifi", "bluetooth"):
                on = s[name]
                c.rect(22, y, 8, 4, 0.7 if on else 0.4)
                c.rect(27 if on else 22, y, 3, 4, 1.0 if on else 0.6)
            else:
                c.rect(9, y + 2, 22, 1, 0.5)
                c.rect(_slider_x(s[name]), y, 2, 4, 1.0)
    elif screen == "player":
        c.text(str(s["song"] + 1), 13, 9, 0.95, scale=2)
        c.icon("play", 13, 21, 0.8)
        c.rect(24, 21, 6, 6, 0.6)  # "next" button
        c.rect(2, 21, 6, 6, 0.6)  # "prev" button
        c.rect(2, 29, 2 + tick % 28, 1, 0.8)
    elif screen == "camera_flash":
        c.rect(0, 7, 32, 25, 0.97)
        c.rect(13, 27, 6, 4, 0.6)
    elif screen == "camera":
        c.rect(2, 8, 28, 18, 0.45 + 0.1 * (tick % 2))
        c.rect(13, 27, 6, 4, 0.9)
    x, y = int(round(cursor[0])), int(round(cursor[1]))
    if tapping:
        c.rect(x - 2, y - 2, 4, 4, 1.0)
    else:
        c.rect(x - 1, y - 1, 2, 2, 0.85)
    return c.pixels


# --- the scripted user --------------------------------------------------------


class _ScriptedUser:
    """Drives the UI state and records a timeline of (state, cursor, tapping)."""

    def __init__(self, state: dict, rng: np.random.Generator, config: UIStreamConfig) -> None:
        self.state, self.rng, self.cfg = state, rng, config
        self.cursor = (float(rng.integers(8, 24)), float(rng.integers(22, 30)))
        self.timeline: list[tuple[dict, tuple[float, float], bool]] = []

    def snap(self, tapping: bool = False) -> None:
        self.timeline.append((dict(self.state), self.cursor, tapping))
        self.state["tick"] += 1

    def slip(self) -> bool:
        return bool(self.rng.random() < self.cfg.wrong_tap_prob)

    def hesitate(self) -> None:
        if self.rng.random() < self.cfg.hesitation_prob:
            for _ in range(int(self.rng.integers(1, 4))):
                dx, dy = self.rng.integers(-1, 2, size=2)
                self.cursor = (self.cursor[0] + dx, self.cursor[1] + dy)
                self.snap()

    def move(self, x: float, y: float) -> None:
        lo, hi = self.cfg.move_frames
        n = int(self.rng.integers(lo, hi + 1))
        x0, y0 = self.cursor
        for i in range(1, n + 1):
            self.cursor = (x0 + (x - x0) * i / n, y0 + (y - y0) * i / n)
            self.snap()

    def tap(self, x: float, y: float, effect: Callable[[dict], None]) -> None:
        self.hesitate()
        self.move(x, y)
        self.snap(tapping=True)
        effect(self.state)
        self.snap()

    def wait(self, k: int) -> None:
        for _ in range(k):
            self.snap()


def _open(app: str) -> Callable[[dict], None]:
    def effect(s: dict) -> None:
        s["app"], s["screen"], s["offset"] = app, ROOT_SCREEN[app], 0

    return effect


def _back(s: dict) -> None:
    if s["screen"] in ("contact_card", "compose"):
        s["screen"] = "contacts"
    elif s["screen"] == "player":
        s["screen"] = "songs"
    else:
        s["app"], s["screen"] = "home", "home"


def _set(**values: object) -> Callable[[dict], None]:
    def effect(s: dict) -> None:
        s.update(values)

    return effect


def _open_app(u: _ScriptedUser, app: str) -> None:
    if u.slip():
        wrong = str(u.rng.choice([a for a in APPS if a != app]))
        x, y = HOME_ICON_XY[wrong]
        u.tap(x + 3, y + 3, _open(wrong))
        u.wait(int(u.rng.integers(1, 3)))
        u.tap(*BACK_XY, _back)
    x, y = HOME_ICON_XY[app]
    u.tap(x + 3, y + 3, _open(app))


def _step_counter(u: _ScriptedUser, key: str, target: int, n: int, base: int, up: tuple, down: tuple) -> None:
    """Tap a wrapping counter's arrows until it shows ``target``.

    The counter shows values ``base .. base + n - 1``; the user takes the short
    way round, and a slip overshoots by one notch and steps back.
    """

    def bump(delta: int) -> Callable[[dict], None]:
        return lambda s: s.__setitem__(key, (s[key] - base + delta) % n + base)

    d = (target - u.state[key]) % n
    delta, steps = (1, d) if d <= n // 2 else (-1, n - d)
    arrow, back_arrow = (up, down) if delta == 1 else (down, up)
    for _ in range(steps):
        u.tap(*arrow, bump(delta))
    if steps and u.slip():
        u.tap(*arrow, bump(delta))
        u.tap(*back_arrow, bump(-delta))


def _scroll_to(u: _ScriptedUser, index: int) -> None:
    if index <= u.state["offset"] + 3:
        return
    u.hesitate()
    u.move(16, 29)
    while index > u.state["offset"] + 3:  # swipe up, one row per frame
        u.state["offset"] += 1
        u.cursor = (u.cursor[0], u.cursor[1] - 4)
        u.snap(tapping=True)
    u.snap()


def _pick_row(u: _ScriptedUser, index: int, n_rows: int, effect: Callable[[int], Callable[[dict], None]]) -> None:
    if u.slip():  # open the wrong row, then go back
        visible = [i for i in range(u.state["offset"], min(u.state["offset"] + 4, n_rows)) if i != index]
        wrong = int(u.rng.choice(visible))
        u.tap(16, LIST_ROW_Y[wrong - u.state["offset"]] + 2, effect(wrong))
        u.wait(int(u.rng.integers(1, 3)))
        u.tap(*BACK_XY, _back)
    _scroll_to(u, index)
    u.tap(16, LIST_ROW_Y[index - u.state["offset"]] + 2, effect(index))


def _task_alarm(u: _ScriptedUser, intent: Intent) -> None:
    _open_app(u, "clock")
    if u.state["tab"] != "alarm":
        u.tap(8, 8, _set(tab="alarm"))
    _step_counter(u, "hour", int(intent.slot("hour")), 12, 1, (9, 12), (9, 22))
    minute = SLOT_VALUES["minute"].index(intent.slot("minute"))
    _step_counter(u, "minute", minute, 4, 0, (20, 12), (20, 22))
    u.tap(25, 28, _set(screen="alarm_set"))
    u.wait(int(u.rng.integers(2, 5)))


def _task_timer(u: _ScriptedUser, intent: Intent) -> None:
    _open_app(u, "clock")
    if u.state["tab"] != "timer":
        u.tap(24, 8, _set(tab="timer"))
    _step_counter(u, "duration", int(intent.slot("duration")), 12, 1, (15, 12), (15, 22))
    u.tap(25, 28, _set(screen="timer_run"))
    u.wait(int(u.rng.integers(2, 5)))


def _task_contact(u: _ScriptedUser, intent: Intent) -> None:
    app = "messages" if intent.template == "message" else "phone"
    _open_app(u, app)
    target = SLOT_VALUES["contact"].index(intent.slot("contact"))
    card = "compose" if app == "messages" else "contact_card"
    opener = lambda i: _set(screen=card, contact=i, typed=0)  # noqa: E731
    _pick_row(u, target, 6, opener)
    if app == "messages":
        for _ in range(int(u.rng.integers(3, 8))):
            x, y = int(u.rng.integers(2, 30)), int(u.rng.choice([23, 26, 29]))
            u.cursor = (float(x), float(y))
            u.state["typed"] += 1
            u.snap(tapping=True)
        u.tap(28, 17, _set(screen="sent"))
    elif intent.template == "video_call":
        u.tap(16, 27, _set(screen="video_call"))
    else:
        u.tap(6, 27, _set(screen="calling"))
    u.wait(int(u.rng.integers(2, 5)))


def _task_toggle(u: _ScriptedUser, intent: Intent) -> None:
    setting, on = intent.slot("setting"), intent.slot("state") == "on"
    u.state[setting] = not on  # the user only acts when the switch needs flipping
    _open_app(u, "settings")
    y_of = dict(zip(SETTINGS_ROWS, LIST_ROW_Y))
    if u.slip():  # flip the wrong switch, then flip it back
        other = "bluetooth" if setting == "wifi" else "wifi"
        for _ in range(2):
            u.tap(25, y_of[other] + 2, lambda s, o=other: s.update({o: not s[o], "focus": o}))
    u.tap(25, y_of[setting] + 2, _set(**{setting: on, "focus": setting}))
    u.wait(int(u.rng.integers(2, 5)))


def _task_slider(u: _ScriptedUser, intent: Intent) -> None:
    row = "volume" if intent.template == "volume" else "brightness"
    target = int(intent.slot("level"))
    if u.state[row] == target:
        u.state[row] = target % 5 + 1
    _open_app(u, "settings")
    y = dict(zip(SETTINGS_ROWS, LIST_ROW_Y))[row] + 2
    u.tap(_slider_x(u.state[row]) + 1, y, _set(focus=row))
    path = list(range(u.state[row], target, 1 if target > u.state[row] else -1)) + [target]
    if u.slip() and 1 <= 2 * target - path[-2] <= 5:  # drag one notch too far, then back
        path += [2 * target - path[-2], target]
    for level in path[1:]:  # drag the knob notch by notch
        u.state[row] = level
        u.cursor = (float(_slider_x(level) + 1), float(y))
        u.snap(tapping=True)
    u.wait(int(u.rng.integers(2, 5)))


def _task_song(u: _ScriptedUser, intent: Intent) -> None:
    _open_app(u, "music")
    target = SLOT_VALUES["song"].index(intent.slot("song"))
    _pick_row(u, target, 9, lambda i: _set(screen="player", song=i))
    u.wait(int(u.rng.integers(2, 5)))


SHUTTER_XY = (16, 29)
NEXT_XY = (27, 24)
PREV_XY = (5, 24)


def _task_photos(u: _ScriptedUser, intent: Intent) -> None:
    """Already in the camera: each shot is a flash of 2-3 frames, then 2-3 frames of viewfinder."""
    u.state.update(app="camera", screen="camera")
    u.cursor = (float(SHUTTER_XY[0]), float(SHUTTER_XY[1]))
    u.wait(int(u.rng.integers(1, 3)))
    for _ in range(int(intent.slot("count"))):
        flash = int(u.rng.integers(2, 4))
        u.state["screen"] = "camera_flash"
        u.snap(tapping=True)
        u.wait(flash - 1)
        u.state["screen"] = "camera"
        u.wait(int(u.rng.integers(2, 4)))


def _tap_player(u: _ScriptedUser, count: int, button: tuple[int, int], step: int) -> None:
    """Already in the player at a random song: tap ``button`` ``count`` times, the song moving by ``step``."""
    u.state.update(app="music", screen="player", song=int(u.rng.integers(0, 9)))
    u.cursor = (float(button[0]), float(button[1]))
    u.wait(int(u.rng.integers(2, 4)))
    for _ in range(count):
        u.snap(tapping=True)
        u.state["song"] = (u.state["song"] + step) % 9
        u.wait(int(u.rng.integers(2, 4)))


def _task_skip(u: _ScriptedUser, intent: Intent) -> None:
    _tap_player(u, int(intent.slot("count")), NEXT_XY, +1)


def _task_rewind(u: _ScriptedUser, intent: Intent) -> None:
    _tap_player(u, int(intent.slot("count")), PREV_XY, -1)


_TASKS: dict[str, Callable[[_ScriptedUser, Intent], None]] = {
    "alarm": _task_alarm,
    "timer": _task_timer,
    "call": _task_contact,
    "message": _task_contact,
    "video_call": _task_contact,
    "toggle": _task_toggle,
    "brightness": _task_slider,
    "volume": _task_slider,
    "song": _task_song,
    "photos": _task_photos,
    "skip": _task_skip,
    "rewind": _task_rewind,
}


def _initial_state(rng: np.random.Generator) -> dict:
    return {
        "app": "home", "screen": "home", "tick": 0, "offset": 0, "focus": None,
        "tab": str(rng.choice(["alarm", "timer"])),
        "hour": int(rng.integers(1, 13)), "minute": int(rng.integers(0, 4)),
        "duration": int(rng.integers(1, 13)),
        "wifi": bool(rng.integers(0, 2)), "bluetooth": bool(rng.integers(0, 2)),
        "brightness": int(rng.integers(1, 6)), "volume": int(rng.integers(1, 6)),
        "contact": 0, "typed": 0, "song": 0,
    }


def record(intent: Intent, seed: int, config: UIStreamConfig | None = None) -> Recording:
    """Render the recording of a scripted user carrying out ``intent``.

    Deterministic in ``(intent, seed, config)``: the user's noise (speed,
    hesitations, slips), the starting UI state, the theme and the pixel noise
    all come from ``np.random.default_rng(seed)``.
    """
    cfg = config or UIStreamConfig()
    rng = np.random.default_rng(seed)
    # Photometric jitter first, so it does not depend on how long the user's script ran.
    contrast, brightness = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.05)
    user = _ScriptedUser(_initial_state(rng), rng, cfg)
    user.wait(int(rng.integers(0, 3)))
    _TASKS[intent.template](user, intent)
    # Resample the variable-length timeline to a fixed clip, like sampling a
    # recording at a fixed number of frames; the final (result) frame is kept.
    idx = np.round(np.linspace(0, len(user.timeline) - 1, cfg.num_frames)).astype(int)
    frames = np.stack([render_screen(*user.timeline[i], size=cfg.size) for i in idx])
    frames = frames * contrast + brightness + rng.normal(0.0, cfg.pixel_noise, frames.shape)
    return Recording((np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8), intent, seed)


def replay(recording: Recording, config: UIStreamConfig | None = None) -> Recording:
    return record(recording.intent, recording.seed, config)


@dataclass
class RecordingSet:
    """Recordings stacked for training: frames uint8 [N, T, H, W] plus labels."""

    frames: np.ndarray
    intents: list[Intent] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.intents)


def generate_recordings(
    templates: tuple[IntentTemplate, ...],
    per_template: int,
    rng: np.random.Generator,
    config: UIStreamConfig | None = None,
) -> list[Recording]:
    """``per_template`` recordings of each template, each with its own replay seed."""
    out = []
    for _ in range(per_template):
        for t in templates:
            intent = sample_intent(t, rng)
            out.append(record(intent, int(rng.integers(2**31 - 1)), config))
    return out


def stack(recordings: list[Recording]) -> RecordingSet:
    return RecordingSet(np.stack([r.frames for r in recordings]), [r.intent for r in recordings])
