"""Video: score a clip frame by frame with the image pipeline, follow the main face, aggregate.

``python -m detector.video PATH --model NAME [--fps 2] [--max-frames 64] [--json]``

Pipeline (:func:`iter_analyze_video`; :func:`analyze_video` is the same returning only the result):

1. **Checks before decoding.** Size (``DEEPFAKE_MAX_VIDEO_SIZE``, default 100mb) and a look at the container
   (:func:`probe_container`: a few header bytes, and for MP4/MOV the ``moov`` box only, never the media data):
   images, text, PDF, zip and audio-only files (WAV, MP3, FLAC, an MP4/M4A without a video track) are refused
   with a message that says what the file is. An MP4 cut before its index (``moov``) is refused as truncated;
   one cut inside its media data (index first, "fast start") is analysed as far as it goes, with a note.
2. **Decoding** with OpenCV's bundled FFmpeg (``cv2.VideoCapture``), which already reads MP4/MOV/MKV/WebM/AVI
   here; PyAV is not needed. Rotation metadata is honoured: ``CAP_PROP_ORIENTATION_AUTO`` (on by default in
   OpenCV >= 4.5) turns the frames upright and ``CAP_PROP_ORIENTATION_META`` says by how much (:func:`rotate_frame`
   does the same if a build does not). Frames are read in order and each frame's own presentation timestamp
   (``CAP_PROP_POS_MSEC``) decides whether it is sampled, so variable-frame-rate clips are sampled by time,
   not by frame index. A clip longer than ``DEEPFAKE_MAX_VIDEO_SECONDS`` (default 120) is refused.
3. **Sampling** (:func:`sample_times`): evenly in time at ``fps`` (default 2) from t = 0; if that gives more
   than ``max_frames`` (default 64), ``max_frames`` times spread evenly over the whole clip instead. Each target
   time takes the first frame whose timestamp is at or after it (less half a frame interval).
4. **Faces**: YuNet on every sampled frame (:func:`detector.preprocess.detect_faces_full`). :class:`FaceTracker`
   follows the main face (IoU >= 0.3 with its last box) and records when it is lost, found again, replaced by
   another face, and when several faces appear.
5. **Scoring**: the tracked face goes through exactly the photo path (``align_face`` -> ``resize`` ->
   ``finish``: CLAHE, normalise), and crops are scored in batches with ``predict_tensor`` (temperature-calibrated).
6. **Aggregate** (:func:`aggregate`): the clip's ``p_fake`` is ``sigmoid(mean of the top-k frame logits)``
   with ``k = ceil(n / 4)``, the frame logit being ``log(p_fake / (1 - p_fake))`` of the calibrated frame
   probability. Why: a face swap often shows in only part of a clip (the blend fails on some poses, or only a
   segment is manipulated), so the plain mean dilutes it; the single maximum is decided by one frame, and these
   detectors' frame-level false positives are common. The top quarter needs a sustained run of suspicious frames.
   The cost: on a real clip it reads higher than the frame mean, so the clip ``p_fake`` is *not* a calibrated
   clip-level probability (no clip-level labels exist here to calibrate it); the mean and maximum are reported
   beside it. Verdicts (clip and frames) use the detector's three-way band from its ``config.json``
   (:func:`detector.verdict_bands.verdict3`, the same rule and wording as for photos; a detector without a
   fitted band answers ``inconclusive``).

Nothing is written to disk (bytes input goes to a temporary folder that is always removed). Errors are
:class:`~detector.errors.InputError` with a ``code``: ``not_found``, ``empty``, ``too_large``, ``not_video``,
``audio_only``, ``truncated``, ``unsupported_codec``, ``no_frames``, ``too_long``, and
:class:`~detector.errors.NoFaceError` (``no_face``) when no frame shows a face.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np

from .errors import DetectorError, InputError, NoFaceError, WeightsError

__all__ = ["DEFAULT_FPS", "DEFAULT_MAX_FRAMES", "TOP_FRACTION", "IOU_THRESHOLD", "BATCH_SIZE", "VideoSource",
           "ContainerInfo", "FrameResult", "TrackEvent", "SuspiciousFrame", "VideoProgress", "VideoResult",
           "sample_times", "iou", "FaceTracker", "aggregate", "frame_verdict", "rotate_frame", "probe_container",
           "iter_analyze_video", "analyze_video", "face_strip", "most_suspicious", "frame_at", "main"]

#: Sampled frames per second of video, and the cap on sampled frames (then spread over the whole clip).
DEFAULT_FPS: float = 2.0
DEFAULT_MAX_FRAMES: int = 64
#: Share of the highest frame logits averaged into the clip score (k = ceil(TOP_FRACTION * n)).
TOP_FRACTION: float = 0.25
#: A face continues the main track when its box overlaps the track's last box by at least this IoU.
IOU_THRESHOLD: float = 0.3
#: Face crops scored per forward pass.
BATCH_SIZE: int = 16
#: Frames decoded per second of declared duration before decoding gives up (a guard against lying headers).
_MAX_DECODE_FPS: float = 240.0

VideoSource = Union[str, Path, bytes]

# FFmpeg's own log lines ("moov atom not found", "no frame!") would flood stderr for every bad file; the errors
# raised here say what failed. OpenCV reads this once, when its FFmpeg reader is first used; set it to keep them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


# --- sampling, tracking, aggregation (pure functions) ------------------------------------------------------------

def sample_times(duration: float | None, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES
                 ) -> list[float]:
    """Target times in seconds: ``0, 1/fps, 2/fps, ...`` below ``duration``; if there are more than
    ``max_frames``, ``max_frames`` times ``i * duration / max_frames`` instead (even over the whole clip).

    ``duration`` unknown (``None`` or <= 0): the first ``max_frames`` times at ``fps``.
    """
    if not fps > 0 or max_frames < 1:
        raise ValueError(f"fps must be > 0 and max_frames >= 1 (got {fps}, {max_frames})")
    if duration is None or not duration > 0 or not math.isfinite(duration):
        return [i / fps for i in range(max_frames)]
    n = max(1, math.ceil(duration * fps - 1e-9))
    if n <= max_frames:
        return [i / fps for i in range(n)]
    step = duration / max_frames
    return [i * step for i in range(max_frames)]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes (0 when either is empty)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class TrackEvent:
    """Something the tracker noticed: ``start``, ``lost``, ``found`` (same face again), ``new`` (another face
    became the main one) or ``several`` (more than one face from this frame on)."""

    t: float
    kind: str
    track: int | None
    message: str

    def to_json(self) -> dict:
        """JSON form."""
        return {"t": round(self.t, 3), "kind": self.kind, "track": self.track, "message": self.message}


class FaceTracker:
    """A simple IoU tracker for the main face.

    The first face seen (the largest in its frame) starts track 1. In later frames the face with the highest IoU
    with the track's last box continues it if that IoU is >= ``iou_threshold``. Otherwise the track is *lost*; if
    other faces are present the largest starts a new track; a later face overlapping the lost track's last box
    resumes it (*found*). Faces are compared across sampled frames (0.5 s apart at 2 fps), so a fast head movement
    can read as lost and found again; the events say so.
    """

    def __init__(self, iou_threshold: float = IOU_THRESHOLD) -> None:
        self.iou_threshold = iou_threshold
        self.box: tuple[int, int, int, int] | None = None  #: last box of the current track
        self.track: int | None = None  #: current track id (None before the first face)
        self.active = False  #: the current track matched in the last frame
        self.n_tracks = 0
        self._several = False
        self.events: list[TrackEvent] = []

    def update(self, t: float, boxes: Sequence[Sequence[int]]) -> int | None:
        """Feed one frame's face boxes (largest first); returns the index of the main face in ``boxes`` (or None)."""
        several = len(boxes) > 1
        if several and not self._several:
            self.events.append(TrackEvent(t, "several", self.track, f"{len(boxes)} faces at {t:.1f} s: the main "
                                                                    "(tracked) face is scored"))
        self._several = several
        if not boxes:
            if self.active:
                self.events.append(TrackEvent(t, "lost", self.track, f"main face lost at {t:.1f} s (no face)"))
            self.active = False
            return None
        best, best_iou = None, 0.0
        if self.box is not None:
            for i, b in enumerate(boxes):
                v = iou(self.box, b)
                if v > best_iou:
                    best, best_iou = i, v
        if best is not None and best_iou >= self.iou_threshold:
            if not self.active:
                self.events.append(TrackEvent(t, "found", self.track, f"main face found again at {t:.1f} s"))
            self.active, self.box = True, tuple(int(v) for v in boxes[best])  # type: ignore[assignment]
            return best
        if self.active:
            self.events.append(TrackEvent(t, "lost", self.track, f"main face lost at {t:.1f} s (moved or cut)"))
        self.n_tracks += 1
        self.track, self.active, self.box = self.n_tracks, True, tuple(int(v) for v in boxes[0])  # type: ignore
        kind = "start" if self.n_tracks == 1 else "new"
        msg = (f"face found at {t:.1f} s" if kind == "start"
               else f"a different face (track {self.track}) is followed from {t:.1f} s")
        self.events.append(TrackEvent(t, kind, self.track, msg))
        return 0


