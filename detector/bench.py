"""Inference cost per detector: ``python -m detector.bench [--models a,b] [--runs N] [--random-weights] [--device D]``.

Batch 1 on the current device (the README's figures: this 2-core CPU). Reports, as
medians over ``--runs``: face detection on a full photo (``skimage.data.astronaut()``,
512x512), CLAHE + resize + normalise on the face crop, and the forward pass. Targets
(issue 3): custom CNN <= 30 ms, DenseNet-121 <= 120 ms, VGGFace16 <= 300 ms for
CLAHE + resize + forward. ``--random-weights`` times the architectures without trained
checkpoints (speed does not depend on the weights' values).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


TARGET_MS = {"custom_cnn": 30.0, "densenet121": 120.0, "vggface16": 300.0}


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="custom_cnn,densenet121,vggface16")
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
    print(f"face detection (Haar, 512x512 photo): {det_ms:.1f} ms")
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
        ok = "OK" if t_ms <= TARGET_MS[name] else "OVER"
        worst = max(worst, t_ms / TARGET_MS[name])
        print(f"{name:12s} input={spec.input_size} params={params / 1e6:.2f}M  clahe+resize={p_ms:.1f} ms  "
              f"forward={f_ms:.1f} ms  total={t_ms:.1f} ms  target<={TARGET_MS[name]:.0f} ms {ok}")
    print(f"face_detect_ms={det_ms:.1f} worst_ratio_to_target={worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
