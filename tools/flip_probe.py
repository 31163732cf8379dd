"""Does averaging with the mirrored image help a detector? ``python -m tools.flip_probe --model NAME``.

Scores the val split (``--sources``, default gan140k) through the real loader and preprocessing, once as is and
once mirrored left-right, and prints the ROC AUC of the plain, mirrored and averaged logit differences
(``logit_fake - logit_real``). Val only: this chooses an inference recipe, so it never reads test.

``--input-size S`` scores at S x S instead of the checkpoint's own size (does a detector gain from
seeing more pixels than it was trained on, as FixRes-style test-time resizing can?).

``--detail S`` keeps the checkpoint's input size but first shrinks each face to S x S and enlarges it back, so
the model sees only the detail that an S px input holds (how much does a detector lose when its input is
smaller? e.g. EfficientNet-Lite0, 224 px, scored with ``--detail 112``).
"""
from __future__ import annotations

import argparse

import numpy as np


def _tensor(path: str, spec, detail: int | None):
    """The model input of one dataset crop (the inference path with ``face_crop=False``); with ``detail``,
    the resized face is shrunk to ``detail`` px and enlarged back before CLAHE and normalisation."""
    from detector.preprocess import finish, prepare_face, resize

    face, _, _ = prepare_face(path, spec, face_crop=False)
    if detail:
        face = resize(resize(face, detail), spec.input_size)
    return finish(face, spec)[0]


def mirror_logits(lm, paths: list[str], input_size: int | None = None,
                  detail: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``logit_fake - logit_real`` of each image as is and mirrored left-right (loaded model ``lm``),
    at ``input_size`` (default: the checkpoint's), with only ``detail`` px of detail if given."""
    import dataclasses

    import torch

    spec = dataclasses.replace(lm.spec, input_size=input_size) if input_size else lm.spec
    plain, mirrored = [], []
    for i in range(0, len(paths), 32):
        x = torch.cat([_tensor(p, spec, detail) for p in paths[i:i + 32]])
        with torch.inference_mode():
            for out, inp in ((plain, x), (mirrored, x.flip(-1))):
                z = lm.model(inp.to(lm.device)).float().cpu()
                out += (z[:, 1] - z[:, 0]).tolist()
    return np.array(plain), np.array(mirrored)


def flip_probe(model: str, data: str, sources: list[str], per_source: int = 0, threads: int = 1,
               input_size: int | None = None, detail: int | None = None) -> dict:
    """``{source: {"n", "plain", "mirrored", "averaged"}}`` val ROC AUCs for ``model``."""
    import torch
    from sklearn.metrics import roc_auc_score

    from detector import data as dataset
    from detector.weights import load_model

    torch.set_num_threads(threads)
    lm = load_model(model, "cpu")
    samples = dataset.read_index(data, "val", sources)
    if per_source:
        samples = dataset.cap_per_source(samples, per_source, sources)
    a, b = mirror_logits(lm, [str(s.path) for s in samples], input_size, detail)
    y = np.array([s.label for s in samples])
    src = np.array([s.source for s in samples])
    report = {}
    for so in sources:
        m = src == so
        report[so] = {"n": int(m.sum()), "plain": roc_auc_score(y[m], a[m]), "mirrored": roc_auc_score(y[m], b[m]),
                      "averaged": roc_auc_score(y[m], (a[m] + b[m]) / 2)}
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m tools.flip_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/datasets/faces")
    ap.add_argument("--sources", default="gan140k", help="comma-separated, e.g. gan140k,dfdc")
    ap.add_argument("--per-source", type=int, default=0, help="cap images per source (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=None, help="score at this size (default: the checkpoint's)")
    ap.add_argument("--detail", type=int, default=None,
                    help="shrink each face to this size and enlarge it back before scoring (default: no)")
    args = ap.parse_args(argv)
    for flag, v in (("--input-size", args.input_size), ("--detail", args.detail)):
        if v is not None and not 16 <= v <= 1024:
            ap.error(f"{flag} {v} must be between 16 and 1024")
    rep = flip_probe(args.model, args.data, args.sources.split(","), args.per_source, args.threads, args.input_size,
                     args.detail)
    size = f" at {args.input_size} px" if args.input_size else ""
    size += f" with {args.detail} px of detail" if args.detail else ""
    for so, r in rep.items():
        print(f"{args.model}{size} {so} n={r['n']}: plain {r['plain']:.4f}, mirrored {r['mirrored']:.4f}, "
              f"averaged {r['averaged']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
