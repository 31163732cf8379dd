"""Preprocessing shared by training and inference.

Stages: :func:`load_image` (decode, EXIF orientation, any mode to RGB, pixel limit)
-> :func:`detect_faces_full` (YuNet, ``models/face_detection_yunet_2023mar.onnx``, through
``cv2.FaceDetectorYN``) -> :func:`align_face` (landmarks refined, eyes levelled, square crop
framed like the training crops) -> resize to the detector's input -> optional augmentation
(training only) -> :func:`apply_clahe` (L channel of LAB) -> normalise.

:func:`prepare_face` runs the deterministic stages up to the resize, and
:func:`finish` runs augmentation, CLAHE and normalisation. :func:`preprocess` is the
two together; training calls the same two functions with an ``augment`` callable.

Face detection, measured with ``python -m detector.facestats --data ../shared/datasets/faces
--split val`` (2,956 dfdc + 219 gan140k validation crops; 22 scikit-image images without a
human face):

- Faces found at score threshold 0.65: dfdc 99.63% (real 100%, fake 99.26%; 99.46% without the
  grey-padded retry), gan140k 100%. At 0.6 / 0.7 / 0.8: dfdc 99.76% / 99.36% / 98.31%. All 11 misses are
  dfdc fakes; the 6 inspected are badly blended. No face is reported on any of the 22 non-face images; their highest
  score is 0.505 (moon). Both targets (>= 99% found, 0 false faces) hold from 0.6 to 0.7; 0.65
  keeps a margin of 0.15 above the worst non-face score. (A 20-degree tilt or a face of 90 px
  still scores > 0.9.)
- Framing: YuNet's box on the dataset crops, measured upright after refinement, gives crop side /
  face box side 0.824 for dfdc (tight crops that cut the forehead and chin) and 1.328 for gan140k
  (FFHQ-style), and the crop centre 0.043 and -0.076 box sides below the face centre. A crop from
  a full photo uses the geometric mean of the scales, 1.05 (:data:`FACE_CROP_SCALE`), and the mean
  shift, -0.02 (:data:`FACE_CROP_SHIFT`), between the two sources' framing, as before.
- Alignment: YuNet's landmarks barely follow in-plane rotation for faces under ~150 px (astronaut
  tilted by 20 degrees reads as 2), so :func:`face_frame` re-detects on an upright close-up where
  the face is ~240 px. Recovered tilt on 21 faces (astronaut + 10 val crops per source, ``--limit
  10``) rotated by +-10/20/30 degrees: mean error 1.7, p90 3.7, max 6.7 degrees. Eye angle of the
  dataset crops: dfdc median 4.4 degrees, > 10 degrees in 16.3%, > 20 degrees in 1.6%; gan140k
  median 1.8 degrees, > 10 degrees in 0.5%.
- Cost: see the README ("Face detection"); detection runs on a copy shrunk to 320 px.
"""
from __future__ import annotations

import hashlib
import io
import math
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, ImageSequence, UnidentifiedImageError

from .errors import InputError, NoFaceError, WeightsError
from .specs import ModelSpec

__all__ = [
    "CLAHE_CLIP_LIMIT", "CLAHE_TILE_GRID", "DETECT_FALLBACK_SIDE", "DETECT_MAX_SIDE", "FACE_CROP_SCALE", "FACE_CROP_SHIFT",
    "FACE_SCORE_THRESHOLD", "MAX_PIXELS", "YUNET_PATH", "YUNET_SHA256", "Face", "FaceFrame", "ImageSource",
    "LoadedImage", "Preprocessed", "load_image", "detect_faces_full", "detect_faces", "detect_face", "face_frame",
    "align_face", "level_eyes", "crop_face", "pad_for_detection", "center_square", "resize", "apply_clahe",
    "normalize", "prepare_face", "finish", "preprocess",
]

#: CLAHE settings, defined once for training and inference.
CLAHE_CLIP_LIMIT: float = 2.0
CLAHE_TILE_GRID: tuple[int, int] = (8, 8)

