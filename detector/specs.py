"""Detector specifications: one frozen dataclass per detector, in one registry.

Everything that differs between detectors (architecture, input size, normalisation,
label order, Grad-CAM layer, where the weights live) is written here once; the
preprocessing, loader, explainers and app read it from here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelSpec", "SPECS", "LABELS", "get_spec", "list_specs", "CHECKPOINT_ROOT", "checkpoint_root"]

#: Class order shared by every detector: index 1 is "fake", so p_fake = softmax[..., 1].
LABELS: tuple[str, str] = ("real", "fake")

#: Default folder holding ``<name>/config.json`` + ``<name>/model.safetensors``.
CHECKPOINT_ROOT = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint_root() -> Path:
    """Checkpoint folder: ``$DEEPFAKE_CHECKPOINTS`` if set, else the repo's ``checkpoints/``."""
    return Path(os.environ.get("DEEPFAKE_CHECKPOINTS", CHECKPOINT_ROOT))


@dataclass(frozen=True)
class ModelSpec:
    """Static description of one detector."""

    name: str  #: registry key, also the checkpoint folder name
    display_name: str  #: what the UI shows
    architecture: str  #: timm model name
    input_size: int  #: square input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    gradcam_layer: str  #: dotted module path for Grad-CAM
    label_names: tuple[str, ...] = LABELS
    hub_repo: str | None = None  #: default Hub repo (None: local only unless configured)
    description: str = ""
    lrp_exact: bool = True  #: False where LRP can only be approximate (DenseNet concatenations)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def local_dir(self) -> Path:
        """Local checkpoint folder for this detector."""
        return checkpoint_root() / self.name

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def fake_index(self) -> int:
        return self.label_names.index("fake")


SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            name="vggface16",
            display_name="VGGFace16",
            architecture="vggface16",
            input_size=112,
            # VGG-Face's own RGB mean (129.19, 104.76, 93.59)/255. The converter folds
            # VGG-Face's unit std on the 0-255 scale into conv1_1, so any std works here.
            mean=(129.186279296875 / 255, 104.76238250732422 / 255, 93.59396362304688 / 255),
            std=(0.25, 0.25, 0.25),
            gradcam_layer="features.relu5_3",
            description="VGG-16 convolutional stack of VGG-Face with a compact head.",
        ),
        ModelSpec(
            name="densenet121",
            display_name="DenseNet-121",
            architecture="densenet121",
            input_size=112,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            gradcam_layer="features.norm5",
            description="timm's DenseNet-121, two classes.",
            lrp_exact=False,
        ),
        ModelSpec(
            name="custom_cnn",
            display_name="Custom CNN",
            architecture="custom_cnn",
            input_size=160,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            gradcam_layer="features.relu4_2",
            description="Our forensic CNN: fixed SRM high-pass stem, 4 conv stages, 0.66 M parameters.",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """Return the spec called ``name`` or raise ``KeyError`` listing the known names."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; known detectors: {', '.join(SPECS)}") from None


def list_specs() -> list[ModelSpec]:
    """All detector specs in display order."""
    return list(SPECS.values())
