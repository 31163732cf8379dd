"""Clips for the video tests (tests/detector/test_video.py, tests/app/test_video_*.py), written with
cv2.VideoWriter from a dataset-style example face: a face segment, a no-face segment (scikit-image's coffee), a face
again."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
W, H = 320, 240


def face_canvas(dx: int = 0) -> np.ndarray:
    face = np.asarray(Image.open(ROOT / "examples" / "gan140k_real_00032.jpg").convert("RGB").resize((180, 180)))
    canvas = np.full((H, W, 3), 110, np.uint8)
    canvas[30:210, 60 + dx:240 + dx] = face
    return canvas


def coffee() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.coffee(), (W, H), interpolation=cv2.INTER_AREA)


def write(path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def mixed_frames() -> list[np.ndarray]:
    """4 s at 10 fps: face 0-2 s, coffee 2-3 s, face again 3-4 s."""
    face = [face_canvas(dx=2 * i) for i in range(10)]
    return face + face + [coffee()] * 10 + face