def aggregate(logits: Sequence[float], top_fraction: float = TOP_FRACTION) -> tuple[float, int]:
    """Clip ``p_fake`` = sigmoid(mean of the ``k = ceil(top_fraction * n)`` largest frame logits); returns
    ``(p_fake, k)``. See the module docstring for why. Raises ``ValueError`` for no logits."""
    z = sorted((float(v) for v in logits), reverse=True)
    if not z:
        raise ValueError("no frame scores to aggregate")
    k = max(1, math.ceil(top_fraction * len(z) - 1e-9))
    m = sum(z[:k]) / k
    return _sigmoid(m), k


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def frame_verdict(p_fake: float, band: Any) -> str:
    """``fake`` / ``real`` / ``inconclusive`` for one score: the detector's band (:func:`verdict3`), the one place
    the video verdicts are decided."""
    from .verdict_bands import verdict3

    return verdict3(p_fake, band)


def rotate_frame(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Turn a decoded frame upright for a container rotation of ``degrees`` (0/90/180/270, as in
    ``CAP_PROP_ORIENTATION_META``), the way OpenCV's FFmpeg reader does when ``CAP_PROP_ORIENTATION_AUTO`` is on."""
    import cv2

    d = int(round(degrees)) % 360
    if d == 90:
        return cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    if d == 180:
        return cv2.rotate(frame, cv2.ROTATE_180)
    if d == 270:
        return cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return frame


# --- container probe -----------------------------------------------------------------------------------------

@dataclass
class ContainerInfo:
    """What the first bytes (and an MP4's ``moov`` box) say about a file."""

    kind: str  #: "mp4", "matroska", "avi", "audio", "image", "text", "pdf", "zip", "unknown"
    what: str = ""  #: human name, e.g. "a WAV audio file"
    tracks: list[tuple[str, str]] = field(default_factory=list)  #: MP4: (handler "vide"/"soun"/..., codec fourcc)
    duration: float | None = None  #: MP4: movie duration in seconds from ``mvhd``
    truncated: bool = False  #: MP4: a box runs past the end of the file, or no ``moov``
    indexed: bool = False  #: MP4: the ``moov`` box (the index of the media data) was read whole

    @property
    def video_codecs(self) -> list[str]:
        """Codec fourccs of the video tracks (MP4 only)."""
        return [c for h, c in self.tracks if h == "vide"]


_MP4_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid", b"moof", b"styp", b"sidx"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_MAX_MOOV = 64 * 1024 * 1024


def _sniff(head: bytes) -> tuple[str, str]:
    if len(head) >= 8 and head[4:8] in _MP4_TOP:
        return "mp4", "an MP4/MOV file"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska", "a Matroska/WebM file"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi", "an AVI file"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio", "a WAV audio file"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "a WebP image"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "an MP3 audio file"
    if head.startswith(b"fLaC"):
        return "audio", "a FLAC audio file"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "a JPEG image"
    if head.startswith(b"\x89PNG"):
        return "image", "a PNG image"
    if head.startswith(b"GIF8"):
        return "image", "a GIF image"
    if head.startswith(b"%PDF"):
        return "pdf", "a PDF document"
    if head.startswith(b"PK"):
        return "zip", "a zip archive"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head[:64]):
        return "text", "a text file"
    return "unknown", "an unknown format"


