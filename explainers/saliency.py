"""Saliency: absolute input gradient of the target logit (captum ``Saliency``).

Map = max over the colour channels of ``|d logit_target / d x|`` (captum's ``abs=True``
result reduced with a channel max, the usual way of showing saliency). Unsigned: it says
where a small change of the pixels would change the score most, not in which direction.
"""
from __future__ import annotations

from .base import Explainer, RawAttribution, register


@register
class SaliencyExplainer(Explainer):
    name = "saliency"
    display_order = 30
    run_cost = 1
    display_name = "Saliency"
    meaning = "Pixels where a tiny change would move the detector's score the most (gradient magnitude)."
    default_params: dict = {}
    library_defaults: dict = {}
    requires = ("captum",)

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:
        from captum.attr import Saliency

        grads = Saliency(model).attribute(x.requires_grad_(True), target=target, abs=True)  # (1, C, H, W)
        return RawAttribution(grads.amax(dim=1)[0], signed=False,
                              notes=["Map = max over colour channels of |gradient of the target logit|."])
