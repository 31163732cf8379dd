"""Training augmentation on uint8 RGB face crops, applied before CLAHE.

Forensic practice: geometric jitter (flip, small rotation/shear) and robustness to
post-processing (JPEG re-compression, blur, down/up-scaling, colour jitter). Every
transform is drawn independently of the label, so both classes are changed alike.

``strong=True`` is the recipe for a source with few training images, which a detector
otherwise memorises: it adds a random resized crop (the face framed 75-100% as wide),
random erasing (one flat rectangle of 4-20% of the area, so that no single region can
carry the verdict), and makes JPEG re-compression and blur more frequent and harsher.

:func:`cutmix` works on a prepared batch instead: it pastes a rectangle of another image of the
batch into each image and mixes the two labels by area, so that a detector that has memorised
its few training images of a source still has new targets to fit.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Augment", "cutmix"]


class Augment:
    """Callable ``rgb -> rgb`` with its own seeded generator."""

    def __init__(self, seed: int = 0, p_jpeg: float = 0.3, p_blur: float = 0.2, p_rescale: float = 0.2,
                 p_color: float = 0.5, max_rot: float = 10.0, max_shear: float = 0.1, strong: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.p_jpeg, self.p_blur, self.p_rescale, self.p_color = p_jpeg, p_blur, p_rescale, p_color
        self.max_rot, self.max_shear = max_rot, max_shear
        self.strong = strong
        self.p_crop = self.p_erase = 0.5 if strong else 0.0
        self.crop_frac = (0.75, 1.0)  # side of the random resized crop, as a fraction of the image's
        self.erase_area = (0.04, 0.2)  # area of the erased rectangle, as a fraction of the image's
        self.jpeg_q = (50, 96) if strong else (60, 96)  # integers() bounds: the upper one is exclusive
        if strong:
            self.p_jpeg, self.p_blur = max(p_jpeg, 0.5), max(p_blur, 0.3)

    def describe(self) -> str:
        """The recipe in words, from the parameters :meth:`__call__` uses (model cards quote it)."""
        q = f"JPEG q{self.jpeg_q[0]}-{self.jpeg_q[1] - 1} (p={self.p_jpeg:g})"
        if self.strong:
            c, e = self.crop_frac, self.erase_area
            return (f"a random resized crop framing {c[0]:.0%}-{c[1]:.0%} (p={self.p_crop:g}) and random erasing of "
                    f"{e[0]:.0%}-{e[1]:.0%} of the area (p={self.p_erase:g}), with {q} and blur "
                    f"(p={self.p_blur:g})").replace("%-", "-")
        return (f"flip, rotation <={self.max_rot:g} deg, shear <={self.max_shear:g}, {q}, blur (p={self.p_blur:g}), "
                f"down/up-scaling (p={self.p_rescale:g}), colour jitter (p={self.p_color:g}); label-independent")

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
        if r.random() < self.p_crop:  # random resized crop, back to the same size
            f = r.uniform(*self.crop_frac)
            ch, cw = max(8, int(round(h * f))), max(8, int(round(w * f * r.uniform(0.9, 1.1))))
            cw = min(cw, w)
            top, left = int(r.integers(0, h - ch + 1)), int(r.integers(0, w - cw + 1))
            rgb = cv2.resize(np.ascontiguousarray(rgb[top:top + ch, left:left + cw]), (w, h),
                             interpolation=cv2.INTER_LINEAR)
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
                                   [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(*self.jpeg_q))])
            if ok:
                rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        if r.random() < self.p_erase:  # random erasing with the image's mean colour
            area = r.uniform(*self.erase_area) * h * w
            aspect = np.exp(r.uniform(np.log(0.5), np.log(2.0)))
            eh, ew = min(h, max(1, int(round(np.sqrt(area * aspect))))), min(w, max(1, int(round(np.sqrt(area / aspect)))))
            top, left = int(r.integers(0, h - eh + 1)), int(r.integers(0, w - ew + 1))
            rgb = np.array(rgb)
            rgb[top:top + eh, left:left + ew] = rgb.reshape(-1, rgb.shape[2]).mean(axis=0).astype(np.uint8)
        return np.ascontiguousarray(rgb)


def cutmix(x, rng: np.random.Generator, alpha: float = 1.0):
    """CutMix on a batch ``x`` of shape ``(B, C, H, W)`` (a tensor; returned as a new one).

    One rectangle, of area fraction drawn from Beta(alpha, alpha), is cut from image ``perm[i]``
    and pasted into image ``i``, at the same place for the whole batch. Returns ``(mixed, perm, lam)``
    where ``lam`` is the share of each image that is still its own (after clipping the box to the
    image), so the loss is ``lam * loss(y) + (1 - lam) * loss(y[perm])``.
    """
    import torch

    b, _, h, w = x.shape
    cut = float(np.sqrt(1.0 - rng.beta(alpha, alpha)))  # side fraction of the box
    ch, cw = int(round(h * cut)), int(round(w * cut))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = max(0, cy - ch // 2), min(h, cy + ch - ch // 2)
    left, right = max(0, cx - cw // 2), min(w, cx + cw - cw // 2)
    perm = torch.from_numpy(rng.permutation(b))
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]  # only the box is gathered
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, perm, lam
