"""Frozen-prefix training: run the early blocks once, cache their outputs, train the rest.

For timm's EfficientNet family (``conv_stem``, ``bn1``, ``blocks``, ``conv_head``, ``bn2``,
``global_pool``, ``classifier``; MobileNetV2 has the same layout). The prefix (stem and
``blocks[:k]``) stays frozen in eval mode, so its output for an image is a fixed tensor:
computing it once per image and training ``blocks[k:]`` and the head on the cached
tensors gives exactly the model that the full forward pass computes at inference. The
trained suffix is put back into the full model, which is what gets saved.

What the cache gives up is pixel-level augmentation (each image is seen as it is, after
the same CLAHE and normalisation as at inference). ``flip_features`` mirrors cached maps
left-right as a cheap stand-in for image flips.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from torch import nn

__all__ = ["Prefix", "Suffix", "cache_features", "flip_features"]


def _check(model) -> None:
    for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head"):
        if not hasattr(model, name):
            raise TypeError(f"{type(model).__name__} has no {name!r}: frozen-prefix training needs a timm "
                            "EfficientNet/MobileNet-style model")


class Prefix(nn.Module):
    """Stem and ``blocks[:k]`` of ``model`` (shares its modules)."""

    def __init__(self, model, k: int) -> None:
        super().__init__()
        _check(model)
        self.m, self.k = model, k

    def weights(self) -> dict:
        """The prefix's own parameters and buffers (``state_dict()`` would include the whole model)."""
        mods = {"conv_stem": self.m.conv_stem, "bn1": self.m.bn1,
                **{f"blocks.{i}": b for i, b in enumerate(self.m.blocks[:self.k])}}
        return {f"{name}.{k}": v for name, mod in mods.items() for k, v in mod.state_dict().items()}

    def forward(self, x):
        x = self.m.bn1(self.m.conv_stem(x))
        for b in self.m.blocks[:self.k]:
            x = b(x)
        return x


class Suffix(nn.Module):
    """``blocks[k:]``, ``conv_head``, ``bn2`` and the classifier head of ``model`` (shares its modules)."""

    def __init__(self, model, k: int) -> None:
        super().__init__()
        _check(model)
        self.m, self.k = model, k

    def forward(self, x):
        for b in self.m.blocks[self.k:]:
            x = b(x)
        return self.m.forward_head(self.m.bn2(self.m.conv_head(x)))

    def trainable_modules(self) -> list:
        """Modules whose parameters train."""
        return [*self.m.blocks[self.k:], self.m.conv_head, self.m.bn2, self.m.classifier]


def cache_features(prefix, images: np.ndarray, prepare, cache_dir: Path, tag: str, key: str,
                   batch: int = 32, device: str = "cpu") -> np.ndarray:
    """fp16 array (N, C, H, W) of ``prefix(prepare(images[i]))``, memory-mapped from ``cache_dir``.

    ``prepare(uint8 HWC) -> tensor (1, 3, S, S)`` is the inference preprocessing (CLAHE,
    normalisation). ``key`` must change whenever the prefix weights, the images or the
    preprocessing change; it names the file, so a finished cache is reused.
    """
    import torch
    from tqdm import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha1(key.encode()).hexdigest()[:12]
    f = cache_dir / f"feat_{tag}_{h}.npy"
    if f.is_file():
        return np.load(f, mmap_mode="r", allow_pickle=False)
    prefix.eval()
    with torch.inference_mode():
        probe = prefix(prepare(np.asarray(images[0])).to(device))
    shape = (len(images), *probe.shape[1:])
    tmp = f.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    with torch.inference_mode():
        for s in tqdm(range(0, len(images), batch), desc=f"features {tag}", file=sys.stderr, mininterval=10):
            x = torch.cat([prepare(np.asarray(a)) for a in images[s:s + batch]]).to(device)
            out[s:s + len(x)] = prefix(x).float().cpu().numpy().astype(np.float16)
    out.flush()
    del out
    tmp.rename(f)
    return np.load(f, mmap_mode="r", allow_pickle=False)


def flip_features(x, p: float, generator=None):
    """Mirror each map in the batch left-right with probability ``p``."""
    import torch

    if p <= 0:
        return x
    m = torch.rand(x.shape[0], generator=generator) < p
    if m.any():
        x = x.clone()
        x[m] = x[m].flip(-1)
    return x