#: YuNet score threshold: lowest score reported as a face. See the module docstring for the evidence.
FACE_SCORE_THRESHOLD: float = 0.65
#: YuNet's non-maximum-suppression IoU threshold (OpenCV's default).
FACE_NMS_THRESHOLD: float = 0.3
#: Longer side an image is shrunk to before detection (only for finding faces; crops use full resolution).
DETECT_MAX_SIDE: int = 320
#: When nothing is found in a larger image, detection is retried once at this longer side (small faces).
DETECT_FALLBACK_SIDE: int = 640
#: Grey border added around the image for the retry when no face is found (fraction of the longer side).
FACE_DETECT_PAD: float = 0.25
#: Side of the aligned square crop as a multiple of the upright face box side (see the module docstring).
FACE_CROP_SCALE: float = 1.05
#: Crop centre below the face box centre, in face box sides (negative: above).
FACE_CROP_SHIFT: float = -0.02
#: Landmark refinement (:func:`face_frame`): canvas side in px, canvas side / face box side, passes,
#: stop when the residual eye angle is below this many degrees, score threshold on the close-up.
REFINE_SIZE: int = 320
REFINE_CONTEXT: float = 1.33
REFINE_PASSES: int = 2
REFINE_TOLERANCE: float = 2.0
REFINE_SCORE_THRESHOLD: float = 0.3

#: Default largest number of pixels we decode (decompression-bomb guard); the limit in force
#: is ``detector.settings.current().max_pixels`` (``DEEPFAKE_MAX_PIXELS``), read when an
#: image is loaded, not at import.
MAX_PIXELS: int = 40_000_000


def _max_pixels() -> int:
    from .settings import current

    return int(current().max_pixels)

ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]


