"""Evaluate a detector: ``python -m detector.evaluate --model NAME --data DIR --split test [--json]``.

``DIR`` is the faces dataset (``index.csv``; ``--split`` picks train/val/test) or any
folder laid out as ``real/`` and ``fake/``. Images go through the real loader and the
shared preprocessing (whole image by default, as in training, because the dataset
images are face crops; ``--face-crop`` runs face detection first). Metrics per source
and pooled: accuracy, precision, recall, F1 (fake = positive), ROC AUC, log loss,
expected calibration error, confusion matrix ([[TN, FP], [FN, TP]], rows = truth).
ROC-curve and confusion-matrix PNGs are written to ``--plots``. ``--json`` prints one
JSON object as the last line of stdout. ``--save`` writes ``metrics.json`` next to the
checkpoint; ``--check-card`` fails (exit 3) if any source's AUC is more than 0.01
below the figure in that ``metrics.json`` (the regression guard run by ``.ci/run``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import read_index
from .errors import WeightsError
from .metrics import binary_metrics
from .predict import Prediction, predict_batch
from .specs import get_spec

__all__ = ["evaluate", "main"]

AUC_TOLERANCE = 0.01


def evaluate(model_name: str, data: str | Path, split: str = "test", sources: list[str] | None = None,
             face_crop: bool = False, batch_size: int = 32, progress: bool = True, *, align: bool = False,
             per_source: int = 0) -> dict:
    """Score every image of the split and return the metrics report (plus raw scores).

    ``align`` levels the eyes of the dataset crops first; ``per_source`` caps the images per
    source (evenly spaced, both labels kept) for quick comparisons."""
    samples = read_index(data, split, sources)
    if per_source:
        from .data import cap_per_source

        samples = cap_per_source(samples, per_source, sorted({s.source for s in samples}))
    if not samples:
        raise ValueError(f"no images for split {split!r} in {data}")
    t0 = time.perf_counter()
    preds = predict_batch([s.path for s in samples], model_name, face_crop=face_crop, batch_size=batch_size,
                          progress=progress, align=align)
    elapsed = time.perf_counter() - t0
    ok = [(s, p) for s, p in zip(samples, preds) if isinstance(p, Prediction)]
    failed = [(str(s.path), p.message) for s, p in zip(samples, preds) if not isinstance(p, Prediction)]
    y = np.array([s.label for s, _ in ok])
    pf = np.array([p.p_fake for _, p in ok])
    src = np.array([s.source for s, _ in ok])
    report = {
        "model": model_name, "data": str(data), "split": split, "n_images": len(samples), "n_scored": len(ok),
        "failed": failed[:20], "n_failed": len(failed), "face_crop": face_crop, "align": align,
        "weights": ok[0][1].weights if ok else None, "seconds": round(elapsed, 1),
        "per_source": {s: binary_metrics(y[src == s], pf[src == s]) for s in sorted(set(src))},
        "pooled": binary_metrics(y, pf),
    }
    report["_scores"] = {"y": y.tolist(), "p_fake": pf.tolist(), "source": src.tolist()}
    return report


def _plots(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out.mkdir(parents=True, exist_ok=True)
    sc = report["_scores"]
    y, p, src = np.array(sc["y"]), np.array(sc["p_fake"]), np.array(sc["source"])
    fig, ax = plt.subplots(figsize=(5, 5))
    for name in list(report["per_source"]) + ["pooled"]:
        m = np.ones_like(y, bool) if name == "pooled" else src == name
        if len(set(y[m])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[m], p[m])
        auc = (report["pooled"] if name == "pooled" else report["per_source"][name])["roc_auc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {report['model']} ({report['split']})")
    ax.legend(loc="lower right")
    roc = out / f"{report['model']}_{report['split']}_roc.png"
    fig.savefig(roc, dpi=110, bbox_inches="tight")
    plt.close(fig)
    names = list(report["per_source"]) + ["pooled"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2))
    for ax, name in zip(np.atleast_1d(axes), names):
        cm = np.array((report["pooled"] if name == "pooled" else report["per_source"][name])["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
               xlabel="predicted", ylabel="true", title=name)
    cmf = out / f"{report['model']}_{report['split']}_confusion.png"
    fig.savefig(cmf, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [str(roc), str(cmf)]


def check_against_card(report: dict, metrics_file: Path) -> list[str]:
    """Regressions: sources whose AUC fell more than AUC_TOLERANCE below ``metrics_file``."""
    ref = json.loads(metrics_file.read_text())
    bad = []
    for name, m in ref["per_source"].items():
        now = report["per_source"].get(name, {}).get("roc_auc", float("nan"))
        if not now >= m["roc_auc"] - AUC_TOLERANCE:
            bad.append(f"{report['model']}/{name}: AUC {now:.4f} < card {m['roc_auc']:.4f} - {AUC_TOLERANCE}")
    return bad


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m detector.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--sources", default=None, help="comma-separated subset of sources")
    ap.add_argument("--face-crop", action="store_true", help="detect and crop faces first")
    ap.add_argument("--align", action="store_true",
                    help="level the eyes of the dataset crops (YuNet landmarks) before scoring")
    ap.add_argument("--per-source", type=int, default=0, help="at most N images per source (0: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--plots", default="artifacts/eval", help="folder for ROC / confusion PNGs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true", help="write checkpoints/NAME/metrics.json")
    ap.add_argument("--check-card", action="store_true", help="fail if AUC < metrics.json figure - 0.01")
    args = ap.parse_args(argv)
    if args.save and (args.split != "test" or args.per_source or args.align or args.face_crop or args.sources):
        print("error: --save records the card's test metrics: the whole test split, every source, as served "
              "(no --per-source, --align, --face-crop or --sources)", file=sys.stderr)
        return 2
    try:
        spec = get_spec(args.model)
        report = evaluate(args.model, args.data, args.split, args.sources.split(",") if args.sources else None,
                          args.face_crop, args.batch_size, align=args.align, per_source=args.per_source)
    except (WeightsError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"error: {getattr(e, 'message', None) or (e.args[0] if e.args else e)}", file=sys.stderr)
        return 2
    report["plots"] = _plots(report, Path(args.plots))
    del report["_scores"]
    for name, m in list(report["per_source"].items()) + [("pooled", report["pooled"])]:
        print(f"{args.model:12s} {name:8s} n={m['n']:5d} AUC={m['roc_auc']:.4f} acc={m['accuracy']:.4f} "
              f"P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} logloss={m['log_loss']:.4f} "
              f"ECE={m['ece']:.4f} confusion={m['confusion']}", file=sys.stderr if args.json else sys.stdout)
    rc = 0
    if args.save:
        (spec.local_dir / "metrics.json").write_text(json.dumps(
            {k: report[k] for k in ("model", "split", "n_images", "n_scored", "weights", "per_source", "pooled")},
            indent=2) + "\n")
    if args.check_card:
        ref = spec.local_dir / "metrics.json"
        bad = check_against_card(report, ref)
        for b in bad:
            print(f"REGRESSION {b}", file=sys.stderr)
        if not bad:
            print(f"{args.model}: test AUCs within {AUC_TOLERANCE} of {ref}", file=sys.stderr)
        rc = 3 if bad else 0
    if args.json:
        print(json.dumps(report))
    return rc


if __name__ == "__main__":
    sys.exit(main())
