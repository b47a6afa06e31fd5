"""Loader for the public IIT / IIW release of UI-JEPA (arXiv 2409.04081).

The release (github.com/apple/ml-ui-jepa) unzips to::

    raw/{train,val,test}/  *.mov recordings + annotations.csv

The README does not document the CSV's column names, so the loader looks for
the video column and the intent-text column among common names and otherwise
infers them (the column whose values name video files; the first other text
column).  Videos are decoded with PyAV (FFmpeg bindings), resampled to a fixed
number of frames spread uniformly over the recording, and resized to small
grayscale frames matching the synthetic clips, so a real recording goes
through the same encoder as a synthetic one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mov", ".mp4", ".m4v", ".avi", ".mkv", ".webm")
VIDEO_COLUMNS = ("video", "video_name", "video_path", "video_id", "filename", "file_name", "file", "path", "name")
INTENT_COLUMNS = ("intent", "user_intent", "description", "annotation", "caption", "label", "text", "task")


@dataclass
class VideoClipConfig:
    num_frames: int = 16
    size: int = 32


@dataclass
class IITSample:
    video_path: Path
    intent: str
    split: str
    extra: dict[str, str] = field(default_factory=dict)


def _pick_columns(fieldnames: list[str], rows: list[dict[str, str]]) -> tuple[str, str]:
    lower = {name.strip().lower(): name for name in fieldnames}
    video = next((lower[c] for c in VIDEO_COLUMNS if c in lower), None)
    if video is None:
        video = next(
            (f for f in fieldnames if rows and all(str(r[f]).lower().endswith(VIDEO_EXTENSIONS) for r in rows)), None
        )
    intent = next((lower[c] for c in INTENT_COLUMNS if c in lower and lower[c] != video), None)
    if intent is None:
        intent = next((f for f in fieldnames if f != video), None)
    if video is None or intent is None:
        raise ValueError(f"cannot find video and intent columns in annotations.csv columns {fieldnames}")
    return video, intent


def _resolve_video(split_dir: Path, value: str) -> Path:
    candidate = split_dir / value.strip()
    if candidate.suffix.lower() in VIDEO_EXTENSIONS and candidate.exists():
        return candidate
    for ext in VIDEO_EXTENSIONS:  # ids given without their extension
        with_ext = Path(f"{candidate}{ext}")
        if with_ext.exists():
            return with_ext
    raise FileNotFoundError(f"video {value!r} listed in {split_dir / 'annotations.csv'} not found")


def read_annotations(split_dir: str | Path) -> list[IITSample]:
    """Rows of ``split_dir/annotations.csv`` with their resolved video paths."""
    split_dir = Path(split_dir)
    with open(split_dir / "annotations.csv", newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fieldnames = list(reader.fieldnames or [])
    video_col, intent_col = _pick_columns(fieldnames, rows)
    return [
        IITSample(
            _resolve_video(split_dir, row[video_col]),
            row[intent_col].strip(),
            split_dir.name,
            {k: v for k, v in row.items() if k not in (video_col, intent_col)},
        )
        for row in rows
    ]


def decode_clip(path: str | Path, config: VideoClipConfig | None = None) -> np.ndarray:
    """uint8 [T, size, size] grayscale frames spread uniformly over the video."""
    try:
        import av
    except ImportError as exc:  # optional dependency: only the real-data loader needs FFmpeg
        raise ImportError("decoding IIT/IIW videos needs PyAV: pip install 'selfprm[video]'") from exc
    cfg = config or VideoClipConfig()
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            # Downscale while decoding: recordings average ~750 frames, kept small they fit in memory.
            frames.append(frame.reformat(width=cfg.size, height=cfg.size, format="gray").to_ndarray())
    if not frames:
        raise ValueError(f"no video frames decoded from {path}")
    idx = np.round(np.linspace(0, len(frames) - 1, cfg.num_frames)).astype(int)
    return np.stack([frames[i] for i in idx]).astype(np.uint8)


def load_iit_split(root: str | Path, split: str = "train", config: VideoClipConfig | None = None
                   ) -> tuple[np.ndarray, list[IITSample]]:
    """Decode one split of an IIT/IIW release: (clips uint8 [N, T, size, size], samples).

    ``root`` is the unzipped ``raw/`` folder holding ``train/``, ``val/``, ``test/``;
    a folder that itself holds ``annotations.csv`` is read directly.
    """
    root = Path(root)
    split_dir = root if (root / "annotations.csv").exists() else root / split
    samples = read_annotations(split_dir)
    clips = np.stack([decode_clip(s.video_path, config) for s in samples])
    return clips, samples
