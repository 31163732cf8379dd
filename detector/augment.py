"""Training augmentation on uint8 RGB face crops, applied before CLAHE.

Forensic practice: geometric jitter (flip, small rotation/shear) and robustness to
post-processing (JPEG re-compression, blur, down/up-scaling, colour jitter). Every
transform is drawn independently of the label, so both classes are changed alike.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Augment"]


class Augment:
    """Callable ``rgb -> rgb`` with its own seeded generator."""

    def __init__(self, seed: int = 0, p_jpeg: float = 0.3, p_blur: float = 0.2, p_rescale: float = 0.2,
                 p_color: float = 0.5, max_rot: float = 10.0, max_shear: float = 0.1) -> None:
        self.rng = np.random.default_rng(seed)
        self.p_jpeg, self.p_blur, self.p_rescale, self.p_color = p_jpeg, p_blur, p_rescale, p_color
        self.max_rot, self.max_shear = max_rot, max_shear

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        r = self.rng
        h, w = rgb.shape[:2]
        if r.random() < 0.5:
            rgb = rgb[:, ::-1]
        if r.random() < 0.5:
            ang = r.uniform(-self.max_rot, self.max_rot)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
            m[0, 1] += r.uniform(-self.max_shear, self.max_shear)
            rgb = cv2.warpAffine(np.ascontiguousarray(rgb), m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        if r.random() < self.p_rescale:
            f = r.uniform(0.5, 0.9)
            small = cv2.resize(np.ascontiguousarray(rgb), (max(8, int(w * f)), max(8, int(h * f))),
                               interpolation=cv2.INTER_AREA)
            rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if r.random() < self.p_blur:
            rgb = cv2.GaussianBlur(np.ascontiguousarray(rgb), (0, 0), r.uniform(0.3, 1.2))
        if r.random() < self.p_color:
            x = rgb.astype(np.float32)
            x = x * r.uniform(0.85, 1.15) + r.uniform(-15, 15)  # contrast, brightness
            gray = x.mean(axis=2, keepdims=True)
            x = gray + (x - gray) * r.uniform(0.85, 1.15)  # saturation
            rgb = np.clip(x, 0, 255).astype(np.uint8)
        if r.random() < self.p_jpeg:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(60, 96))])
            if ok:
                rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return np.ascontiguousarray(rgb)
