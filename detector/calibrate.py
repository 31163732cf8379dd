"""Refit a detector's temperature on the whole val split: ``python -m detector.calibrate --model NAME --data DIR``.

Training fits the temperature on the val images it validated on, which ``--val-per-source`` may have capped
(DenseNet-121's stages used 800 per source: 1,019 of the 3,175 val images). This scores every val image with the
shared inference path (:func:`detector.evaluate.evaluate`, whole image, as for the dataset's crops), recovers each
image's logit difference from its calibrated ``p_fake`` and the current temperature, fits the temperature that
minimises the val log loss (:func:`detector.metrics.fit_temperature`), and prints val ECE and log loss before and
after. Only val is read. ``--write`` stores the new temperature in the checkpoint's ``config.json`` (``temperature``
and a ``recalibration`` record with the command and the val figures; the weights do not change); then re-run
``detector.evaluate --split test --save`` (the test figures are reported once per calibration),
``detector.card NAME`` and ``detector.fit_reliability``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["logit_differences", "main"]


def logit_differences(p_fake: np.ndarray, temperature: float) -> np.ndarray:
    """``logit_fake - logit_real`` from ``p_fake = sigmoid(diff / temperature)`` (two-class softmax)."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), 1e-12, 1 - 1e-12)
    return temperature * (np.log(p) - np.log1p(-p))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m detector.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="detector name, e.g. densenet121")
    ap.add_argument("--data", required=True, help="folder with index.csv (e.g. ../shared/datasets/faces)")
    ap.add_argument("--write", action="store_true", help="store the refitted temperature in config.json")
    args = ap.parse_args(argv)

    from .evaluate import evaluate
    from .metrics import binary_metrics, fit_temperature
    from .weights import load_model

    lm = load_model(args.model, "cpu")
    if not str(lm.source).startswith("local:"):
        print(f"error: {args.model} was not loaded from a local checkpoint ({lm.source}); nothing to write",
              file=sys.stderr)
        return 2
    folder = Path(str(lm.source)[len("local:"):])
    t_old = float(lm.temperature)
    rep = evaluate(args.model, args.data, "val")
    sc = rep["_scores"]
    y, src = np.asarray(sc["y"]), np.asarray(sc["source"])
    d = logit_differences(np.asarray(sc["p_fake"]), t_old)
    t_new = fit_temperature(np.stack([np.zeros_like(d), d], axis=1), y)

    def figures(t: float) -> dict:
        p = 1.0 / (1.0 + np.exp(-d / t))
        pooled = binary_metrics(y, p)
        out = {"ece": pooled["ece"], "log_loss": pooled["log_loss"]}
        for s in sorted(set(src)):
            out[f"ece_{s}"] = binary_metrics(y[src == s], p[src == s])["ece"]
        return out

    before, after = figures(t_old), figures(t_new)
    record = {"command": "python -m detector.calibrate " + " ".join(argv if argv is not None else sys.argv[1:]),
              "split": "val", "n_images": int(len(y)), "temperature_before": round(t_old, 4),
              "temperature": round(t_new, 4), "val_before": before, "val_after": after}
    print(json.dumps(record, indent=1))
    if args.write:
        cfg_path = folder / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["temperature"] = float(t_new)
        cfg["recalibration"] = record
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"wrote temperature {t_new:.4f} into {cfg_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
