"""Turn what a client sent (Gradio file payload, path, data URL) into image bytes or a path."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from detector.errors import InputError

__all__ = ["image_source"]


def image_source(payload: Any) -> tuple[str | bytes, str]:
    """``(path or bytes, name)`` of the uploaded image; :class:`InputError` if there is none.

    The app's events take the image with ``preprocess=False``: ``gr.Image`` would decode
    and re-encode the file with PIL first and fail with a generic error on a non-image,
    while the detector's loader (EXIF, alpha, 16-bit, pixel limit) says what is wrong.
    Gradio has already moved the upload into its cache and checked the path.
    """
    if payload is None:
        raise InputError("Upload an image first (or click an example).", "no_image")
    if isinstance(payload, (str, Path)):
        return str(payload), Path(payload).name
    get = payload.get if isinstance(payload, dict) else lambda k, d=None: getattr(payload, k, d)
    url, path = get("url") or "", get("path")
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1]), get("orig_name") or "pasted image"
        except (IndexError, ValueError):
            raise InputError("The pasted image could not be decoded.", "not_image") from None
    if not path:
        raise InputError("The upload did not arrive; please try again.", "no_image")
    return str(path), get("orig_name") or Path(path).name
