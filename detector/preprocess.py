"""Preprocessing shared by training and inference.

Stages: :func:`load_image` (decode, EXIF orientation, any mode to RGB, pixel limit)
-> :func:`detect_face` / :func:`crop_face` (Haar cascade shipped inside OpenCV, margin
matched to the training crops) -> resize to the detector's input -> optional
augmentation (training only) -> :func:`apply_clahe` (L channel of LAB) -> normalise.

:func:`prepare_face` runs the deterministic stages up to the resize, and
:func:`finish` runs augmentation, CLAHE and normalisation. :func:`preprocess` is the
two together; training calls the same two functions with an ``augment`` callable.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, ImageSequence, UnidentifiedImageError

from .errors import InputError, NoFaceError
from .specs import ModelSpec

__all__ = [
    "CLAHE_CLIP_LIMIT", "CLAHE_TILE_GRID", "FACE_CROP_SCALE", "MAX_PIXELS", "ImageSource",
    "LoadedImage", "Preprocessed", "load_image", "detect_face", "detect_faces", "crop_face", "center_square", "resize", "apply_clahe",
    "normalize", "prepare_face", "finish", "preprocess",
]

#: CLAHE settings, defined once for training and inference.
CLAHE_CLIP_LIMIT: float = 2.0
CLAHE_TILE_GRID: tuple[int, int] = (8, 8)

#: Side of the square face crop as a multiple of the Haar face box side. Set from
#: ``python -m detector.facestats --data ../shared/datasets/faces --split val``: the
#: dataset's own crops measure a median image/box side ratio of 1.01 (dfdc, tight crops)
#: and 1.47 (gan140k); 1.2 sits between the two (their geometric mean, 1.22), so crops
#: from full photos are framed like the training crops.
FACE_CROP_SCALE: float = 1.2
#: Grey border added around the image before face detection (fraction of the longer side).
FACE_DETECT_PAD: float = 0.25
#: Vertical shift of the crop centre, as a fraction of the box side (Haar boxes sit high).
FACE_CROP_SHIFT: float = 0.05

#: Largest number of pixels we decode (decompression-bomb guard). Override with
#: ``DEEPFAKE_MAX_PIXELS``.
MAX_PIXELS: int = int(os.environ.get("DEEPFAKE_MAX_PIXELS", 40_000_000))

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
    return (f"Image too large{dims}: the limit is {MAX_PIXELS / 1e6:.0f} megapixels. "
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
    limit = MAX_PIXELS if max_pixels is None else max_pixels
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


_CASCADES: list = []


def _cascades() -> list:
    if not _CASCADES:
        import cv2

        for fname in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
            c = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, fname))
            if c.empty():
                raise RuntimeError(f"OpenCV Haar cascade {fname} is missing (is opencv-python-headless<5 installed?)")
            _CASCADES.append(c)
    return _CASCADES


def _haar(rgb: np.ndarray, max_side: int) -> list[tuple[int, int, int, int]]:
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_size = max(20, int(min(gray.shape) * 0.08))
    for cascade in _cascades():
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
        if len(found):
            return [tuple(int(round(v / scale)) for v in f) for f in found]
    return []


def detect_faces(rgb: np.ndarray, max_side: int = 640) -> list[tuple[int, int, int, int]]:
    """All face boxes (x, y, w, h), largest first, found by OpenCV's Haar cascades.

    If nothing is found, detection is retried on the image padded by 25% with grey: in
    tight face crops the face touches the border and the cascade misses it (dfdc val
    found rate 28% without the retry, 82% with it; see README). Boxes may then extend past the image;
    :func:`crop_face` pads as needed.
    """
    import cv2

    faces = _haar(rgb, max_side)
    if not faces:
        p = int(round(FACE_DETECT_PAD * max(rgb.shape[:2])))
        padded = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_CONSTANT, value=(127, 127, 127))
        faces = [(x - p, y - p, bw, bh) for x, y, bw, bh in _haar(padded, max_side)]
    return sorted(faces, key=lambda b: b[2] * b[3], reverse=True)


def detect_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest face box (x, y, w, h), or ``None``. Several faces: the largest is used."""
    faces = detect_faces(rgb)
    return faces[0] if faces else None


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], scale: float = FACE_CROP_SCALE) -> np.ndarray:
    """Square crop of side ``scale * box side`` around the box, padded by edge replication."""
    x, y, w, h = box
    side = int(round(max(w, h) * scale))
    cx = x + w / 2.0
    cy = y + h / 2.0 + FACE_CROP_SHIFT * h
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


def prepare_face(source: ImageSource | LoadedImage, spec: ModelSpec, face_crop: bool = True
                 ) -> tuple[np.ndarray, tuple[int, int, int, int] | None, list[str]]:
    """Deterministic stages: load, face crop (or centre square), resize. Returns (rgb, box, notes)."""
    loaded = source if isinstance(source, LoadedImage) else load_image(source)
    rgb = np.asarray(loaded.image)
    notes = list(loaded.notes)
    box = None
    if face_crop:
        faces = detect_faces(rgb)
        if not faces:
            raise NoFaceError()
        box = faces[0]
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found: the largest one was analysed.")
        crop = crop_face(rgb, box)
    else:
        crop = center_square(rgb)
        if rgb.shape[0] != rgb.shape[1]:
            notes.append("Whole-image mode: the central square of the image was analysed.")
    return resize(crop, spec.input_size), box, notes


def finish(face_rgb: np.ndarray, spec: ModelSpec, augment: Callable[[np.ndarray], np.ndarray] | None = None):
    """Optional augmentation, then CLAHE and normalisation. Returns (tensor, clahe_rgb)."""
    if augment is not None:
        face_rgb = augment(face_rgb)
    enhanced = apply_clahe(face_rgb)
    return normalize(enhanced, spec), enhanced


def preprocess(source: ImageSource | LoadedImage, spec: ModelSpec, face_crop: bool = True) -> Preprocessed:
    """The whole inference pipeline for one image; see the module docstring."""
    face_raw, box, notes = prepare_face(source, spec, face_crop)
    tensor, face = finish(face_raw, spec)
    return Preprocessed(tensor=tensor, face=face, face_raw=face_raw, box=box, notes=notes)
