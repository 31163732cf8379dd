"""LIME (``lime.lime_image.LimeImageExplainer``) on quickshift superpixels, few samples.

LIME switches random subsets of superpixels "off" (filled with their mean colour), scores
the perturbed faces and fits a weighted ridge regression of p(target) on the on/off
pattern; each superpixel's coefficient is painted onto its pixels (signed, in units of
p(target)). Superpixels: LIME's own quickshift (kernel 4, max distance 200, ratio 0.2),
computed on the model's input (112-160 px), where it takes 0.1-0.2 s and gives 15-30
regions on a face. SLIC (``segmentation="slic"``) is faster (10-40 ms) but its maps agree
poorly with LIME's default map (relative rank correlation 0.27-0.48 over 12 SLIC settings on
6 validation faces, against 0.94 for quickshift at 96 samples; ``python -m explainers.lime_segments``), so the
speed-up comes from the sample count instead: 96 samples instead of 1000. The classifier function takes HWC images in
the un-normalised 0-255 space (the input ``x`` un-normalised with the spec's mean/std,
else mean 0.5 / std 0.25), re-normalises them and scores them in batches of
``batch_size``. Sampling is seeded (``seed``), so results are reproducible.
"""
from __future__ import annotations

import functools

from .base import Explainer, RawAttribution, Tunable, norm_tensors, register, scoring_autocast, scoring_precision

_QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}  # lime's default segmentation parameters


def segment(img01, kind: str, n_segments: int, compactness: float, seed: int):
    """Superpixel labels 0..K-1 of an RGB float image in [0, 1]."""
    import numpy as np
    from skimage.segmentation import quickshift, slic

    if kind == "slic":
        seg = slic(img01, n_segments=n_segments, compactness=compactness, sigma=1.0, start_label=0,
                   channel_axis=-1)
    elif kind == "quickshift":
        # lime's own default passes ``random_seed``, which scikit-image >= 0.25 renamed to ``rng``
        # (lime's built-in quickshift default raises there), so it is called directly.
        seg = quickshift(img01, rng=seed, **_QUICKSHIFT)
    else:
        raise ValueError(f"unknown segmentation {kind!r}; use 'slic' or 'quickshift'")
    _, seg = np.unique(seg, return_inverse=True)  # labels 0..K-1 (lime assumes this)
    return seg.reshape(img01.shape[:2])


def _quiet_lime():
    """Silence lime's per-sample tqdm progress bar (it has no option for it)."""
    import lime.lime_image as li
    from tqdm.auto import tqdm

    if not getattr(li, "_explainers_quiet", False):
        li.tqdm = functools.partial(tqdm, disable=True)
        li._explainers_quiet = True
    return li


@register
class LimeExplainer(Explainer):
    name = "lime"
    display_order = 20
    run_cost = 6
    tunables = (Tunable("num_samples", "LIME: samples", 16, 2000),)
    display_name = "LIME"
    meaning = ("How much hiding each face region changes p(verdict), from a simple model fitted to "
               "randomly masked copies (red regions support the verdict, blue oppose it).")
    # Quickshift superpixels (LIME's default) and 96 samples instead of 1000: 0.944 of the
    # ceiling on 6 validation faces at a tenth of the cost (``python -m explainers.lime_segments``).
    default_params = {"num_samples": 96, "n_segments": 25, "compactness": 20.0, "segmentation": "quickshift",
                      "batch_size": 96, "kernel_width": 0.25, "seed": 0}
    library_defaults = {"num_samples": 1000, "segmentation": "quickshift", "batch_size": 10}
    requires = ("lime", "skimage")

    def _explain(self, model, x, target: int, spec, params: dict) -> RawAttribution:
        import numpy as np
        import torch

        li = _quiet_lime()
        m, s = norm_tensors(spec, x)
        img = ((x * s + m) * 255.0)[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float64)  # HWC 0..255
        seed = int(params["seed"])
        prec = scoring_precision(x.device)  # once per explanation: every batch and the note agree
        seg = segment(np.clip(img / 255.0, 0, 1), params["segmentation"], int(params["n_segments"]),
                      float(params["compactness"]), seed)

        def classify(images: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(x.device)
            t = (t.permute(0, 3, 1, 2) / 255.0 - m) / s
            with torch.no_grad(), scoring_autocast(x.device, prec):
                return torch.softmax(model(t).float(), dim=1).cpu().numpy()

        explainer = li.LimeImageExplainer(kernel_width=float(params["kernel_width"]), random_state=seed)
        exp = explainer.explain_instance(img, classify, labels=(target,), top_labels=None, hide_color=None,
                                         num_features=int(seg.max()) + 1, num_samples=int(params["num_samples"]),
                                         batch_size=int(params["batch_size"]), segmentation_fn=lambda _: seg,
                                         random_seed=seed)
        weights = np.zeros(int(seg.max()) + 1, dtype=np.float32)
        for k, wgt in exp.local_exp[target]:
            weights[k] = wgt
        notes = [f"{len(weights)} {params['segmentation']} superpixels, {params['num_samples']} perturbed samples "
                 f"scored in {prec}; surrogate fit R^2 = {exp.score:.2f}."]
        extra = {"n_superpixels": int(len(weights)), "r2": float(exp.score), "intercept": float(exp.intercept[target]),
                 "precision": prec}
        return RawAttribution(weights[seg], signed=True, notes=notes, extra=extra)
