"""SHAP via ``shap.GradientExplainer`` (expected gradients), for the target output only.

Why this explainer: ``DeepExplainer`` breaks on DenseNet's functional ops and in-place
ReLUs, and the model-agnostic Partition explainer needs hundreds of forward passes plus a
numba compile of its image partition tree (seconds) before the first map. Expected
gradients (Erion et al., 2021) estimate SHAP values as the average of
``(x - b) * grad f(b + t (x - b))`` over background images ``b`` and ``t ~ U(0, 1)``;
each sample is one forward + backward pass, batched, and it works on any differentiable
model. The attributions sum (in expectation) to ``f(x) - E_b[f(b)]``.

Background (what "feature absent" means): the mean-colour image and two Gaussian blurs
of the input (sigma = side/16 and side/6), i.e. a feature is removed by taking away its
fine detail or colour. Only the target logit is explained (the model is wrapped to
output that one column). Map = SHAP values summed over colour channels (signed).
shap's ``rseed`` re-seeds NumPy's global RNG, so its state is saved and restored.
"""
from __future__ import annotations

import contextlib

from .base import Explainer, RawAttribution, Tunable, register


@contextlib.contextmanager
def _numpy_rng_preserved():
    import numpy as np

    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def background(x, kind: str = "blur"):
    """Background images for expected gradients: ``"blur"`` (mean image + 2 blurs) or ``"mean"``."""
    import torch

    from .faithfulness import gaussian_blur

    side = max(x.shape[-2:])
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        return torch.cat([torch.zeros_like(x), gaussian_blur(x, side / 16.0), gaussian_blur(x, side / 6.0)])
    raise ValueError(f"unknown SHAP background {kind!r}; use 'blur' or 'mean'")


def _target_model(model, target: int):
    import torch

    class TargetLogit(torch.nn.Module):
        """``model`` restricted to the target logit, shape (N, 1)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, inp):
            return self.inner(inp)[:, target:target + 1]

        def zero_grad(self, set_to_none: bool = True) -> None:
            """No-op: shap calls ``zero_grad()``, which would drop the caller's parameter grads.

            Only input gradients are taken (``torch.autograd.grad``), so nothing accumulates."""

    return TargetLogit()


@register
class ShapExplainer(Explainer):
    name = "shap"
    display_order = 10
    run_cost = 5
    tunables = (Tunable("nsamples", "SHAP: samples", 8, 1024),)
    display_name = "SHAP"
    meaning = ("Each pixel's share of the score relative to blurred / plain versions of the face "
               "(expected-gradients SHAP; red supports the verdict, blue opposes it).")
    # 16 samples in one batch: rank correlation 0.978 with shap's default 200 samples on the
    # custom CNN (two 200-sample runs with different seeds: 0.994).
    default_params = {"nsamples": 16, "batch_size": 16, "background": "blur", "seed": 0}
    library_defaults = {"nsamples": 200, "batch_size": 50}  # GradientExplainer defaults
    requires = ("shap",)

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:
        import warnings

        import numpy as np
        import torch

        with warnings.catch_warnings():  # shap's import emits matplotlib deprecation warnings
            warnings.simplefilter("ignore")
            import shap

        bg = background(x, params["background"])
        wrapped = _target_model(model, target)
        with _numpy_rng_preserved(), torch.enable_grad():
            explainer = shap.GradientExplainer(wrapped, bg, batch_size=int(params["batch_size"]))
            vals = explainer.shap_values(x, nsamples=int(params["nsamples"]), rseed=int(params["seed"]))
        vals = np.asarray(vals[0] if isinstance(vals, list) else vals, dtype=np.float32)
        vals = vals.reshape(x.shape[1:])  # (C, H, W), single output
        with torch.no_grad():
            fx = float(model(x)[0, target])
            fb = float(model(bg)[:, target].mean())
        total = float(vals.sum())
        extra = {"sum": total, "f_x_minus_expected": fx - fb}
        notes = [f"{params['nsamples']} expected-gradient samples; values sum to {total:.3f} "
                 f"(f(x) - E[f(background)] = {fx - fb:.3f})."]
        return RawAttribution(vals.sum(axis=0), signed=True, notes=notes, extra=extra)
