"""Fixtures for the explainer tests: tiny models built offline, one thread (shared 2-core CI)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

S = 64  # input side of the synthetic task
P = 24  # side of the class-evidence patch in the top-left corner


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One intra-op thread: with other jobs on the CPU, 2 threads spin-wait and run 10-30x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _stripes(horizontal: bool) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    return (((yy if horizontal else xx) % 2) * 2 - 1).float()


def make_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic task: class 1 = horizontal stripes in the top-left patch, class 0 = vertical.

    The rest of the image is noise of the same energy plus a distractor stripe patch of
    random orientation in the bottom-right quarter, so the evidence is only in the patch.
    """
    x = torch.randn(n, 3, S, S, generator=g) * 0.8
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        x[i, :, :P, :P] = _stripes(bool(y[i])) * 0.8 + 0.2 * torch.randn(3, P, P, generator=g)
        r, c = torch.randint(S // 2, S - P + 1, (2,), generator=g).tolist()
        horiz = bool(torch.randint(0, 2, (1,), generator=g))
        x[i, :, r:r + P, c:c + P] = _stripes(horiz) * 0.8 + 0.2 * torch.randn(3, P, P, generator=g)
    return x, y


def tiny_cnn(seed: int = 0):
    """The custom CNN architecture with narrow stages (fast), eval mode, frozen like the loader does."""
    import timm

    import detector.models  # noqa: F401  (registers custom_cnn)

    torch.manual_seed(seed)
    m = timm.create_model("custom_cnn", num_classes=2, widths=(8, 16, 16, 32))
    return m


def freeze(m):
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@pytest.fixture(scope="session")
def trained():
    """model, x1 (class-1 inputs), patch (side of the evidence patch): tiny custom CNN trained 60 steps on the synthetic task (acc ~1.0)."""
    g = torch.Generator().manual_seed(0)
    m = tiny_cnn(0)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    m.train()
    for _ in range(60):
        x, y = make_batch(16, g)
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    freeze(m)
    xv, yv = make_batch(64, g)
    with torch.no_grad():
        acc = float((m(xv).argmax(1) == yv).float().mean())
    assert acc > 0.9, f"synthetic training failed (accuracy {acc:.2f})"
    return SimpleNamespace(model=m, x1=xv[yv == 1][:4].clone(), patch=P, accuracy=acc)


@pytest.fixture(scope="session")
def random_cnn():
    """A re-initialised copy of the tiny custom CNN (different seed)."""
    return freeze(tiny_cnn(1))


@pytest.fixture(scope="session")
def tiny_densenet():
    """timm's DenseNet (concatenations, BatchNorm before conv, in-place ReLU) with a reduced depth/width."""
    import timm

    torch.manual_seed(0)
    m = timm.create_model("densenet121", num_classes=2, growth_rate=8, block_config=(2, 2, 2, 2))
    return freeze(m)


@pytest.fixture(scope="session")
def face() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