def _boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in ``buf[start:end]``; stops at a malformed one."""
    off = start
    while off + 8 <= end:
        size, typ = struct.unpack(">I4s", buf[off:off + 8])
        hdr = 8
        if size == 1 and off + 16 <= end:
            size, hdr = struct.unpack(">Q", buf[off + 8:off + 16])[0], 16
        elif size == 0:
            size = end - off
        if size < hdr or off + size > end:
            return
        yield typ, off + hdr, off + size
        off += size


def _parse_moov(moov: bytes, info: ContainerInfo) -> None:
    for typ, a, b in _boxes(moov, 0, len(moov)):
        if typ == b"mvhd" and b - a >= 20:
            version = moov[a]
            if version == 1 and b - a >= 32:
                scale, dur = struct.unpack(">IQ", moov[a + 20:a + 32])
            else:
                scale, dur = struct.unpack(">II", moov[a + 12:a + 20])
            if scale > 0 and dur not in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                info.duration = dur / scale
        elif typ == b"trak":
            handler, codec = "", ""
            for t2, a2, b2 in _boxes(moov, a, b):
                if t2 != b"mdia":
                    continue
                for t3, a3, b3 in _boxes(moov, a2, b2):
                    if t3 == b"hdlr" and b3 - a3 >= 12:
                        handler = moov[a3 + 8:a3 + 12].decode("latin-1")
                    elif t3 == b"minf":
                        for t4, a4, b4 in _boxes(moov, a3, b3):
                            if t4 != b"stbl":
                                continue
                            for t5, a5, b5 in _boxes(moov, a4, b4):
                                if t5 == b"stsd" and b5 - a5 >= 16:
                                    codec = moov[a5 + 12:a5 + 16].decode("latin-1")
            info.tracks.append((handler, codec))


def probe_container(path: str | Path) -> ContainerInfo:
    """Sniff ``path``'s format from its first bytes; for MP4/MOV also walk the top-level boxes (seeking past the
    media data) and read ``moov``: tracks (handler, codec), duration, and whether the file is truncated."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
        kind, what = _sniff(head)
        info = ContainerInfo(kind, what)
        if kind != "mp4":
            return info
        off, moov = 0, None
        while off + 8 <= size:
            f.seek(off)
            hdr = f.read(16)
            box_size, typ = struct.unpack(">I4s", hdr[:8])
            n = 8
            if box_size == 1 and len(hdr) == 16:
                box_size, n = struct.unpack(">Q", hdr[8:16])[0], 16
            elif box_size == 0:
                box_size = size - off
            if box_size < n or off + box_size > size:
                info.truncated = True
                break
            if typ == b"moov" and box_size <= _MAX_MOOV:
                f.seek(off + n)
                moov = f.read(box_size - n)
            elif typ == b"ftyp" and hdr[8:12] in _AUDIO_BRANDS:
                info.what = "an M4A audio file"
            off += box_size
    if moov is None:
        info.truncated = True
    else:
        info.indexed = True
        _parse_moov(moov, info)
    return info


