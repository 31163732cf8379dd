"""detector.augment: the training-time transforms keep shape and dtype and really change the image."""
from __future__ import annotations

import numpy as np
import pytest

from detector.augment import Augment


def _face(h: int = 64, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("strong", [False, True])
def test_augment_keeps_shape_and_dtype(strong):
    aug, img = Augment(seed=3, strong=strong), _face(48, 40)
    for _ in range(100):
        out = aug(img)
        assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_strong_augment_crops_erases_and_recompresses_more_often():
    img = _face()
    weak, strong = Augment(seed=0), Augment(seed=0, strong=True)
    assert strong.p_jpeg >= 0.5 and strong.p_blur >= 0.3 and strong.p_crop == strong.p_erase == 0.5
    assert weak.p_crop == weak.p_erase == 0.0
    # random erasing leaves a flat rectangle: some 4x4 block with zero spread in every channel
    def has_flat_block(x: np.ndarray) -> bool:
        b = x[: 64 // 4 * 4, : 64 // 4 * 4].reshape(16, 4, 16, 4, 3).std(axis=(1, 3)).max(axis=-1)
        return bool((b == 0).any())
    only_erase = Augment(seed=0, strong=True, p_jpeg=0, p_blur=0, p_rescale=0, p_color=0, max_rot=0, max_shear=0)
    only_erase.p_jpeg = only_erase.p_blur = only_erase.p_crop = 0.0
    flat = [has_flat_block(only_erase(img)) for _ in range(200)]
    assert 0.3 < np.mean(flat) < 0.7  # erasing fires about half the time, and only then
    assert not has_flat_block(img)
    # strong changes the image on (almost) every call, and differs from the weak recipe
    diffs = [np.abs(strong(img).astype(int) - img).mean() for _ in range(50)]
    assert np.mean(diffs) > np.mean([np.abs(weak(img).astype(int) - img).mean() for _ in range(50)])


def test_augment_is_reproducible_from_its_seed():
    img = _face()
    a, b = Augment(seed=7, strong=True), Augment(seed=7, strong=True)
    assert all(np.array_equal(a(img), b(img)) for _ in range(20))
