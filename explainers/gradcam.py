"""Grad-CAM (captum ``LayerGradCam``) on the spec's ``gradcam_layer``.

The layer's channel activations are weighted by their average gradient, summed, passed
through a ReLU (default ``relu=True``, as in the Grad-CAM paper: only regions that raise
the target score are kept, so the map is unsigned) and upsampled to the input size with
``LayerAttribution.interpolate`` (bilinear by default; captum's default is nearest).
With ``relu=False`` the map is signed. Without a spec (tiny test models) or a ``layer``
parameter, the last ``Conv2d``/``ReLU`` of the model is used and a note says so.
"""
from __future__ import annotations

from .base import Explainer, RawAttribution, register, resolve_module


def last_conv_or_relu(model) -> str:
    """Dotted name of the last ``Conv2d`` or ``ReLU`` module registered in ``model``."""
    from torch import nn

    name = None
    for n, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ReLU)):
            name = n
    if name is None:
        raise ValueError("Grad-CAM needs a convolutional layer and the model has none")
    return name


@register
class GradCAMExplainer(Explainer):
    name = "gradcam"
    display_order = 60
    run_cost = 2
    display_name = "Grad-CAM"
    meaning = "Coarse regions whose high-level features raised the detector's score for this verdict."
    default_params = {"relu": True, "interpolate_mode": "bilinear", "layer": None}
    library_defaults = {"relu": True, "interpolate_mode": "nearest"}
    requires = ("captum",)

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:
        from captum.attr import LayerAttribution, LayerGradCam

        notes = []
        path = params.get("layer") or (spec.gradcam_layer if spec is not None else None)
        if path is None:
            path = last_conv_or_relu(model)
            notes.append(f"No detector spec: Grad-CAM uses the last Conv2d/ReLU layer '{path}'.")
        layer = resolve_module(model, path)
        cam = LayerGradCam(model, layer).attribute(x.requires_grad_(True), target=target, relu_attributions=bool(params["relu"]))
        h, w = x.shape[-2:]
        mode = params["interpolate_mode"]
        up = LayerAttribution.interpolate(cam, (h, w), interpolate_mode=mode)
        notes.append(f"Layer {path} ({cam.shape[-2]}x{cam.shape[-1]}) upsampled to {h}x{w} ({mode}).")
        return RawAttribution(up[0, 0], signed=not params["relu"], notes=notes, extra={"layer": path})
