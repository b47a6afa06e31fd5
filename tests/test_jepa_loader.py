"""IIT/IIW loader on a tiny recording written with PyAV."""

import csv
import sys

import numpy as np
import pytest

from selfprm.jepa.iit_loader import VideoClipConfig, decode_clip, load_iit_split, read_annotations


def test_missing_pyav_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'selfprm\[video\]'"):
        decode_clip(tmp_path / "missing.mov")


def _write_video(path, levels, size=(48, 64)):
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for level in levels:
            img = np.full((*size, 3), level, dtype=np.uint8)
            img[:, : size[1] // 4] = 255 - level  # a bar so frames are not flat
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_loader_reads_release_layout(tmp_path):
    pytest.importorskip("av")
    split = tmp_path / "raw" / "train"
    split.mkdir(parents=True)
    _write_video(split / "rec_001.mov", levels=range(20, 220, 10))  # 20 frames, brightening
    _write_video(split / "rec_002.mov", levels=[200] * 8)
    with open(split / "annotations.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_name", "intent", "app"])
        writer.writerow(["rec_001.mov", "set an alarm for 7:30", "clock"])
        writer.writerow(["rec_002", "call ann", "phone"])  # id without extension

    samples = read_annotations(split)
    assert [s.intent for s in samples] == ["set an alarm for 7:30", "call ann"]
    assert samples[1].video_path.name == "rec_002.mov" and samples[0].extra == {"app": "clock"}

    clips, samples = load_iit_split(tmp_path / "raw", "train", VideoClipConfig(num_frames=6, size=16))
    assert clips.shape == (2, 6, 16, 16) and clips.dtype == np.uint8
    # Frames are spread over the whole recording in order: the brightening video's right side
    # (away from the bar) grows monotonically from the first to the last sampled frame.
    brightness = clips[0][:, :, 8:].mean(axis=(1, 2))
    assert np.all(np.diff(brightness) > 0) and brightness[-1] - brightness[0] > 100
    assert abs(clips[1][:, :, 8:].mean() - 200) < 10  # a flat gray frame keeps its level
