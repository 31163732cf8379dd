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


def test_describe_follows_the_parameters_call_uses():
    # the model card quotes describe(): it must change when the recipe does, not be a fixed string
    assert "JPEG q60-95 (p=0.3)" in Augment().describe()
    assert "JPEG q60-95 (p=0.7)" in Augment(p_jpeg=0.7).describe()
    assert "rotation <=5 deg" in Augment(max_rot=5).describe()
    s = Augment(strong=True)
    assert "75-100% (p=0.5)" in s.describe() and "4-20% of the area" in s.describe()
    s.crop_frac, s.erase_area = (0.6, 1.0), (0.1, 0.3)
    assert "60-100%" in s.describe() and "10-30% of the area" in s.describe()
    # and __call__ really uses those attributes: on an image that only varies from top to bottom, a crop
    # that keeps the full height changes nothing (only the width is jittered), a half-height crop does
    img = np.repeat((np.arange(64, dtype=np.uint8) * 4)[:, None, None], 64, axis=1).repeat(3, axis=2)
    only_crop = Augment(seed=0, strong=True, p_jpeg=0, p_blur=0, p_rescale=0, p_color=0, max_rot=0, max_shear=0)
    only_crop.p_jpeg = only_crop.p_blur = only_crop.p_erase = 0.0
    only_crop.p_crop = 1.0
    only_crop.crop_frac = (1.0, 1.0)
    assert all(np.array_equal(only_crop(img), img) for _ in range(20))
    only_crop.crop_frac = (0.5, 0.5)
    assert all(not np.array_equal(only_crop(img), img) for _ in range(20))


def test_cutmix_pastes_one_box_from_the_permuted_image_and_reports_its_share():
    import torch

    from detector.augment import cutmix

    b, h, w = 6, 20, 24
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w).contiguous()  # image i is all i
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(50):
        mixed, perm, lam = cutmix(x, rng)
        assert mixed.shape == x.shape and sorted(perm.tolist()) == list(range(b))
        assert torch.equal(x, torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w))  # input kept
        for i in range(b):
            own = (mixed[i] == i).all(dim=0)
            pasted = (mixed[i] == perm[i]).all(dim=0)
            assert bool((own | pasted).all())  # every pixel is its own or the partner's
            if perm[i] != i:
                assert abs(own.float().mean().item() - lam) < 1e-6  # lam is the share still its own
                ys, xs = torch.nonzero(~own, as_tuple=True)
                if len(ys):  # the pasted pixels form one full rectangle
                    assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        seen.append(lam)
    assert 0.0 <= min(seen) and max(seen) <= 1.0 and np.std(seen) > 0.1  # Beta(1, 1) areas: widely spread
    a, pa, la = cutmix(x, np.random.default_rng(5))
    b2, pb, lb = cutmix(x, np.random.default_rng(5))
    assert torch.equal(a, b2) and torch.equal(pa, pb) and la == lb  # reproducible from the generator
