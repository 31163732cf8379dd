"""Which superpixels should LIME use? ``python -m explainers.lime_segments --model NAME --data DIR``.

For a few validation images (never test: this chooses a default), computes LIME's
library-default map (quickshift with LIME's parameters, 1000 samples, seed 0) and a
second default run (seed 1: the ceiling), then LIME with each candidate segmentation
and sample count, and prints the Spearman rank correlation with the default map divided
by the ceiling (``rel``, the quantity ``explainers.bench`` reports as fidelity) and the
runtime. The README's choice of LIME superpixels comes from this table.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

CANDIDATES: list[dict] = (
    [{"segmentation": "slic", "n_segments": n, "compactness": c, "num_samples": s}
     for n in (25, 50, 80) for c in (5.0, 20.0) for s in (96, 200)]
    + [{"segmentation": "quickshift", "num_samples": s} for s in (64, 96, 200)]
)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m explainers.lime_segments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="custom_cnn")
    ap.add_argument("--data", required=True, help="folder with index.csv (e.g. ../shared/datasets/faces)")
    ap.add_argument("--split", default="val", choices=["train", "val"], help="never test: this tunes a default")
    ap.add_argument("--per-source", type=int, default=3, help="images per source")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from detector.data import cap_per_source, read_index
    from detector.preprocess import preprocess
    from detector.weights import load_model

    from . import get_explainer
    from .bench import spearman

    lm = load_model(args.model, "cpu")
    spec, model = lm.spec, lm.model
    samples = read_index(args.data, args.split)
    picked = cap_per_source(samples, args.per_source, sorted({v.source for v in samples}))
    ex = get_explainer("lime")
    rel: dict[int, list[float]] = {i: [] for i in range(len(CANDIDATES))}
    secs: dict[int, list[float]] = {i: [] for i in range(len(CANDIDATES))}
    for r in picked:
        x = preprocess(str(r.path), spec, face_crop=False).tensor
        with torch.no_grad():
            target = int(model(x).argmax())
        d0 = ex.explain(model, x, target=target, spec=spec, **{**ex.library_defaults, "seed": 0})
        d1 = ex.explain(model, x, target=target, spec=spec, **{**ex.library_defaults, "seed": 1})
        ceiling = spearman(d0.map, d1.map)
        print(f"{Path(r.path).relative_to(args.data)}: {d0.extra['n_superpixels']} quickshift superpixels, ceiling {ceiling:.3f}, "
              f"default {d0.runtime_s:.2f} s", flush=True)
        for i, cand in enumerate(CANDIDATES):
            a = ex.explain(model, x, target=target, spec=spec, **cand)
            rel[i].append(spearman(a.map, d0.map) / ceiling)
            secs[i].append(a.runtime_s)
    print(f"model={spec.name} images={len(picked)} split={args.split}")
    print(f"{'candidate':60s} {'rel mean':>8s} {'rel min':>8s} {'time s':>7s}")
    for i, cand in enumerate(CANDIDATES):
        name = ", ".join(f"{k}={v}" for k, v in cand.items())
        print(f"{name:60s} {np.mean(rel[i]):8.3f} {np.min(rel[i]):8.3f} {np.mean(secs[i]):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