# --- results -------------------------------------------------------------------------------------------------

@dataclass
class FrameResult:
    """One sampled frame."""

    index: int  #: sample number, 0-based
    t: float  #: the frame's presentation time in seconds
    box: tuple[int, int, int, int] | None = None  #: the scored (main) face, (x, y, w, h) in the upright frame
    n_faces: int = 0
    track: int | None = None  #: the tracker's id for the scored face
    p_fake: float | None = None  #: calibrated frame probability
    logit: float | None = None  #: log(p_fake / (1 - p_fake))
    verdict: str | None = None  #: fake / real / inconclusive
    error: str | None = None  #: why this frame has no score
    crop: np.ndarray | None = field(default=None, repr=False)  #: the aligned face crop scored (uint8 RGB, before CLAHE)

    def to_json(self) -> dict:
        """JSON form (no image)."""
        return {"t": round(self.t, 3), "box": list(self.box) if self.box else None, "faces": self.n_faces,
                "track": self.track, "p_fake": None if self.p_fake is None else round(self.p_fake, 6),
                "verdict": self.verdict, "error": self.error}


@dataclass
class SuspiciousFrame:
    """The frame with the highest ``p_fake``, at full resolution, for the image explanation panel."""

    rgb: np.ndarray = field(repr=False)  #: uint8 RGB, upright
    t: float
    index: int
    p_fake: float
    box: tuple[int, int, int, int] | None


@dataclass
class VideoProgress:
    """A progress report: ``stage`` is ``open``, ``detect`` (a sampled frame decoded and searched), ``score`` (a
    batch scored) or ``done``; ``frames`` is the list so far (the UI can redraw the timeline from it)."""

    stage: str
    done: int
    total: int
    t: float | None
    message: str
    frames: list[FrameResult] = field(default_factory=list, repr=False)