@dataclass
class LoadedImage:
    """An RGB image plus what was done to get there (shown to the user)."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)


@dataclass
class Preprocessed:
    """Model input and the images the app shows."""

    tensor: "object"  #: torch.Tensor (1, 3, H, W), normalised
    face: np.ndarray  #: uint8 RGB (H, W, 3) after CLAHE: exactly what the model saw
    face_raw: np.ndarray  #: uint8 RGB (H, W, 3) before CLAHE
    box: tuple[int, int, int, int] | None  #: face box (x, y, w, h) in the oriented image, None if whole image
    notes: list[str] = field(default_factory=list)


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise InputError(f"Array of shape {arr.shape} is not an image.", "not_image")
        if arr.dtype != np.uint8:
            arr = _to_uint8(arr.astype(np.float64))
        return Image.fromarray(arr)
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise InputError("The file is empty (0 bytes).", "empty")
        fp: object = io.BytesIO(source)
        name = "upload"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"File not found: {path.name}", "not_found")
        if path.stat().st_size == 0:
            raise InputError("The file is empty (0 bytes).", "empty")
        fp = path
        name = path.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)  # lazy: reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(_too_big_msg(None), "too_large") from None
    except UnidentifiedImageError:
        head = source[:8] if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()[:8]
        kind = _sniff(head)
        raise InputError(f"{name} is not an image{kind}. Upload a JPEG, PNG, WebP, BMP or GIF photo.",
                         "not_image") from None
    except OSError as e:
        raise InputError(f"Could not read {name} as an image ({e}).", "not_image") from None


def _sniff(head: bytes) -> str:
    if head.startswith(b"%PDF"):
        return " (it looks like a PDF document)"
    if head.startswith(b"PK"):
        return " (it looks like a zip archive)"
    if head.lstrip().startswith(b"<"):
        return " (it looks like SVG/HTML/XML text; vector images are not accepted)"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return " (it looks like a text file)"
    return ""


def _too_big_msg(size: tuple[int, int] | None) -> str:
    dims = f" ({size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP)" if size else ""
    return (f"Image too large{dims}: the limit is {_max_pixels() / 1e6:.0f} megapixels. "
            "Resize it and upload again.")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.nan_to_num(arr.astype(np.float64))
    hi = arr.max() if arr.size else 0
    if hi <= 1.0 and arr.min() >= 0:
        arr = arr * 255.0
    elif hi > 255:
        arr = arr / (65535.0 if hi <= 65535 else hi) * 255.0
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def load_image(source: ImageSource, max_pixels: int | None = None) -> LoadedImage:
    """Decode ``source`` to an RGB PIL image, applying EXIF orientation.

    Handles grayscale, palette, alpha (flattened onto white), CMYK, 16-bit and float
    images, and animated GIF/WebP (first frame). Raises :class:`InputError` with a
    user-facing message for anything that is not a readable image, is truncated or is
    larger than ``max_pixels``.
    """
    limit = _max_pixels() if max_pixels is None else max_pixels
    img = _open(source)
    notes: list[str] = []
    w, h = img.size
    if w * h > limit:
        raise InputError(_too_big_msg((w, h)), "too_large")
    if w < 16 or h < 16:
        raise InputError(f"Image is only {w}x{h} pixels; at least 16x16 is needed (64x64 or more for a useful result).",
                         "too_small")
    n_frames = getattr(img, "n_frames", 1)
    if n_frames > 1:
        notes.append(f"Animated image with {n_frames} frames: only the first frame was analysed.")
        img = next(iter(ImageSequence.Iterator(img)))
    try:
        old = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower() or "broken" in msg.lower() or "premature" in msg.lower():
            raise InputError("The image file is truncated or corrupt (incomplete download?). Upload the complete file.",
                             "truncated") from None
        raise InputError(f"The image could not be decoded ({msg}).", "corrupt") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF: keep the pixels as stored
        oriented, notes = img, notes + ["The EXIF orientation tag could not be read; the image is used as stored."]
    if oriented is not img and oriented.size != img.size or _exif_orientation(img) not in (None, 1):
        notes.append("Rotated according to the photo's EXIF orientation.")
    img = oriented
    img = _to_rgb(img, notes)
    return LoadedImage(img, notes)


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:
        return None


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        notes.append(f"High bit-depth image ({mode}) scaled to 8 bits per channel.")
        g = _to_uint8(arr)
        return Image.fromarray(np.stack([g] * 3, -1))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notes.append("Transparent areas were flattened onto white.")
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode in ("L", "1"):
        notes.append("Grayscale image: the detectors were trained on colour photos, so treat the result with care.")
    elif mode == "CMYK":
        notes.append("CMYK image converted to RGB.")
    return img.convert("RGB")


_REPO_ROOT = Path(__file__).resolve().parent.parent
#: YuNet (Wu, Peng, Yu 2023; MIT licence, see ``models/README.md``), run by ``cv2.FaceDetectorYN``.
YUNET_PATH: Path = _REPO_ROOT / "models" / "face_detection_yunet_2023mar.onnx"
YUNET_SHA256: str = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

_yunet_bytes: bytes | None = None
_yunet_lock = threading.Lock()
_local = threading.local()


def _model_bytes() -> bytes:
    """The YuNet ONNX file, read and sha256-checked once per process."""
    global _yunet_bytes
    with _yunet_lock:
        if _yunet_bytes is None:
            path = Path(YUNET_PATH)
            if not path.is_file():
                raise WeightsError(f"The face detector model is missing: {path} (it ships with the repository in "
                                   "models/; restore it with git checkout models/).")
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != YUNET_SHA256:
                raise WeightsError(f"The face detector model {path.name} is corrupt or was replaced: sha256 {digest}, "
                                   f"expected {YUNET_SHA256}. Restore it with git checkout models/.")
            _yunet_bytes = data
        return _yunet_bytes


def _detector():
    """This thread's ``cv2.FaceDetectorYN`` (it is stateful: input size and threshold are set per call)."""
    data = _model_bytes()
    det = getattr(_local, "det", None)
    if det is None or getattr(_local, "src", None) is not data:
        import cv2

        buf = np.frombuffer(data, np.uint8)
        det = cv2.FaceDetectorYN.create("onnx", buf, np.zeros(0, np.uint8), (320, 320), FACE_SCORE_THRESHOLD,
                                        FACE_NMS_THRESHOLD, 5000)
        _local.det, _local.src = det, data
    return det


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the image it was detected in.

    ``landmarks`` are YuNet's five points in its order: the subject's right eye (image left in
    a frontal photo), left eye, nose tip, right mouth corner, left mouth corner.
    """

    box: tuple[int, int, int, int]  #: (x, y, w, h); may extend past the image for tight crops
    landmarks: tuple[tuple[float, float], ...]  #: 5 (x, y) points
    score: float  #: YuNet's confidence, 0..1

    @property
    def eye_angle(self) -> float:
        """Angle of the line from the right to the left eye, degrees (positive: tilted clockwise)."""
        (rx, ry), (lx, ly) = self.landmarks[0], self.landmarks[1]
        return math.degrees(math.atan2(ly - ry, lx - rx))


@dataclass(frozen=True)
class FaceFrame:
    """Where a face is once its landmarks are refined: centre, upright box side and in-plane angle."""

    center: tuple[float, float]  #: face box centre (x, y) in image coordinates
    size: float  #: side of the face box (its larger side) measured with the eyes level, pixels
    angle: float  #: eye-line angle in degrees; rotating the image by it about ``center`` levels the eyes


def _yunet(rgb: np.ndarray, score_threshold: float) -> list[Face]:
    """Run YuNet once on an RGB image (any size >= 1 px); faces in that image's coordinates."""
    import cv2

    h, w = rgb.shape[:2]
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if h < 32 or w < 32:  # the network needs a few strides of input
        bgr = cv2.copyMakeBorder(bgr, 0, max(0, 32 - h), 0, max(0, 32 - w), cv2.BORDER_CONSTANT, value=(127,) * 3)
    det = _detector()
    det.setInputSize((bgr.shape[1], bgr.shape[0]))
    det.setScoreThreshold(float(score_threshold))
    _, found = det.detect(bgr)
    faces = []
    for row in [] if found is None else found:
        x, y, bw, bh = (float(v) for v in row[:4])
        pts = tuple((float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5))
        faces.append(Face((int(round(x)), int(round(y)), int(round(bw)), int(round(bh))), pts, float(row[14])))
    return faces


