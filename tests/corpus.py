"""Generate a corpus of hostile and unusual inputs (nothing is downloaded).

``python -m tests.corpus OUT_DIR`` writes the files and prints a table of what each one
is. The tests import :func:`build_corpus` and check that every case gets the expected,
specific outcome.
"""
from __future__ import annotations

import io
import struct
import sys
import zlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str  #: file name (may contain odd characters)
    data: bytes
    expect: str  #: "ok" or the InputError code expected
    what: str  #: description
    needs_whole_image: bool = False  #: ok only with face_crop=False


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(side: int = 20000) -> bytes:
    """A valid PNG header declaring side x side pixels; its IDAT inflates to ~side^2 bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * side
    data = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()  # first rows only: small file
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def build_corpus(face_rgb: np.ndarray | None = None) -> list[Case]:
    """The hostile-input cases; ``face_rgb`` is a photo with a face (default: skimage astronaut)."""
    if face_rgb is None:
        from skimage import data as skdata

        face_rgb = skdata.astronaut()
    face = Image.fromarray(face_rgb)
    jpg = _enc(face, "JPEG", quality=90)
    png = _enc(face, "PNG")
    gray16 = Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)
    pal = face.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    rgba = face.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:40, :40, 3] = 0
    frames = [face, Image.fromarray(face_rgb[::-1].copy())]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    webp = io.BytesIO()
    frames[0].save(webp, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(face_rgb, 1)))  # stored sideways
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    two = np.concatenate([face_rgb, face_rgb[:, ::-1]], axis=1)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.txt", "hello")
    return [
        Case("text.jpg", b"this is not an image, just some text\n" * 4, "not_image", "text file named .jpg"),
        Case("doc.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "not_image", "PDF header"),
        Case("archive.jpg", zbuf.getvalue(), "not_image", "zip archive"),
        Case("empty.png", b"", "empty", "zero bytes"),
        Case("truncated.jpg", jpg[: len(jpg) // 2], "truncated", "JPEG cut in half"),
        Case("truncated.png", png[: len(png) // 2], "truncated", "PNG cut in half"),
        Case("bomb.png", png_bomb(), "too_large", "20000x20000 PNG decompression bomb"),
        Case("one.png", _enc(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"), "too_small", "1x1 pixel"),
        Case("sixteen.png", _enc(face.resize((16, 16)), "PNG"), "ok", "16x16 pixels", needs_whole_image=True),
        Case("gray16.png", _enc(gray16, "PNG"), "ok", "16-bit grayscale PNG"),
        Case("cmyk.jpg", _enc(face.convert("CMYK"), "JPEG"), "ok", "CMYK JPEG"),
        Case("palette_alpha.png", _enc(pal, "PNG", transparency=0), "ok", "palette with transparency"),
        Case("rgba.png", _enc(Image.fromarray(a, "RGBA"), "PNG"), "ok", "RGBA with transparent corner"),
        Case("animated.gif", gif.getvalue(), "ok", "animated GIF (2 frames)"),
        Case("animated.webp", webp.getvalue(), "ok", "animated WebP (2 frames)"),
        Case("exif_rotated.jpg", _enc(rotated, "JPEG", exif=exif), "ok", "EXIF orientation 6 (stored sideways)"),
        Case("gray.png", _enc(face.convert("L"), "PNG"), "ok", "8-bit grayscale"),
        Case("noface.png", _enc(Image.fromarray(noise), "PNG"), "no_face", "random noise, no face"),
        Case("two_faces.jpg", _enc(Image.fromarray(two), "JPEG"), "ok", "two faces side by side (largest is used)"),
        Case("../we\u00efrd/na\u0301me\u2603.png".replace("/", "\u2215"), png, "ok",
             "file name with path-separator lookalikes and non-ASCII"),
        Case("script.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "not_image",
             "SVG with script"),
    ]


def write_corpus(out: Path) -> list[tuple[Case, Path]]:
    """Write every case under ``out``; returns (case, path) pairs."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for c in build_corpus():
        p = out / c.name
        p.write_bytes(c.data)
        written.append((c, p))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/corpus")
    for c, p in write_corpus(target):
        print(f"{p.name:40s} {len(c.data):>9d} B  expect={c.expect:10s} {c.what}")
