"""Shared fixtures: offline Hub, tiny checkpoints written by the tests, sample images."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DEEPFAKE_DEVICE", "cpu")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def hooks_left(model) -> list[str]:
    """Modules (and global registries) that still hold hooks."""
    from torch.nn.modules import module as mm

    left = []
    for name, mod in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(mod, attr, None):
                left.append(f"{name or '<root>'}.{attr}")
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        if getattr(mm, attr, None):
            left.append(attr)
    return left


def write_tiny_checkpoints(root: Path, names: tuple[str, ...] | None = None, seed: int = 0) -> Path:
    """Random-weight checkpoints for every detector (or ``names``) under ``root``."""
    import timm
    import torch

    import detector.models  # noqa: F401
    from detector.specs import SPECS
    from detector.weights import save_checkpoint

    torch.manual_seed(seed)
    for name, spec in SPECS.items():
        if names and name not in names:
            continue
        model = timm.create_model(spec.architecture, num_classes=spec.num_classes)
        save_checkpoint(model, spec, root / name, temperature=1.5)
    return root


@pytest.fixture(scope="session")
def tiny_ckpt_root(tmp_path_factory) -> Path:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpts"), ("custom_cnn",))


@pytest.fixture()
def use_checkpoints(monkeypatch):
    """Point the loader at a folder for one test and reset its caches around it."""
    from detector import weights

    def _use(root: Path) -> None:
        monkeypatch.setenv("DEEPFAKE_CHECKPOINTS", str(root))
        weights.clear_cache()

    yield _use
    weights.clear_cache()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()