@dataclass
class VideoResult:
    """A clip's analysis: per-frame results, the aggregate verdict and how it was reached."""

    name: str
    model: str
    weights: str
    duration: float | None  #: seconds (container's, else frame count / frame rate)
    video_fps: float  #: the container's average frame rate
    sample_fps: float
    max_frames: int
    rotation: int  #: degrees turned upright from the file's rotation metadata
    frames: list[FrameResult]
    p_fake: float
    verdict: str
    k: int  #: frames averaged in the aggregate
    band: Any  #: the detector's decision band (``verdict_bands.Band``) or None
    events: list[TrackEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  #: seconds: decode, detect, score, total
    suspicious: SuspiciousFrame | None = field(default=None, repr=False)

    @property
    def scored(self) -> list[FrameResult]:
        """Frames with a score."""
        return [f for f in self.frames if f.p_fake is not None]

    def to_json(self) -> dict:
        """The CLI's and the API's JSON (no images)."""
        from .reliability import reliability
        from .verdict_bands import headline

        sc = self.scored
        ps = [f.p_fake for f in sc]
        top = max(sc, key=lambda f: f.p_fake) if sc else None  # type: ignore[arg-type,return-value]
        return {
            "name": self.name, "model": self.model, "weights": self.weights,
            "p_fake": round(self.p_fake, 6), "verdict": self.verdict, "headline": headline(self.p_fake, self.band),
            "decision_band": None if self.band is None else {"lo": self.band.lo, "hi": self.band.hi},
            "aggregate": {"rule": f"sigmoid(mean of the top {self.k} of {len(sc)} frame logits; "
                                  f"k = ceil({TOP_FRACTION} n))",
                          "k": self.k, "n_scored": len(sc), "p_fake_mean": round(float(np.mean(ps)), 6),
                          "p_fake_max": round(max(ps), 6), "t_max": round(top.t, 3) if top else None},
            "reliability": reliability(self.model).to_json(),
            "duration_s": None if self.duration is None else round(self.duration, 3),
            "video_fps": round(self.video_fps, 3), "sample_fps": self.sample_fps, "max_frames": self.max_frames,
            "rotation": self.rotation, "frames": [f.to_json() for f in self.frames],
            "tracks": [e.to_json() for e in self.events], "notes": self.notes,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


# --- decoding ------------------------------------------------------------------------------------------------

def _check_file(path: Path, max_bytes: int) -> ContainerInfo:
    if not path.is_file():
        raise InputError(f"File not found: {path.name}", "not_found")
    size = path.stat().st_size
    if size == 0:
        raise InputError("The file is empty (0 bytes).", "empty")
    if size > max_bytes:
        raise InputError(f"The video is {size / 2 ** 20:.1f} MB; the limit is {max_bytes / 2 ** 20:.0f} MB "
                         "(DEEPFAKE_MAX_VIDEO_SIZE). Trim or compress it and upload again.", "too_large")
    info = probe_container(path)
    if info.kind in ("image", "text", "pdf", "zip"):
        hint = " Use the image analysis for photos." if info.kind == "image" else ""
        raise InputError(f"{path.name} is not a video (it looks like {info.what}).{hint} Upload an MP4, MOV, "
                         "WebM, MKV or AVI clip.", "not_video")
    if info.kind == "audio" or (info.tracks and not info.video_codecs and any(h == "soun" for h, _ in info.tracks)):
        raise InputError(f"{path.name} has sound but no video track ({info.what}): there are no faces to "
                         "analyse. Upload a video clip.", "audio_only")
    if info.kind == "mp4" and info.truncated and not info.indexed:
        raise InputError(f"{path.name} is truncated or corrupt (its MP4 index is missing or cut off; incomplete "
                         "download?). Upload the complete file.", "truncated")
    return info


def _open(path: Path, info: ContainerInfo):
    """An opened ``cv2.VideoCapture`` with rotation handled, or a clear :class:`InputError`."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        if info.video_codecs:
            codec = info.video_codecs[0]
            raise InputError(f"{path.name} uses the video codec {codec!r}, which this server's decoder (OpenCV's "
                             "FFmpeg) cannot read. Re-encode it as H.264 or MPEG-4 in an MP4 and upload again.",
                             "unsupported_codec")
        raise InputError(f"{path.name} could not be opened as a video ({info.what}): it is corrupt, or its format "
                         "or codec is not supported. Upload an MP4 (H.264), MOV, WebM, MKV or AVI clip.",
                         "unsupported_codec" if info.kind in ("matroska", "avi") else "corrupt")
    return cap


def _fourcc(cap) -> str:
    import cv2

    v = int(cap.get(cv2.CAP_PROP_FOURCC))
    s = "".join(chr((v >> 8 * i) & 0xFF) for i in range(4))
    return s if s.isprintable() and s.strip() else "?"


# --- analysis ------------------------------------------------------------------------------------------------

@dataclass
class _Pending:
    res: FrameResult
    rgb: np.ndarray
    tensor: Any


def iter_analyze_video(source: VideoSource, model_name: str = "custom_cnn", fps: float = DEFAULT_FPS,
                       max_frames: int = DEFAULT_MAX_FRAMES, *, device: str | None = None,
                       max_bytes: int | None = None, max_seconds: float | None = None,
                       batch_size: int = BATCH_SIZE) -> Iterator[VideoProgress | VideoResult]:
    """Analyse a clip, yielding :class:`VideoProgress` reports and finally the :class:`VideoResult`.

    ``source``: a path, or the file's bytes (written to a temporary folder that is removed afterwards).
    ``max_bytes`` / ``max_seconds`` default to the settings (``DEEPFAKE_MAX_VIDEO_SIZE`` / ``_SECONDS``).
    Raises :class:`InputError` / :class:`NoFaceError` (see the module docstring) or :class:`WeightsError`.
    """
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise InputError("The file is empty (0 bytes).", "empty")
        with tempfile.TemporaryDirectory(prefix="deepfake-video-") as tmp:
            p = Path(tmp) / "upload"
            p.write_bytes(source)
            yield from iter_analyze_video(p, model_name, fps, max_frames, device=device, max_bytes=max_bytes,
                                          max_seconds=max_seconds, batch_size=batch_size)
        return
    from .settings import current

    settings = current()
    path = Path(source)
    limit_s = settings.max_video_seconds if max_seconds is None else max_seconds
    info = _check_file(path, settings.max_video_bytes if max_bytes is None else max_bytes)
    sample_times(None, fps, max_frames)  # validates fps / max_frames before anything is loaded

    import cv2
    import torch

    from .predict import predict_tensor
    from .preprocess import align_face, detect_faces_full, finish, resize
    from .verdict_bands import band_from_config
    from .weights import load_model

    lm = load_model(model_name, device)
    spec = lm.spec
    band = band_from_config(lm.config)
    fi = spec.fake_index
    t_start = time.perf_counter()
    timings = {"decode": 0.0, "detect": 0.0, "score": 0.0}
    notes: list[str] = []

    cap = _open(path, info)
    try:
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        rotate_here = rotation and not cap.get(cv2.CAP_PROP_ORIENTATION_AUTO)
        if info.truncated:
            notes.append("The file is truncated (it ends inside its media data): only the part present is "
                         "analysed.")
        if rotation:
            notes.append(f"Turned {rotation} degrees upright, as the file's rotation metadata says.")
        video_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        duration = info.duration or (count / video_fps if video_fps > 0 and count > 0 else None)
        if duration is not None and duration > limit_s:
            raise InputError(f"The video lasts {duration:.0f} s; the limit is {limit_s:.0f} s "
                             "(DEEPFAKE_MAX_VIDEO_SECONDS). Trim it and upload again.", "too_long")
        if duration is None:
            notes.append(f"The file does not say how long it is: the first {max_frames} samples at {fps:g} fps "
                         "are used.")
        times = sample_times(duration, fps, max_frames)
        tol = 0.5 / video_fps if video_fps > 0 else 0.0
        max_grabs = int(_MAX_DECODE_FPS * (limit_s + 1))
        yield VideoProgress("open", 0, len(times), None,
                            f"{path.name}: {duration or 0:.1f} s, {video_fps:.1f} fps, codec {_fourcc(cap)}; "
                            f"sampling {len(times)} frames")

        tracker = FaceTracker()
        frames: list[FrameResult] = []
        pending: list[_Pending] = []
        best: SuspiciousFrame | None = None
        j = grabbed = decoded = 0
        last_t = -1.0

        def score(batch: list[_Pending]) -> None:
            nonlocal best
            t0 = time.perf_counter()
            probs, logits = predict_tensor(lm, torch.cat([b.tensor for b in batch]))
            z = torch.log_softmax(logits / lm.temperature, dim=1)
            others = torch.logsumexp(torch.cat([z[:, :fi], z[:, fi + 1:]], dim=1), dim=1)
            zf = (z[:, fi] - others).tolist()
            for b, p, lg in zip(batch, probs[:, fi].tolist(), zf):
                b.res.p_fake, b.res.logit, b.res.verdict = float(p), float(lg), frame_verdict(p, band)
                if best is None or p > best.p_fake:
                    best = SuspiciousFrame(b.rgb, b.res.t, b.res.index, float(p), b.res.box)
            timings["score"] += time.perf_counter() - t0

        while j < len(times):
            t0 = time.perf_counter()
            if grabbed >= max_grabs or not cap.grab():
                timings["decode"] += time.perf_counter() - t0
                break
            grabbed += 1
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if grabbed > 1 and t <= last_t and video_fps > 0:  # no usable timestamps: count frames instead
                t = (grabbed - 1) / video_fps
            last_t = t
            if t > limit_s + 1.0:
                raise InputError(f"The video runs past {limit_s:.0f} s (DEEPFAKE_MAX_VIDEO_SECONDS). Trim it and "
                                 "upload again.", "too_long")
            if t < times[j] - tol:
                timings["decode"] += time.perf_counter() - t0
                continue
            while j < len(times) and times[j] - tol <= t:
                j += 1
            ok, bgr = cap.retrieve()
            res = FrameResult(index=len(frames), t=t)
            frames.append(res)
            if not ok or bgr is None or bgr.size == 0:
                timings["decode"] += time.perf_counter() - t0
                res.error = "this frame could not be decoded"
                continue
            decoded += 1
            rgb = cv2.cvtColor(rotate_frame(bgr, rotation) if rotate_here else bgr, cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            timings["decode"] += t1 - t0
            faces = detect_faces_full(rgb)
            res.n_faces = len(faces)
            k = tracker.update(t, [f.box for f in faces])
            if k is None:
                res.error = "no face in this frame"
                timings["detect"] += time.perf_counter() - t1
            else:
                res.box, res.track = faces[k].box, tracker.track
                res.crop = resize(align_face(rgb, faces[k]), spec.input_size)
                t2 = time.perf_counter()
                timings["detect"] += t2 - t1
                tensor, _ = finish(res.crop, spec)
                timings["score"] += time.perf_counter() - t2
                pending.append(_Pending(res, rgb, tensor))
            yield VideoProgress("detect", len(frames), len(times), t,
                                f"frame {len(frames)}/{len(times)} at {t:.1f} s: {res.n_faces} face(s)", frames)
            if len(pending) >= batch_size:
                score(pending)
                pending = []
                yield VideoProgress("score", len(frames), len(times), t, f"scored up to {t:.1f} s", frames)
        if pending:
            score(pending)
            pending = []
            yield VideoProgress("score", len(frames), len(times), last_t, f"scored up to {last_t:.1f} s", frames)
        codec = _fourcc(cap)
    finally:
        cap.release()

    if decoded == 0:
        raise InputError(f"No frame of {path.name} could be decoded (codec {codec!r}): the data is corrupt or the "
                         "codec is not supported by this server's decoder. Re-encode it as H.264 or MPEG-4 in an "
                         "MP4 and upload again.", "no_frames")
    if j < len(times) and duration:
        notes.append(f"Decoding stopped at {last_t:.1f} s of {duration:.1f} s (the file may be truncated or "
                     f"corrupt): {len(frames)} of {len(times)} planned frames were sampled.")
    scored = [f for f in frames if f.p_fake is not None]
    if not scored:
        raise NoFaceError(f"No face found in any of the {len(frames)} sampled frames of {path.name}. The detectors "
                          "need a visible, roughly frontal face.")
    p_clip, k = aggregate([f.logit for f in scored])  # type: ignore[misc]
    n_multi = sum(f.n_faces > 1 for f in frames)
    if n_multi:
        notes.append(f"Several faces in {n_multi} of {len(frames)} sampled frames: the main (tracked) face was "
                     "scored in each.")
    if tracker.n_tracks > 1:
        notes.append(f"The main face changed {tracker.n_tracks - 1} time(s) (see the track events); frames of "
                     "every track count in the aggregate.")
    missing = len(frames) - len(scored)
    if missing:
        notes.append(f"{missing} of {len(frames)} sampled frames had no face (or could not be decoded) and are "
                     "not scored.")
    timings["total"] = time.perf_counter() - t_start
    yield VideoResult(name=path.name, model=spec.name, weights=lm.source, duration=duration, video_fps=video_fps,
                      sample_fps=fps, max_frames=max_frames, rotation=rotation, frames=frames, p_fake=p_clip,
                      verdict=frame_verdict(p_clip, band), k=k, band=band, events=list(tracker.events),
                      notes=notes + list(lm.notes), timings=timings, suspicious=best)


def analyze_video(path: VideoSource, model_name: str = "custom_cnn", fps: float = DEFAULT_FPS,
                  max_frames: int = DEFAULT_MAX_FRAMES, progress: Callable[[VideoProgress], None] | None = None,
                  **kwargs: Any) -> VideoResult:
    """Analyse a clip and return its :class:`VideoResult`; ``progress`` (optional) receives each
    :class:`VideoProgress`. Other keyword arguments go to :func:`iter_analyze_video`."""
    for ev in iter_analyze_video(path, model_name, fps, max_frames, **kwargs):
        if isinstance(ev, VideoResult):
            return ev
        if progress is not None:
            progress(ev)
    raise RuntimeError("iter_analyze_video ended without a result")  # not reached: it yields one or raises


def face_strip(result: VideoResult) -> list[tuple[np.ndarray, str]]:
    """The scored face crops in time order with captions (``"3.5 s · p(fake) 0.82 · fake"``), as a gallery takes
    them. Each crop is the aligned face the detector saw, before CLAHE."""
    return [(f.crop, f"{f.t:.1f} s · p(fake) {f.p_fake:.2f} · {f.verdict}")
            for f in result.frames if f.crop is not None and f.p_fake is not None]


def most_suspicious(result: VideoResult) -> SuspiciousFrame | None:
    """The full frame with the highest ``p_fake`` (RGB, upright) and its time, for the image explanation panel;
    None when nothing was scored."""
    return result.suspicious


def frame_at(path: str | Path, t: float) -> np.ndarray:
    """The upright RGB frame shown at ``t`` seconds (the first frame whose timestamp is >= ``t`` less half a frame),
    decoding from the start, as the analysis does; for a frame the user picks on the timeline."""
    import cv2

    path = Path(path)
    info = _check_file(path, 2 ** 62)
    cap = _open(path, info)
    try:
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META))) % 360
        rotate_here = rotation and not cap.get(cv2.CAP_PROP_ORIENTATION_AUTO)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        tol = 0.5 / fps if fps > 0 else 0.0
        while cap.grab():
            if cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 >= t - tol:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    return cv2.cvtColor(rotate_frame(bgr, rotation) if rotate_here else bgr, cv2.COLOR_BGR2RGB)
                break
    finally:
        cap.release()
    raise InputError(f"No frame at {t:.2f} s in {path.name}.", "no_frames")


# --- CLI -----------------------------------------------------------------------------------------------------

def _print_progress(ev: VideoProgress) -> None:
    if ev.stage != "detect" or ev.done == ev.total or ev.done % 8 == 0:
        print(f"[{ev.stage}] {ev.message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0 analysed, 1 the file could not be analysed, 2 usage/weights."""
    from .specs import get_spec

    ap = argparse.ArgumentParser(prog="python -m detector.video", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", metavar="PATH", help="video file (MP4, MOV, WebM, MKV, AVI)")
    ap.add_argument("--model", default="custom_cnn", help="detector name (default: custom_cnn)")
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"sampled frames per second ({DEFAULT_FPS:g})")
    ap.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                    help=f"most frames sampled, spread over the clip ({DEFAULT_MAX_FRAMES})")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    try:
        get_spec(args.model)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if not args.fps > 0 or args.max_frames < 1:
        print("error: --fps must be > 0 and --max-frames >= 1", file=sys.stderr)
        return 2
    try:
        res = analyze_video(args.path, args.model, args.fps, args.max_frames, device=args.device,
                            progress=None if args.quiet else _print_progress)
    except WeightsError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except DetectorError as e:
        if args.json:
            print(json.dumps({"name": Path(args.path).name, "model": args.model, "error": e.message,
                              "code": getattr(e, "code", "error")}))
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res.to_json()))
        return 0
    print(f"{res.name}: {res.verdict.upper()} p_fake={res.p_fake:.3f} ({res.model}, top {res.k} of "
          f"{len(res.scored)} scored frames)")
    for f in res.frames:
        score = f"p_fake={f.p_fake:.3f} {f.verdict}" if f.p_fake is not None else f"- {f.error}"
        print(f"  {f.t:7.2f} s  {score}")
    for line in [e.message for e in res.events] + res.notes:
        print(f"  note: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
