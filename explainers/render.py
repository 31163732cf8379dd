"""Overlays of attribution maps on the face, with a colour bar and a legend (numpy + PIL).

Signed maps use a diverging blue-white-red scale, symmetric around 0 and scaled by the
99th percentile of ``|map|`` (robust to a few extreme pixels): red = evidence toward the
target label, blue = against it (toward the other label); the bar is labelled in those words. Unsigned maps use a sequential black-red-yellow scale
from 0 to the 99th percentile. The map is blended over the face with an opacity that
grows with the magnitude, so unimportant areas keep showing the face. Rendering takes a
few milliseconds (no matplotlib).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["overlay", "grid", "save_map_npy", "colorize", "robust_scale"]

# ColorBrewer RdBu (11 classes), blue -> white -> red.
_DIVERGING = np.array([(5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
                       (247, 247, 247), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43),
                       (103, 0, 31)], np.float32)
# Black-body style sequential scale (dark -> red -> yellow -> white).
_SEQUENTIAL = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                        (245, 125, 21), (250, 193, 39), (252, 255, 164)], np.float32)
_LUTS: dict[str, np.ndarray] = {}
_FONTS: dict[int, object] = {}


def _lut(signed: bool) -> np.ndarray:
    key = "div" if signed else "seq"
    if key not in _LUTS:
        anchors = _DIVERGING if signed else _SEQUENTIAL
        pos = np.linspace(0, 1, len(anchors))
        t = np.linspace(0, 1, 256)
        _LUTS[key] = np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], 1).astype(np.uint8)
    return _LUTS[key]


def _font(size: int):
    if size not in _FONTS:
        from PIL import ImageFont

        try:
            _FONTS[size] = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: fixed-size bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def robust_scale(attr: np.ndarray, signed: bool) -> float:
    """99th percentile of |map| (signed) or of the map (unsigned); never 0."""
    a = np.abs(attr) if signed else np.clip(attr, 0, None)
    s = float(np.percentile(a, 99)) if a.size else 0.0
    if not np.isfinite(s) or s <= 0:
        s = float(a.max()) if a.size and np.isfinite(a.max()) and a.max() > 0 else 1.0
    return s


def colorize(attr: np.ndarray, signed: bool, scale: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(rgb uint8, magnitude in [0, 1], scale) for a 2-D map."""
    a = np.nan_to_num(np.asarray(attr, np.float32))
    s = robust_scale(a, signed) if scale is None else float(scale)
    if signed:
        v = np.clip(a / s, -1, 1)
        idx = np.round((v + 1) * 127.5).astype(np.int32)
        mag = np.abs(v)
    else:
        v = np.clip(a / s, 0, 1)
        idx = np.round(v * 255).astype(np.int32)
        mag = v
    return _lut(signed)[idx], mag, s


def _resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    if img.shape[:2] == (size[1], size[0]):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def _other(label: str) -> str:
    """The other class of the two ("fake" <-> "real"), for the bar's blue end."""
    return {"fake": "real", "real": "fake"}.get(label, "other classes")


