"""Layer-wise Relevance Propagation with zennit.

Rules (composite ``"epsilon_gamma_box"``, default): ZBox on the first layer, bounded by
the normalised images of pixel values 0 and 1; Gamma (gamma=0.25) on the other
convolutions; Epsilon on linear layers; BatchNorm that directly follows a conv/linear is
folded into it by ``SequentialMergeBatchNorm`` first. ``"epsilon_plus_flat"`` (Flat on
the first layer, z+ elsewhere) is the alternative. The output relevance is the target
logit (one-hot times the logit), so the input relevances sum to that logit when every
rule is conservative: biases (including folded BatchNorm shifts) absorb some relevance
and the epsilon stabiliser a little more; ``extra`` reports the sum and the logit.

Hooks are attached by zennit's ``Gradient`` attributor used as a context manager, which
removes them and reverts the BatchNorm folding on exit, also on errors.

timm's EfficientNet family (the EfficientNet-Lite0 detector) runs on a canonized copy
(:mod:`explainers.lrp_timm`): BatchNorm folded into the convolutions, residual additions
split by zennit's Norm rule. Its linear bottlenecks carry signed activations, where the
z+ and Gamma rules lose relevance; a map whose input relevance is under 10% of the target
logit says so in its notes.

Where LRP is only an approximation: BatchNorm *before* a convolution (as in DenseNet)
cannot be folded and is passed through as identity, and concatenations (DenseNet) are
propagated by plain gradient routing. The result then carries a note saying so. A model whose
concatenations only stack channels side by side, each feeding the next layer once (the custom
CNN's colour branch: the input image beside the stem's residuals), sets ``lrp_concat_exact``;
routing is exactly conservative there (tested) and no note is added.
"""
from __future__ import annotations

from .base import Explainer, RawAttribution, norm_tensors, register


#: Below this fraction of the target logit reaching the input, the map is flagged as lossy.
LOST_FRACTION = 0.1


def _cat_spy():
    """A TorchFunctionMode (context manager) whose ``seen`` turns True if ``torch.cat`` runs inside it."""
    import torch
    from torch.overrides import TorchFunctionMode

    cats = {torch.cat, torch.concat, torch.concatenate}

    class CatSpy(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen = False

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in cats:
                self.seen = True
            return func(*args, **(kwargs or {}))

    return CatSpy()


def _unmerged_batchnorms(model) -> int:
    """Number of BatchNorm modules not directly preceded by a conv/linear leaf (cannot be folded)."""
    from zennit.core import collect_leaves
    from zennit.types import BatchNorm, Linear

    bns = [m for m in model.modules() if isinstance(m, BatchNorm)]
    merged = set()
    last = None
    for leaf in collect_leaves(model):
        if isinstance(last, Linear) and isinstance(leaf, BatchNorm):
            merged.add(id(leaf))
        last = leaf
    return sum(1 for m in bns if id(m) not in merged)


def make_composite(kind: str, x, spec, epsilon: float, gamma: float):
    """A zennit composite with BatchNorm folding."""
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat

    canon = [SequentialMergeBatchNorm()]
    if kind == "epsilon_gamma_box":
        m, s = norm_tensors(spec, x)
        low, high = ((0.0 - m) / s).expand_as(x), ((1.0 - m) / s).expand_as(x)
        return EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma, canonizers=canon)
    if kind == "epsilon_plus_flat":
        return EpsilonPlusFlat(epsilon=epsilon, canonizers=canon)
    raise ValueError(f"unknown LRP composite {kind!r}; use 'epsilon_gamma_box' or 'epsilon_plus_flat'")


@register
class LRPExplainer(Explainer):
    name = "lrp"
    display_order = 40
    run_cost = 3
    display_name = "LRP"
    meaning = ("The detector's score redistributed back onto the pixels layer by layer "
               "(red supports the verdict, blue opposes it).")
    default_params = {"composite": "epsilon_gamma_box", "epsilon": 1e-6, "gamma": 0.25}
    library_defaults = {"composite": "epsilon_gamma_box", "epsilon": 1e-6, "gamma": 0.25}
    requires = ("zennit",)

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:
        import torch
        from zennit.attribution import Gradient

        from .lrp_timm import lrp_ready

        model, canon_notes = lrp_ready(model)  # timm EfficientNets: BN folded, residual sums (see lrp_timm)
        composite = make_composite(params["composite"], x, spec, float(params["epsilon"]), float(params["gamma"]))
        n_bn = _unmerged_batchnorms(model)

        def output_relevance(out):
            onehot = torch.zeros_like(out)
            onehot[:, target] = 1.0
            return onehot * out.detach()

        spy = _cat_spy()
        x = x.clone().requires_grad_(True)
        with Gradient(model=model, composite=composite) as attributor, spy:
            out, rel = attributor(x, output_relevance)
        logit = float(out.detach()[0, target])
        rel = rel.detach()
        total = float(rel.sum())
        notes = list(canon_notes)
        reasons = []
        if n_bn:
            reasons.append(f"{n_bn} BatchNorm layer(s) sit before a convolution and are passed through as identity")
        if spy.seen and not getattr(model, "lrp_concat_exact", False):
            reasons.append("feature concatenations are propagated by plain gradient routing")
        if spec is not None and not spec.lrp_exact and not reasons:
            reasons.append("the detector spec marks LRP as inexact for this architecture")
        if abs(logit) > 1e-3 and abs(total) < LOST_FRACTION * abs(logit):
            reasons.append(f"most of the relevance was absorbed on the way back (the map sums to {total:.3g}, "
                           f"the target logit is {logit:.3g}), so its colours show where relevance survived, "
                           "not how much each pixel contributed")
        if reasons:
            notes.append("LRP is an approximation for this model: " + "; ".join(reasons) + ".")
        notes.append(f"Input relevance sums to {total:.3f}; the target logit is {logit:.3f} "
                     "(the difference is absorbed by biases and stabilisers).")
        extra = {"relevance_sum": total, "target_logit": logit, "composite": params["composite"],
                 "approximate": bool(reasons)}
        return RawAttribution(rel.sum(dim=1)[0], signed=True, notes=notes, extra=extra)
