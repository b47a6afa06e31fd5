"""Synthetic UI recordings: determinism, replay and legibility of the intent."""

import numpy as np

from selfprm.jepa.ui_streams import (
    SEEN_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    Intent,
    UIStreamConfig,
    generate_recordings,
    record,
    replay,
)


def test_recordings_replay_their_intent_deterministically_from_seed():
    cfg = UIStreamConfig(num_frames=12)
    recs = generate_recordings(SEEN_TEMPLATES + ZERO_SHOT_TEMPLATES, 2, np.random.default_rng(3), cfg)
    again = generate_recordings(SEEN_TEMPLATES + ZERO_SHOT_TEMPLATES, 2, np.random.default_rng(3), cfg)
    for a, b in zip(recs, again, strict=True):
        assert a.intent == b.intent and a.seed == b.seed
        assert np.array_equal(a.frames, b.frames)
        r = replay(a, cfg)
        assert r.intent == a.intent and np.array_equal(r.frames, a.frames)
    # A different seed gives a different rendition (the user's noise) of the same intent.
    other = record(recs[0].intent, recs[0].seed + 1, cfg)
    assert not np.array_equal(other.frames, recs[0].frames)
    assert recs[0].frames.shape == (12, 32, 32) and recs[0].frames.dtype == np.uint8


def test_intent_text_and_slots_are_rendered():
    alarm = Intent("alarm", (("hour", "7"), ("minute", "30")))
    assert alarm.text == "set an alarm for 7:30"
    # The final screen shows the slot: two different alarm times give different last frames
    # with the same seed (same user noise), so the slots are recoverable from pixels.
    other = Intent("alarm", (("hour", "9"), ("minute", "30")))
    cfg = UIStreamConfig(pixel_noise=0.0)
    assert not np.array_equal(record(alarm, 5, cfg).frames[-1], record(other, 5, cfg).frames[-1])


def test_zero_shot_templates_are_disjoint_from_seen():
    seen = {t.name for t in SEEN_TEMPLATES}
    assert seen.isdisjoint(t.name for t in ZERO_SHOT_TEMPLATES)
