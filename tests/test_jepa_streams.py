"""Synthetic UI recordings: determinism, replay and legibility of the intent."""

import numpy as np

from selfprm.jepa.ui_streams import (
    SEEN_TEMPLATES,
    TASKS,
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


def test_temporal_task_slot_is_not_in_any_single_frame():
    """Two 'take N photos' recordings, 2 and 3 shots, same seed: the same distinct frames in the
    same order of first appearance (and the same first frame), different counts."""
    cfg = UIStreamConfig(num_frames=40, pixel_noise=0.0)  # >= the script's length: every frame kept
    two = record(Intent("photos", (("count", "2"),)), 11, cfg)
    three = record(Intent("photos", (("count", "3"),)), 11, cfg)

    def first_appearances(frames):
        seen = []
        for f in frames:
            if f.tobytes() not in seen:
                seen.append(f.tobytes())
        return seen

    assert first_appearances(two.frames) == first_appearances(three.frames)
    assert np.array_equal(two.frames[0], three.frames[0])
    assert two.intent.slot("count") != three.intent.slot("count")

    # "skip N songs": the count is the last shown song minus the first, never one frame's content.
    a = record(Intent("skip", (("count", "2"),)), 3, cfg)
    b = record(Intent("skip", (("count", "3"),)), 3, cfg)
    assert not np.array_equal(a.frames[-1], b.frames[-1])
    assert np.array_equal(a.frames[0], b.frames[0])


def test_temporal_shots_survive_resampling_to_16_frames():
    cfg = UIStreamConfig(pixel_noise=0.0)
    for count in "1234":
        for seed in range(5):
            frames = record(Intent("photos", (("count", count),)), seed, cfg).frames.astype(float)
            flash = frames[:, 16:24, 2:30].mean(axis=(1, 2)) > 200  # the viewfinder goes white
            assert len([r for r in _runs(flash)]) == int(count)


def _runs(flags):
    out, start = [], None
    for i, v in enumerate(list(flags) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_temporal_task_holds_out_an_intent_whose_count_runs_the_other_way():
    """"rewind N songs" is never labelled; its count is the first shown song minus the last (mod 9),
    where "skip N songs" (labelled) counts up: same slot, a route the probe never saw."""
    labelled, held_out = TASKS["temporal"]
    assert [t.name for t in held_out] == ["rewind"]
    assert {t.name for t in labelled}.isdisjoint(t.name for t in held_out)
    cfg = UIStreamConfig(num_frames=40, pixel_noise=0.0)
    skip = record(Intent("skip", (("count", "3"),)), 5, cfg)
    rewind = record(Intent("rewind", (("count", "3"),)), 5, cfg)
    # Same seed, so the same start song; the cursor rests on another button (below the digits), so
    # compare the song number's pixels only: equal at the start, apart by 6 songs at the end.
    digits = (slice(9, 20), slice(12, 26))
    assert np.array_equal(skip.frames[0][digits], rewind.frames[0][digits])
    assert not np.array_equal(skip.frames[-1][digits], rewind.frames[-1][digits])
    assert np.array_equal(replay(rewind, cfg).frames, rewind.frames)
