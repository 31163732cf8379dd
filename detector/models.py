"""Architectures registered with timm's ``@register_model``.

* ``custom_cnn``: a small forensic CNN. A fixed high-pass (SRM-style) first layer
  removes image content and keeps the high-frequency residual where generation and
  blending traces live; after it come plain conv/BN/ReLU/max-pool stages, global
  average pooling, dropout and a linear layer. No in-place ops and no module is used
  twice, so LRP and other hook-based explainers see every operation once.
* ``vggface16``: the 13-conv VGG-16 stack of VGG-Face (``conv1_1`` ... ``conv5_3``),
  each conv followed by BatchNorm (identity when converted from VGG-Face, see
  :mod:`detector.vggface_convert`) and ReLU, with a compact head (global average
  pooling, dropout, linear) instead of the 4096-wide FC layers.

DenseNet-121 is timm's own ``densenet121``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .specs import SPECS

__all__ = ["CustomCNN", "VGGFace16", "srm_kernels", "VGG16_CFG", "OWN_ARCHITECTURES"]


def srm_kernels() -> np.ndarray:
    """Three classic SRM high-pass kernels (5x5, each sums to zero), shape (3, 5, 5)."""
    k1 = np.zeros((5, 5), np.float32)  # first-order horizontal residual
    k1[2, 1:4] = [1, -2, 1]
    k1 /= 2.0
    k2 = np.array(  # KB: 3x3 second order, padded
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
        np.float32) / 4.0
    k3 = np.array(  # KV: 5x5 third order "square"
        [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
        np.float32) / 12.0
    return np.stack([k1, k2, k3])


class _PooledLinearHead(nn.Module):
    """Shared classifier head: global average pooling, flatten, dropout, linear ``fc``.

    Subclasses build ``features`` and call :meth:`_init_head`; the module names
    (``global_pool``, ``flatten``, ``head_drop``, ``fc``) are the checkpoints' state_dict keys.
    """

    num_features: int
    num_classes: int

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        self.num_features = num_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        """Feature map before the head (each architecture defines it)."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pooled features (``pre_logits``) or logits from a feature map."""
        x = self.flatten(self.global_pool(x))
        if pre_logits:
            return x
        return self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of a normalised batch."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm API)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, untrained final layer with ``num_classes`` outputs (timm API)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


class CustomCNN(_PooledLinearHead):
    """Small forensic CNN: fixed high-pass stem + 4 conv stages (0.66 M parameters at the default widths).

    ``rgb=True`` also feeds the normalised colour image itself to the first stage, beside the
    high-pass residuals (3 more input channels, +648 parameters): the stem alone discards the
    low frequencies where face swaps leave colour and blending seams. :meth:`grow_state_dict`
    turns a high-pass-only checkpoint into this variant with the new inputs' weights at zero,
    so it starts out computing exactly what the checkpoint did.
    """

    first_conv = "highpass"
    #: The colour branch's only concatenation stacks the input beside the stem's residuals, and
    #: gradient routing passes each channel's LRP relevance through unchanged (explainers.lrp).
    lrp_concat_exact = True

    def __init__(self, num_classes: int = 2, in_chans: int = 3, widths: tuple[int, ...] = (24, 48, 96, 192),
                 drop_rate: float = 0.2, rgb: bool = False, **kwargs) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.rgb = bool(rgb)
        #: Constructor arguments a checkpoint must record (``config.json``'s ``model_args``).
        self.model_args = {"rgb": True} if self.rgb else {}
        hp = srm_kernels()  # (3,5,5)
        n_hp = hp.shape[0] * in_chans
        # Depth-wise fixed high-pass: each colour channel gets the 3 SRM kernels.
        self.highpass = nn.Conv2d(in_chans, n_hp, 5, padding=2, groups=in_chans, bias=False)
        w = torch.from_numpy(np.tile(hp[:, None], (in_chans, 1, 1, 1)))
        self.highpass.weight.data.copy_(w)
        self.highpass.weight.requires_grad_(False)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = n_hp + (in_chans if self.rgb else 0)
        for i, c in enumerate(widths):
            s = i + 1
            stride = 2 if i == 0 else 1
            layers[f"conv{s}_1"] = nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False)
            layers[f"bn{s}_1"] = nn.BatchNorm2d(c)
            layers[f"relu{s}_1"] = nn.ReLU(inplace=False)
            layers[f"conv{s}_2"] = nn.Conv2d(c, c, 3, padding=1, bias=False)
            layers[f"bn{s}_2"] = nn.BatchNorm2d(c)
            layers[f"relu{s}_2"] = nn.ReLU(inplace=False)
            layers[f"pool{s}"] = nn.MaxPool2d(2)
            c_in = c
        self.features = nn.Sequential(layers)
        self._init_head(c_in, num_classes, drop_rate)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the high-pass stem and the conv stages.

        The stem runs in fp32 even under bf16 autocast: its fixed kernels subtract
        neighbouring pixels, and bf16's 8-bit mantissa rounds away the small residuals it
        exists to keep (the stage-2 card showed val AUC 0.832 under bf16 vs 0.813 in fp32).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = self.highpass(x.float())
            if self.rgb:
                h = torch.cat([h, x.float()], dim=1)
        return self.features(h)

    def grow_state_dict(self, state: dict) -> dict:
        """``state`` of a high-pass-only CustomCNN, fitted to this model: with ``rgb=True`` the
        first convolution's weights for the colour inputs are added as zeros, so the grown
        model's outputs equal the original's until training moves them."""
        key = "features.conv1_1.weight"
        want = self.features.conv1_1.weight
        w = state.get(key)
        if w is None or w.shape == want.shape:
            return dict(state)
        if w.shape[0] != want.shape[0] or w.shape[2:] != want.shape[2:] or w.shape[1] > want.shape[1]:
            raise ValueError(f"cannot grow {key} of shape {tuple(w.shape)} into {tuple(want.shape)}")
        pad = torch.zeros(w.shape[0], want.shape[1] - w.shape[1], *w.shape[2:], dtype=w.dtype, device=w.device)
        return {**state, key: torch.cat([w, pad], dim=1)}