def overlay(face: np.ndarray, attr: np.ndarray, signed: bool, alpha: float = 0.55, title: str | None = None,
            target_label: str | None = None, min_side: int = 224) -> np.ndarray:
    """The map blended over the face, with a colour bar and legend below (uint8 RGB).

    The face is upscaled (integer factor) to at least ``min_side`` pixels so the legend is
    readable; the map is resized to the face. ``target_label`` names the explained class in
    the legend ("toward fake" / "against fake").
    """
    from PIL import Image, ImageDraw

    face = np.asarray(face)
    if face.ndim == 2:
        face = np.repeat(face[..., None], 3, axis=2)
    face = face[..., :3].astype(np.uint8)
    h, w = face.shape[:2]
    f = max(1, int(np.ceil(min_side / max(w, 1))))
    W, H = w * f, h * f
    face_big = _resize(face, (W, H))
    a = np.asarray(attr, np.float32)
    if a.shape != (H, W):
        a = _resize(a, (W, H))
    rgb, mag, scale = colorize(a, signed)
    op = (alpha * np.sqrt(mag))[..., None]  # sqrt: mid-strength evidence stays visible
    blended = (face_big.astype(np.float32) * (1 - op) + rgb.astype(np.float32) * op).round().astype(np.uint8)

    label = target_label or "target"
    # Words, not the map's raw units (which differ by method and mean nothing to a reader; the .npy keeps them):
    # the bar spans this map's own range, 99th percentile at the ends.
    if signed:
        rows = [("strongly", "no effect", "strongly"), (f"toward {_other(label)}", "", f"toward {label}")]
        colours = ((33, 102, 172), (0, 0, 0), (178, 24, 43))
    else:
        rows = [("no influence", "", "most influence")]
        colours = ((0, 0, 0),) * 3
    pad = 4
    fs = max(11, W // 22)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    while fs > 8:  # shrink until each row's three labels fit side by side without touching
        font = _font(fs)
        if all(sum(probe.textlength(t, font=font) for t in row) + 4 * pad + 2 * fs <= W for row in rows):
            break
        fs -= 1
    font = _font(fs)
    title_h = fs + 2 * pad if title else 0
    bar_h = max(8, fs - 2)
    legend_h = pad + bar_h + pad + len(rows) * (fs + pad)
    canvas = Image.new("RGB", (W, title_h + H + legend_h), (255, 255, 255))
    canvas.paste(Image.fromarray(blended), (0, title_h))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((W // 2, pad), title, fill=(0, 0, 0), font=font, anchor="mt")
    y0 = title_h + H + pad
    bar = np.repeat(_lut(signed)[np.linspace(0, 255, W).astype(np.int32)][None], bar_h, axis=0)
    canvas.paste(Image.fromarray(bar), (0, y0))
    y = y0 + bar_h + pad
    for left, mid, right in rows:
        draw.text((pad, y), left, fill=colours[0], font=font, anchor="lt")
        if mid:
            draw.text((W // 2, y), mid, fill=colours[1], font=font, anchor="mt")
        draw.text((W - pad, y), right, fill=colours[2], font=font, anchor="rt")
        y += fs + pad
    return np.asarray(canvas, dtype=np.uint8)


def grid(face: np.ndarray, items: list[tuple[str, np.ndarray]], columns: int = 4,
         transparent: bool = False) -> np.ndarray:
    """Face plus one tile per ``(title, image)`` in a grid (uint8 RGB; RGBA with a see-through background
    between the tiles when ``transparent``, so the page's own background, light or dark, shows there).

    Each image is an overlay from :func:`overlay` (H, W, 3) or a raw 2-D map, which is then
    rendered with :func:`overlay` (signed if it has negative values). Titles go above the
    tiles; when every title is empty (overlays that carry their own title), no title row is
    added and the face tile gets its own "Face" title strip instead.
    """
    from PIL import Image, ImageDraw

    titled = any(t for t, _ in items)
    face_tile = overlay_face(face)
    tiles = [("Face" if titled else "", face_tile if titled else _title_strip(face_tile, "Face"))]
    for title, img in items:
        img = np.asarray(img)
        if img.ndim == 2:
            img = overlay(face, img, signed=bool((img < 0).any()), title=None if titled else title or None)
        tiles.append((title, img[..., :3].astype(np.uint8)))
    th = max(t.shape[0] for _, t in tiles)
    tw = max(t.shape[1] for _, t in tiles)
    fs = max(11, tw // 22)
    font = _font(fs)
    head = fs + 8 if titled else 0
    cols = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + cols - 1) // cols
    gap = 6
    size = (cols * tw + (cols + 1) * gap, rows * (th + head) + (rows + 1) * gap)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0)) if transparent else Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, img) in enumerate(tiles):
        r, c = divmod(i, cols)
        x0 = gap + c * (tw + gap)
        y0 = gap + r * (th + head + gap)
        if title:
            draw.text((x0 + tw // 2, y0 + 2), title, fill=(0, 0, 0), font=font, anchor="mt")
        canvas.paste(Image.fromarray(img), (x0 + (tw - img.shape[1]) // 2, y0 + head))
    return np.asarray(canvas, dtype=np.uint8)


def _title_strip(img: np.ndarray, title: str) -> np.ndarray:
    """``img`` with a title strip on top, in the style of :func:`overlay`."""
    from PIL import Image, ImageDraw

    w = img.shape[1]
    fs = max(11, w // 22)
    pad = 4
    canvas = Image.new("RGB", (w, img.shape[0] + fs + 2 * pad), (255, 255, 255))
    canvas.paste(Image.fromarray(img), (0, fs + 2 * pad))
    ImageDraw.Draw(canvas).text((w // 2, pad), title, fill=(0, 0, 0), font=_font(fs), anchor="mt")
    return np.asarray(canvas, dtype=np.uint8)


def overlay_face(face: np.ndarray, min_side: int = 224) -> np.ndarray:
    """The face alone, upscaled like :func:`overlay` does (for grids)."""
    face = np.asarray(face)[..., :3].astype(np.uint8)
    h, w = face.shape[:2]
    f = max(1, int(np.ceil(min_side / max(w, 1))))
    return _resize(face, (w * f, h * f))


def save_map_npy(attr, path: str | Path) -> Path:
    """Save ``attr.map`` (an :class:`~explainers.base.Attribution`) as a float32 ``.npy`` file."""
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_suffix(path.suffix + ".npy") if path.suffix else path.with_suffix(".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(attr.map, dtype=np.float32))
    return path
