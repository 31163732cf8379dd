"""Prediction: library functions and the ``python -m detector.predict`` CLI.

``python -m detector.predict PATH... --model NAME [--json] [--no-face-crop]``

PATH may be files or folders (searched recursively). With ``--json`` one JSON object is
printed per image: ``path``, ``model``, ``label``, ``p_fake``, ``face``, ``weights``,
``error``. A bad file gets an ``error`` and the run goes on. Exit status: 0 if at least
one image was scored, 1 if none was, 2 for usage or weights errors.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .data import IMAGE_EXTS, list_images
from .errors import DetectorError, InputError, WeightsError
from .preprocess import ImageSource, Preprocessed, preprocess
from .specs import get_spec
from .weights import LoadedModel, load_model

if TYPE_CHECKING:
    import torch

__all__ = ["Prediction", "predict", "predict_batch", "predict_tensor", "main"]


@dataclass
class Prediction:
    """One detector's verdict on one image."""

    model: str
    label: str  #: "fake" or "real"
    p_fake: float  #: calibrated probability of "fake"
    p_real: float
    face_box: tuple[int, int, int, int] | None  #: (x, y, w, h) in the image, None in whole-image mode
    face: np.ndarray  #: the CLAHE-enhanced crop the model saw (uint8 RGB)
    face_raw: np.ndarray  #: the same crop before CLAHE
    weights: str  #: where the weights came from ("local:..." or "hub:...")
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per stage
    notes: list[str] = field(default_factory=list)
    logits: list[float] = field(default_factory=list)
    #: Index of ``label`` in the spec's ``label_names``: the class the explanation maps explain.
    target: int = -1
    input: Preprocessed | None = field(default=None, repr=False)  #: kept for the explainers

    def to_json(self) -> dict:
        """JSON-serialisable summary (no image arrays)."""
        return {"model": self.model, "label": self.label, "p_fake": round(self.p_fake, 6),
                "p_real": round(self.p_real, 6), "face": list(self.face_box) if self.face_box else None,
                "weights": self.weights, "timings_ms": {k: round(v * 1000, 2) for k, v in self.timings.items()},
                "notes": self.notes}


def predict_tensor(lm: LoadedModel, x: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
    """``(probabilities, logits)``, both (N, C) float32 on the CPU, for a normalised batch ``x``.

    Probabilities are temperature-calibrated (``softmax(logits / lm.temperature)``).
    """
    import torch

    with torch.inference_mode():
        logits = lm.model(x.to(lm.device))
        return torch.softmax(logits.float() / lm.temperature, dim=1).cpu(), logits.float().cpu()


def _verdict(lm: LoadedModel, prep: Preprocessed, probs, logits, timings: dict) -> Prediction:
    spec = lm.spec
    fi = spec.fake_index
    p_fake = float(probs[fi])
    label = "fake" if p_fake >= 0.5 else "real"
    return Prediction(model=spec.name, label=label, target=spec.label_names.index(label), p_fake=p_fake,
                      p_real=float(1.0 - p_fake), face_box=prep.box, face=prep.face, face_raw=prep.face_raw,
                      weights=lm.source, timings=timings, notes=list(prep.notes) + list(lm.notes),
                      logits=[float(v) for v in logits], input=prep)


def predict(image: ImageSource | Preprocessed, model_name: str = "custom_cnn", face_crop: bool = True,
            device: str | None = None) -> Prediction:
    """Score one image with detector ``model_name``.

    Raises :class:`InputError` (bad file, no face...) or :class:`WeightsError`.
    """
    lm = load_model(model_name, device)
    t0 = time.perf_counter()
    prep = image if isinstance(image, Preprocessed) else preprocess(image, lm.spec, face_crop)
    t1 = time.perf_counter()
    probs, logits = predict_tensor(lm, prep.tensor)
    t2 = time.perf_counter()
    return _verdict(lm, prep, probs[0], logits[0], {"preprocess": t1 - t0, "forward": t2 - t1})


def predict_batch(images: Sequence[ImageSource], model_name: str = "custom_cnn", face_crop: bool = True,
                  batch_size: int = 16, device: str | None = None, progress: bool = False, *, align: bool = False
                  ) -> list[Prediction | InputError]:
    """Score many images in batches. Bad inputs give an :class:`InputError` in their slot.
    ``align``: level the eyes of whole-image inputs too (:func:`detector.preprocess.prepare_face`)."""
    import torch
    from tqdm import tqdm

    lm = load_model(model_name, device)
    out: list[Prediction | InputError | None] = [None] * len(images)
    bar = tqdm(total=len(images), desc=f"{model_name}", unit="img", file=sys.stderr, disable=not progress)
    for start in range(0, len(images), batch_size):
        idx, preps = [], []
        t0 = time.perf_counter()
        for i in range(start, min(start + batch_size, len(images))):
            try:
                preps.append(preprocess(images[i], lm.spec, face_crop, align=align))
                idx.append(i)
            except InputError as e:
                out[i] = e
        t1 = time.perf_counter()
        if preps:
            probs, logits = predict_tensor(lm, torch.cat([p.tensor for p in preps]))
            t2 = time.perf_counter()
            n = len(preps)
            for j, (i, prep) in enumerate(zip(idx, preps)):
                out[i] = _verdict(lm, prep, probs[j], logits[j],
                                  {"preprocess": (t1 - t0) / n, "forward": (t2 - t1) / n})
        bar.update(min(batch_size, len(images) - start))
    bar.close()
    return out  # type: ignore[return-value]


def _expand(paths: Sequence[str]) -> tuple[list[Path], bool]:
    files: list[Path] = []
    had_folder = False
    for p in map(Path, paths):
        if p.is_dir():
            had_folder = True
            files.extend(list_images(p))
        else:
            files.append(p)
    return files, had_folder


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m detector.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    ap.add_argument("--model", default="custom_cnn", help="detector name (default: custom_cnn)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per image")
    ap.add_argument("--no-face-crop", action="store_true", help="analyse the whole image (no face detection)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    try:
        get_spec(args.model)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    files, had_folder = _expand(args.paths)
    if not files:
        print(f"error: no images found in {' '.join(args.paths)} (extensions: {', '.join(sorted(IMAGE_EXTS))})",
              file=sys.stderr)
        return 1
    try:
        results = predict_batch(files, args.model, face_crop=not args.no_face_crop, batch_size=args.batch_size,
                                device=args.device, progress=had_folder and len(files) > 1)
    except WeightsError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    scored = 0
    for path, r in zip(files, results):
        if isinstance(r, Prediction):
            scored += 1
            rec = {"path": str(path), "model": args.model, "label": r.label, "p_fake": round(r.p_fake, 6),
                   "face": list(r.face_box) if r.face_box else None, "weights": r.weights, "error": None}
        else:
            rec = {"path": str(path), "model": args.model, "label": None, "p_fake": None, "face": None,
                   "weights": None, "error": r.message if isinstance(r, DetectorError) else str(r)}
        if args.json:
            print(json.dumps(rec), flush=True)
        elif rec["error"]:
            print(f"{path}: ERROR {rec['error']}", flush=True)
        else:
            box = f" face={tuple(rec['face'])}" if rec["face"] else " (whole image)"
            print(f"{path}: {rec['label'].upper()} p_fake={rec['p_fake']:.3f}{box} [{r.weights}]", flush=True)
    if scored == 0:
        print("error: no image could be scored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
