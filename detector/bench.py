"""Inference cost per detector: ``python -m detector.bench [--models a,b] [--runs N] [--random-weights] [--device D]``.

Batch 1 on the current device (the README's figures: this 2-core CPU). Reports, as
medians over ``--runs``: face detection on a full photo (``skimage.data.astronaut()``,
512x512), CLAHE + resize + normalise on the face crop, and the forward pass, for every
detector in :data:`detector.specs.SPECS` (or ``--models``). Each detector's target for
CLAHE + resize + forward is its spec's ``latency_target_ms`` (custom CNN 30 ms,
DenseNet-121 120 ms, VGGFace16 300 ms). ``--random-weights`` times the architectures
without trained checkpoints (speed does not depend on the weights' values).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``fn()`` in ms over ``runs`` calls, after one warm-up call."""
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    from .specs import SPECS

    ap = argparse.ArgumentParser(prog="python -m detector.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SPECS), help="comma-separated detector names (default: all)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--device", default=None)
    ap.add_argument("--random-weights", action="store_true")
    args = ap.parse_args(argv)

    import timm
    import torch
    from skimage import data as skdata

    from . import models  # noqa: F401
    from .preprocess import crop_face, detect_face, finish, resize
    from .specs import get_spec
    from .weights import load_model, pick_device

    device = pick_device(args.device)
    photo = skdata.astronaut()
    box = detect_face(photo)
    det_ms = _median_ms(lambda: detect_face(photo), args.runs)
    crop = crop_face(photo, box)
    print(f"device={device} threads={torch.get_num_threads()} runs={args.runs}")
    print(f"face detection (512x512 photo): {det_ms:.1f} ms")
    worst = 0.0
    for name in args.models.split(","):
        spec = get_spec(name)
        if args.random_weights:
            model = timm.create_model(spec.architecture, num_classes=2).eval().to(device)
        else:
            model = load_model(name, device).model
        params = sum(p.numel() for p in model.parameters())

        def prep():
            return finish(resize(crop, spec.input_size), spec)[0]

        x = prep().to(device)

        def fwd():
            with torch.inference_mode():
                model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def total():
            xx = prep().to(device)
            with torch.inference_mode():
                model(xx)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        p_ms, f_ms, t_ms = _median_ms(prep, args.runs), _median_ms(fwd, args.runs), _median_ms(total, args.runs)
        target = spec.latency_target_ms
        ok = "OK" if t_ms <= target else "OVER"
        worst = max(worst, t_ms / target)
        print(f"{name:12s} input={spec.input_size} params={params / 1e6:.2f}M  clahe+resize={p_ms:.1f} ms  "
              f"forward={f_ms:.1f} ms  total={t_ms:.1f} ms  target<={target:.0f} ms {ok}")
    print(f"face_detect_ms={det_ms:.1f} worst_ratio_to_target={worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