def _scaled(face: Face, scale: float, dx: float = 0.0, dy: float = 0.0) -> Face:
    x, y, w, h = face.box
    box = (int(round(x / scale + dx)), int(round(y / scale + dy)), int(round(w / scale)), int(round(h / scale)))
    pts = tuple((px / scale + dx, py / scale + dy) for px, py in face.landmarks)
    return Face(box, pts, face.score)


def _detect_once(rgb: np.ndarray, max_side: int, score_threshold: float) -> list[Face]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = rgb
    if scale < 1.0:
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return [_scaled(f, scale) if scale < 1.0 else f for f in _yunet(small, score_threshold)]


def pad_for_detection(rgb: np.ndarray, frac: float = FACE_DETECT_PAD) -> tuple[np.ndarray, int]:
    """The image with a grey border of ``frac`` x its longer side on every edge, and that border's width."""
    import cv2

    p = int(round(frac * max(rgb.shape[:2])))
    return cv2.copyMakeBorder(np.ascontiguousarray(rgb), p, p, p, p, cv2.BORDER_CONSTANT, value=(127, 127, 127)), p


def detect_faces_full(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE, score_threshold: float | None = None,
                      retry_padded: bool = True) -> list[Face]:
    """All faces YuNet finds with a score >= ``score_threshold`` (default :data:`FACE_SCORE_THRESHOLD`), largest first.

    The image is shrunk to ``max_side`` for detection (coordinates are returned in the full
    image). If nothing is found: a larger image is searched again at :data:`DETECT_FALLBACK_SIDE`
    (small faces), then, with ``retry_padded``, a grey-padded copy (tight crops whose face
    touches the border); boxes may then extend past the image.
    """
    thr = FACE_SCORE_THRESHOLD if score_threshold is None else score_threshold
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"Face detection needs a uint8 RGB image, got {rgb.dtype} {rgb.shape}.", "not_image")
    faces = _detect_once(rgb, max_side, thr)
    if not faces and max(rgb.shape[:2]) > max_side and DETECT_FALLBACK_SIDE > max_side:
        faces = _detect_once(rgb, DETECT_FALLBACK_SIDE, thr)
    if not faces and retry_padded:
        padded, p = pad_for_detection(rgb)
        faces = [_scaled(f, 1.0, -p, -p) for f in _detect_once(padded, max_side, thr)]
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def detect_faces(rgb: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> list[tuple[int, int, int, int]]:
    """All face boxes (x, y, w, h), largest first; see :func:`detect_faces_full`."""
    return [f.box for f in detect_faces_full(rgb, max_side)]


def detect_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest face box (x, y, w, h), or ``None``. Several faces: the largest is used."""
    faces = detect_faces(rgb)
    return faces[0] if faces else None


def _canvas_matrix(center: tuple[float, float], angle: float, scale: float, out_size: int,
                   down: float = 0.0) -> np.ndarray:
    """Affine map: rotate by ``angle`` about ``center``, scale, and put ``center`` (+ ``down`` px along
    the face's vertical axis, in output pixels) at the middle of an ``out_size`` square."""
    import cv2

    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), float(scale))
    m[0, 2] += out_size / 2.0 - center[0]
    m[1, 2] += out_size / 2.0 - center[1] - down
    return m


