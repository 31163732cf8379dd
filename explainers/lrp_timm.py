"""An LRP-ready copy of timm's EfficientNet / MobileNetV2 models.

zennit folds BatchNorm into the preceding convolution only where the two are
consecutive leaf modules. timm wraps BatchNorm and its activation in one module
(``BatchNormAct2d``, not a leaf), and adds residual branches with a plain ``+``, which
gradient-based relevance propagation copies onto both branches instead of splitting it.
So for these models LRP is run on a functionally identical copy in which

* every convolution that is followed by a ``BatchNormAct2d`` carries the BatchNorm
  folded into its weights and bias, and the ``BatchNormAct2d`` is replaced by its
  activation (ReLU6 or identity), which zennit treats as an activation;
* every residual addition goes through zennit's ``Sum`` layer, which the composites give
  the Norm rule (relevance split in proportion to each branch's contribution).

The copy computes the same logits as the original (checked by the tests) and is cached
per model object.
"""
from __future__ import annotations

import copy
import types
import weakref

__all__ = ["is_timm_efficientnet", "lrp_ready"]

_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

def is_timm_efficientnet(model) -> bool:
    """True for timm's EfficientNet-family models (EfficientNet, MobileNetV2, ...)."""
    try:
        from timm.models.efficientnet import EfficientNet
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, EfficientNet)


def _fold(conv, bn) -> None:
    import torch

    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(s.view(-1, *([1] * (conv.weight.ndim - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = torch.nn.Parameter((b - bn.running_mean) * s + bn.bias, requires_grad=False)


def _canonize_pairs(module) -> int:
    """Fold each (conv, BatchNormAct2d) pair of ``module``'s own children; returns the count."""
    from timm.layers import BatchNormAct2d
    from torch import nn

    n = 0
    kind = type(module).__name__
    if kind == "DepthwiseSeparableConv":
        pairs = [("conv_dw", "bn1"), ("conv_pw", "bn2")]
    elif kind == "InvertedResidual":
        pairs = [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]
    elif hasattr(module, "conv_stem"):
        pairs = [("conv_stem", "bn1"), ("conv_head", "bn2")]
    else:
        pairs = []
    for c, b in pairs:
        conv, bn = getattr(module, c, None), getattr(module, b, None)
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, BatchNormAct2d):
            continue
        _fold(conv, bn)
        act = bn.act if not isinstance(bn.drop, nn.Dropout) else nn.Sequential(bn.drop, bn.act)
        setattr(module, b, act)
        n += 1
    return n


def _sum_forward(self, x):
    """The block's own forward with the residual ``+`` replaced by zennit's Sum layer."""
    import torch

    shortcut = x
    x = self._lrp_inner(x)
    return self.lrp_sum(torch.stack([self.drop_path(x), shortcut], dim=-1))


def _inner_ds(self, x):
    return self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))


def _inner_ir(self, x):
    x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
    return self.bn3(self.conv_pwl(self.se(self.aa(x))))


def lrp_ready(model):
    """``(copy, notes)``: the LRP-ready copy of a timm EfficientNet-family model, or ``(model, [])``
    unchanged for any other model."""
    if not is_timm_efficientnet(model):
        return model, []
    hit = _cache.get(model)
    if hit is not None:
        return hit
    from torch import nn
    from zennit.layer import Sum

    m = copy.deepcopy(model).eval()
    folded, sums = 0, 0
    for mod in list(m.modules()):
        kind = type(mod).__name__
        if getattr(mod, "conv_s2d", None) is not None:
            raise NotImplementedError("space-to-depth EfficientNet blocks are not supported by the LRP canonizer")
        folded += _canonize_pairs(mod)
        if kind in ("DepthwiseSeparableConv", "InvertedResidual") and getattr(mod, "has_skip", False):
            if not isinstance(getattr(mod, "se", nn.Identity()), nn.Identity):
                raise NotImplementedError("squeeze-excitation blocks are not supported by the LRP canonizer")
            mod.lrp_sum = Sum()
            mod._lrp_inner = types.MethodType(_inner_ds if kind == "DepthwiseSeparableConv" else _inner_ir, mod)
            mod.forward = types.MethodType(_sum_forward, mod)
            sums += 1
    for p in m.parameters():
        p.requires_grad_(False)
    notes = [f"LRP ran on a canonized copy: {folded} BatchNorm layers folded into their convolutions, "
             f"{sums} residual additions split by the Norm rule."]
    _cache[model] = (m, notes)
    return m, notes