# (block, number of convs, width) of VGG-16 / VGG-Face.
VGG16_CFG: tuple[tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


class VGGFace16(_PooledLinearHead):
    """VGG-Face's 13-conv VGG-16 stack (with BatchNorm) and a compact 2-class head.

    ``width`` scales every layer's channels (1.0: VGG-Face's 64-512, which the converter
    needs; 0.25: 16-128 channels at 1/16 of the compute, for training from scratch on a CPU)."""

    first_conv = "features.conv1_1"

    def __init__(self, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.5, width: float = 1.0,
                 **kwargs) -> None:
        super().__init__()
        self.num_classes = num_classes
        #: Constructor arguments a checkpoint must record (``config.json``'s ``model_args``).
        self.model_args = {} if width == 1.0 else {"width": float(width)}
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_chans
        for block, n, c in VGG16_CFG:
            c = max(8, int(round(c * width)))
            for j in range(1, n + 1):
                layers[f"conv{block}_{j}"] = nn.Conv2d(c_in, c, 3, padding=1)
                layers[f"bn{block}_{j}"] = nn.BatchNorm2d(c)
                layers[f"relu{block}_{j}"] = nn.ReLU(inplace=False)
                c_in = c
            layers[f"pool{block}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self._init_head(c_in, num_classes, drop_rate)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the 13 convolutions."""
        return self.features(x)


def _cfg(input_size: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...], **kw) -> dict:
    return {"num_classes": 2, "input_size": input_size, "pool_size": None, "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": mean, "std": std, "first_conv": kw.pop("first_conv"),
            "classifier": "fc", "license": "cc-by-nc-sa-4.0", **kw}


#: The architectures this module registers with timm, by timm name.
OWN_ARCHITECTURES: dict[str, type[_PooledLinearHead]] = {"custom_cnn": CustomCNN, "vggface16": VGGFace16}

# Default preprocessing lives in detector.specs; the timm configs are derived from it so that
# timm's own config resolution (``timm.data.resolve_data_config``) agrees with the app.
default_cfgs = generate_default_cfgs({
    f"{spec.architecture}.untrained": _cfg((3, spec.input_size, spec.input_size), tuple(spec.mean), tuple(spec.std),
                                           first_conv=OWN_ARCHITECTURES[spec.architecture].first_conv)
    for spec in SPECS.values() if spec.architecture in OWN_ARCHITECTURES
})


def _create(cls: type, variant: str, pretrained: bool, **kwargs) -> nn.Module:
    return build_model_with_cfg(cls, variant, pretrained, **kwargs)


@register_model
def custom_cnn(pretrained: bool = False, **kwargs) -> CustomCNN:
    """The forensic custom CNN (weights: our safetensors checkpoints)."""
    return _create(CustomCNN, "custom_cnn", pretrained, **kwargs)


@register_model
def vggface16(pretrained: bool = False, **kwargs) -> VGGFace16:
    """VGG-Face conv stack + compact 2-class head."""
    return _create(VGGFace16, "vggface16", pretrained, **kwargs)