def face_frame(rgb: np.ndarray, face: Face) -> FaceFrame:
    """Refine a detection's centre, size and eye angle by re-detecting on an upright close-up.

    YuNet's landmarks hardly follow in-plane rotation on faces smaller than about 150 px
    (a 20-degree tilt of ``skimage.data.astronaut()``, face 90 px, reads as 2 degrees). So the
    face is resampled into a :data:`REFINE_SIZE` square where it is ~240 px, rotated by the current
    angle estimate, and detected again; the residual eye angle is added, up to :data:`REFINE_PASSES`
    times (stopping once the residual is below :data:`REFINE_TOLERANCE` degrees).
    """
    x, y, w, h = face.box
    center = (x + w / 2.0, y + h / 2.0)
    size = float(max(w, h, 1))
    angle = face.eye_angle
    for _ in range(REFINE_PASSES):
        scale = REFINE_SIZE / (REFINE_CONTEXT * size)
        m = _canvas_matrix(center, angle, scale, REFINE_SIZE)
        import cv2

        canvas = cv2.warpAffine(np.ascontiguousarray(rgb), m, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        found = _yunet(canvas, REFINE_SCORE_THRESHOLD)
        if not found:
            break
        mid = REFINE_SIZE / 2.0
        f = min(found, key=lambda c: (c.box[0] + c.box[2] / 2 - mid) ** 2 + (c.box[1] + c.box[3] / 2 - mid) ** 2)
        fx, fy = f.box[0] + f.box[2] / 2.0, f.box[1] + f.box[3] / 2.0
        inv = cv2.invertAffineTransform(m)
        center = (float(inv[0, 0] * fx + inv[0, 1] * fy + inv[0, 2]), float(inv[1, 0] * fx + inv[1, 1] * fy + inv[1, 2]))
        size = max(f.box[2], f.box[3], 1) / scale
        residual = f.eye_angle
        angle += residual
        if abs(residual) < REFINE_TOLERANCE:
            break
    return FaceFrame(center, size, angle)


def align_face(rgb: np.ndarray, face: Face, out_scale: float = FACE_CROP_SCALE, shift: float = FACE_CROP_SHIFT,
               frame: FaceFrame | None = None) -> np.ndarray:
    """Square crop with the eyes level, framed like the training crops.

    The image is rotated about the face centre (:func:`face_frame`) so the eye line is
    horizontal; the crop side is ``out_scale`` x the upright face box side and its centre lies
    ``shift`` box sides below the face centre (negative: above). Areas outside the image are
    filled by edge replication. The crop keeps the photo's resolution; resize it afterwards.
    """
    import cv2

    fr = frame or face_frame(rgb, face)
    side = max(1, int(round(out_scale * fr.size)))
    m = _canvas_matrix(fr.center, fr.angle, 1.0, side, down=shift * fr.size)
    return cv2.warpAffine(np.ascontiguousarray(rgb), m, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def level_eyes(rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Rotate an already-cropped face image about its centre so the eyes are level, same size.

    For the dataset's own crops (``prepare_face(..., face_crop=False, align=True)``): the
    framing is kept, only the in-plane tilt is removed. Returns (image, angle), angle ``None``
    (image unchanged) when no face is found.
    """
    import cv2

    faces = detect_faces_full(rgb)
    if not faces:
        return rgb, None
    angle = face_frame(rgb, faces[0]).angle
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    out = cv2.warpAffine(np.ascontiguousarray(rgb), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, angle


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], scale: float = FACE_CROP_SCALE) -> np.ndarray:
    """Square crop of side ``scale`` x the box's larger side, no rotation, padded by edge replication.

    :func:`align_face` is what the pipeline uses; this box-only crop is kept for callers
    that have just a box.
    """
    x, y, w, h = box
    size = max(w, h)
    side = max(1, int(round(size * scale)))
    cx = x + w / 2.0
    cy = y + h / 2.0 + FACE_CROP_SHIFT * size
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    H, W = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0 += pad
        y0 += pad
    return np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])


def center_square(rgb: np.ndarray) -> np.ndarray:
    """Central square crop (whole-image mode keeps the aspect ratio of faces)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(rgb[y0:y0 + s, x0:x0 + s])


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (area interpolation when shrinking)."""
    import cv2

    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


def apply_clahe(rgb: np.ndarray, clip_limit: float = CLAHE_CLIP_LIMIT,
                tile_grid: tuple[int, int] = CLAHE_TILE_GRID) -> np.ndarray:
    """CLAHE on the L channel of LAB; colour (a, b) is left unchanged."""
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def normalize(rgb: np.ndarray, spec: ModelSpec):
    """uint8 HWC RGB -> float tensor (1, 3, H, W) normalised with the spec's mean/std."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def prepare_face(source: ImageSource | LoadedImage, spec: ModelSpec, face_crop: bool = True, *, align: bool = False
                 ) -> tuple[np.ndarray, tuple[int, int, int, int] | None, list[str]]:
    """Deterministic stages: load, face crop (or centre square), resize. Returns (rgb, box, notes).

    ``face_crop=True``: YuNet detection, the largest face is rotated so the eyes are level and
    cropped by :func:`align_face` (several faces are reported in ``notes``); no face raises
    :class:`NoFaceError`. ``face_crop=False``: the central square, as is; with ``align=True``
    it is also rotated about its centre to level the eyes (:func:`level_eyes`; for the
    dataset's own crops, whose framing is kept).
    """
    loaded = source if isinstance(source, LoadedImage) else load_image(source)
    rgb = np.asarray(loaded.image)
    notes = list(loaded.notes)
    box = None
    if face_crop:
        faces = detect_faces_full(rgb)
        if not faces:
            raise NoFaceError()
        box = faces[0].box
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found: the largest one was analysed.")
        crop = align_face(rgb, faces[0])
    else:
        crop = center_square(rgb)
        if rgb.shape[0] != rgb.shape[1]:
            notes.append("Whole-image mode: the central square of the image was analysed.")
        if align:
            crop, _ = level_eyes(crop)
    return resize(crop, spec.input_size), box, notes


def finish(face_rgb: np.ndarray, spec: ModelSpec, augment: Callable[[np.ndarray], np.ndarray] | None = None):
    """Optional augmentation, then CLAHE and normalisation. Returns (tensor, clahe_rgb)."""
    if augment is not None:
        face_rgb = augment(face_rgb)
    enhanced = apply_clahe(face_rgb)
    return normalize(enhanced, spec), enhanced


def preprocess(source: ImageSource | LoadedImage, spec: ModelSpec, face_crop: bool = True, *,
               align: bool = False) -> Preprocessed:
    """The whole inference pipeline for one image; see the module docstring (``align``: see
    :func:`prepare_face`)."""
    face_raw, box, notes = prepare_face(source, spec, face_crop, align=align)
    tensor, face = finish(face_raw, spec)
    return Preprocessed(tensor=tensor, face=face, face_raw=face_raw, box=box, notes=notes)
